"""A TCP proxy between some of the chaos run's workers and Redis, with faults
on demand: cut every connection at once, delay every reply for a while, and
swallow replies (Redis ran the command, the client never hears back and its
connection is hung up, as :mod:`chaos.reply_dropper` does for one command).

    proxy = FaultyProxy(redis_url)
    await proxy.start()          # workers use proxy.url
    proxy.cut()                  # every open connection closed now
    proxy.delay(0.3, for_s=2)    # replies held back 300 ms each, for 2 s
    proxy.swallow(5)             # the next 5 replies are lost
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from conveyor.embedded import free_port

__all__ = ["FaultyProxy"]


class FaultyProxy:
    """Forwards 127.0.0.1:<free port> to the Redis of ``redis_url``, faults on demand."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.db = parts.path or "/0"
        self.port = free_port()
        self.swallowed = 0  # replies lost so far
        self.cuts = 0  # connections closed by cut()
        self._swallow = 0
        self._delay_s = 0.0
        self._delay_until = 0.0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults -----------------------------------------------------------------

    def cut(self) -> int:
        """Close every open connection (both sides); how many were closed."""
        links = list(self._links)
        for client_w, up_w in links:
            client_w.close()
            up_w.close()
        self._links.clear()
        self.cuts += len(links)
        return len(links)

    def delay(self, seconds: float, *, for_s: float) -> None:
        """Hold each reply back ``seconds`` for the next ``for_s`` seconds."""
        self._delay_s = seconds
        self._delay_until = time.monotonic() + for_s

    def swallow(self, replies: int) -> None:
        """Lose the next ``replies`` replies (each one's connection is hung up)."""
        self._swallow += replies

    # -- forwarding ---------------------------------------------------------------

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:  # Redis is down: the client sees its connection close
            client_w.close()
            self._tasks.discard(task)
            return
        link = (client_w, up_w)
        self._links.add(link)
        try:
            pumps = [asyncio.create_task(self._requests(client_r, up_w)),
                     asyncio.create_task(self._replies(up_r, client_w))]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            for writer in link:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            self._tasks.discard(task)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self._swallow > 0:
                    self._swallow -= 1
                    self.swallowed += 1
                    return  # Redis ran it; the answer goes nowhere and the link ends
                if self._delay_s and time.monotonic() < self._delay_until:
                    await asyncio.sleep(self._delay_s)
                writer.write(data)
                await writer.drain()
