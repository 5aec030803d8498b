"""SIGTERM/SIGINT for the workers of an event loop: one handler per loop
reaches every worker on it (a handler per worker would replace the previous
worker's). The first to subscribe installs the handlers, the last to leave
removes them; what a signal means is the worker's to decide."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Callable

__all__ = ["SIGNALS", "subscribe"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_Handler = Callable[[signal.Signals], None]
_subscribers: dict[asyncio.AbstractEventLoop, list[_Handler]] = {}


def subscribe(handler: _Handler) -> Callable[[], None]:
    """Call ``handler(sig)`` on SIGTERM/SIGINT on the running loop (where the
    loop can take signals: the main thread); returns the unsubscribe call."""
    loop = asyncio.get_running_loop()
    handlers = _subscribers.setdefault(loop, [])
    if not handlers:
        for sig in SIGNALS:
            try:
                loop.add_signal_handler(sig, _dispatch, loop, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no signals here
    handlers.append(handler)
    return functools.partial(_unsubscribe, loop, handler)


def _dispatch(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    for handler in list(_subscribers.get(loop, ())):
        handler(sig)


def _unsubscribe(loop: asyncio.AbstractEventLoop, handler: _Handler) -> None:
    handlers = _subscribers[loop]
    handlers.remove(handler)
    if not handlers:
        del _subscribers[loop]
        for sig in SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
