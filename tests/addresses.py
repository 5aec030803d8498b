"""Addresses of this machine, to test who can reach a port."""

from __future__ import annotations

import contextlib
import ipaddress
import socket


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than loopback, or None without one
    (the address a packet to the documentation network would leave from; a UDP
    connect sends nothing)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))
        address = str(probe.getsockname()[0])
        if not ipaddress.ip_address(address).is_loopback and address != "0.0.0.0":
            return address
    return None


def accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False
