"""uvicorn as the ``dashboard`` and ``demo`` commands run it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn

__all__ = ["WebServer"]


class WebServer(uvicorn.Server):
    """A uvicorn server that returns after a graceful stop on SIGINT/SIGTERM
    (plain uvicorn re-raises the signal, so the process would die of it), or,
    with ``handle_signals=False``, leaves the signals to its owner, who sets
    ``should_exit``. ``ready`` is set once it serves."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool = True) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.handle_signals:
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit)
                     for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.ready.set()
