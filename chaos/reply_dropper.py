"""A TCP proxy between a client and the private redis-server that loses replies:
it forwards a chosen command to Redis, lets Redis run it, then drops the
client's connection before the reply reaches it. redis-py's retry then sends
the command again over a new connection, as it would after a network fault.

    async with ReplyDropper(redis_url, trigger=sha) as proxy:
        queue = Queue(name, proxy.url)   # every other command of the first
        ...                              # send of `trigger` loses its reply

With ``hold=seconds`` the reply is not lost but held back that long, and the
connection carries on: a reply that comes late, as over a slow network or to
a process that was paused.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from conveyor.embedded import free_port

__all__ = ["ReplyDropper"]


class ReplyDropper:
    """Forwards everything; of the commands containing ``trigger`` (bytes, e.g. a
    script's SHA, or a tuple of bytes all of which must be in the packet), the
    1st, 3rd, 5th... have their reply dropped (``every=2``),
    so each call's first send is lost and its retry goes through. ``limit``
    bounds how many replies are dropped in all (None: no bound). With ``hold``
    (seconds), each such reply is delivered that late instead of lost
    (``held`` counts those delivered)."""

    def __init__(
        self,
        redis_url: str,
        trigger: bytes | tuple[bytes, ...],
        *,
        every: int = 2,
        limit: int | None = None,
        hold: float | None = None,
    ) -> None:
        parts = urlsplit(redis_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.db = parts.path or "/0"
        self.triggers = (trigger,) if isinstance(trigger, bytes) else trigger
        self.every = every
        self.limit = limit
        self.seen = 0  # commands that contained the trigger
        self.dropped = 0  # replies dropped (or held, with ``hold``)
        self.hold = hold
        self.held = 0  # held replies delivered
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:  # hang up: each connection's task ends on its own
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _should_drop(self, chunk: bytes) -> bool:
        if not all(trigger in chunk for trigger in self.triggers):
            return False
        self.seen += 1
        if self.limit is not None and self.dropped >= self.limit:
            return False
        return (self.seen - 1) % self.every == 0

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        self._writers.update((client_w, up_w))
        drop = asyncio.Event()  # the next reply from Redis goes nowhere, then we hang up

        async def replies() -> None:
            with contextlib.suppress(ConnectionError):
                await forward_replies()

        async def forward_replies() -> None:
            while data := await up_r.read(65536):
                held = False
                if drop.is_set():
                    self.dropped += 1
                    if self.hold is None:
                        return
                    drop.clear()
                    held = True
                    await asyncio.sleep(self.hold)
                client_w.write(data)
                await client_w.drain()
                self.held += held

        reply_task = asyncio.create_task(replies())
        try:
            while not reply_task.done():
                reading = asyncio.ensure_future(_read(client_r))
                await asyncio.wait({reading, reply_task}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    break
                chunk = reading.result()
                if not chunk:
                    break
                if self._should_drop(chunk):
                    drop.set()
                up_w.write(chunk)
                await up_w.drain()
                if drop.is_set() and self.hold is None:
                    await reply_task  # Redis ran the command and answered: lose it
                    break
        finally:
            reply_task.cancel()
            for writer in (client_w, up_w):
                writer.close()
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            self._tasks.discard(task)


async def _read(reader: asyncio.StreamReader) -> bytes:
    """The next bytes, or b"" at the end (a reset connection ends too)."""
    try:
        return await reader.read(65536)
    except ConnectionError:
        return b""
