"""Helpers with no better home, shared by the library, the web app and the CLI."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine: ``localhost`` (any
    case), an address in 127.0.0.0/8 or ``::1``, IPv6 with or without brackets
    (``[::1]``, as in a URL)."""
    if host.lower() == "localhost":
        return True
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        # Brackets hold IPv6 only, as in a URL: "[127.0.0.1]" names no host.
        address = ipaddress.IPv6Address(host[1:-1]) if bracketed else ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback
