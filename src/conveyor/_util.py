"""Helpers with no better home, shared by the library, the web app and the CLI."""

from __future__ import annotations

import inspect
import ipaddress
from typing import Any

__all__ = ["is_async_callable", "is_loopback"]


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine (an ``async def`` or a callable
    object with one as ``__call__``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


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
