"""A real dashboard for browser tests: uvicorn serving an ASGI app and conveyor
Workers on one event loop in a background thread, so the test itself can drive
a synchronous Playwright browser from the main thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvicorn

from conveyor import Job, Queue, Worker
from redis_server import free_port

T = TypeVar("T")

# Built on the server's loop, so anything the app opens belongs to that loop.
AppFactory = Callable[[], Any]


class DashboardServer:
    """``start()`` serves ``app_factory()`` on a free loopback port; ``run(coro)``
    runs a coroutine on the server's loop (queues, workers) and returns its result."""

    def __init__(self, redis_url: str, app_factory: AppFactory) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._app_factory = app_factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dashboard", daemon=True
        )
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._queues: dict[str, Queue] = {}
        self._workers: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(self) -> None:
        self._thread.start()
        self.run(self._serve())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _serve(self) -> None:
        config = uvicorn.Config(
            self._app_factory(), host="127.0.0.1", port=self.port,
            log_level="warning", access_log=False, lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises why the server did not start
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)

    # -- the conveyor side, on the server's loop -------------------------------------

    def queue(self, name: str) -> Queue:
        """A Queue on the server's loop; use it through ``run(...)``."""
        if name not in self._queues:
            self._queues[name] = Queue(name, self.redis_url)
        return self._queues[name]

    def add(self, queue: str, name: str, data: Any = None, **options: Any) -> Job:
        return self.run(self.queue(queue).add(name, data, **options))

    def start_worker(self, queue: str, processor: Any, **options: Any) -> Worker:
        async def start() -> Worker:
            options.setdefault("connection", self.redis_url)
            worker = Worker(queue, processor, handle_signals=False, **options)
            self._workers.append((worker, asyncio.create_task(worker.run())))
            return worker

        return self.run(start())

    def close(self) -> None:
        if self._thread.is_alive():
            self.run(self._close(), timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        for worker, task in self._workers:
            await worker.close(timeout=2)
            await task
        for queue in self._queues.values():
            await queue.close()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
