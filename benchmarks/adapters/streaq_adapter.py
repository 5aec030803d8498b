"""streaq's benchmark adapter (runs in benchmarks/.venvs/streaq)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from common import LATENCY_KEY, QUEUE, Adapter, main
from streaq import Worker

NAME = "streaq"
REQUIREMENTS = ["streaq==7.2.0", "redis==8.1.0"]
SETTINGS = ("Worker per process with concurrency 50 (100 for io), default prefetch "
            "(= concurrency), default result ttl 5 min, delayed tasks moved every 0.5 s "
            "(built in), logging at WARNING")


def make_worker(url: str, concurrency: int = 50) -> tuple[Worker[Any], dict[str, Any]]:
    worker: Worker[Any] = Worker(redis_url=url, queue_name=QUEUE, concurrency=concurrency)

    @worker.task
    async def noop(i: int) -> None:
        return None

    @worker.task
    async def io(i: int) -> None:
        await asyncio.sleep(0.01)

    @worker.task
    async def latency(i: int) -> None:
        await worker.redis.rpush(LATENCY_KEY, [str(time.time())])

    return worker, {"noop": noop, "io": io, "latency": latency}


class StreaqAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        self.worker, self.tasks = make_worker(url)
        # coredis ties its connection pool to the task that opened it: one task holds the
        # worker's context open for the adapter's lifetime.
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._holder = self.loop.create_task(self._hold())
        self.loop.run_until_complete(self._ready.wait())
        self._keys = (self.worker.stream_key + "normal", self.worker.queue_key + "normal")

    async def _hold(self) -> None:
        async with self.worker:
            self._ready.set()
            await self._done.wait()

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        task = self.tasks[kind].enqueue(i)
        if delay_s:
            task = task.start(delay=timedelta(seconds=delay_s))

        async def add() -> None:
            await task

        self.loop.run_until_complete(add())

    def enqueue_bulk(self, kind: str, n: int, delay_s: float = 0.0) -> bool:
        fn = self.tasks[kind]

        async def add_all() -> None:
            for start in range(0, n, 1000):
                batch = [fn.enqueue(i) for i in range(start, min(start + 1000, n))]
                if delay_s:
                    batch = [t.start(delay=timedelta(seconds=delay_s)) for t in batch]
                await self.worker.enqueue_many(batch)

        self.loop.run_until_complete(add_all())
        return True

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        return [
            subprocess.Popen([sys.executable, __file__, "worker", "--url", self.url,
                              "--concurrency", str(concurrency)])
            for _ in range(processes)
        ]

    def remaining(self) -> int:
        # Waiting and running tasks are entries of the stream until finish_task XACKs and
        # XDELs them; delayed ones wait in a sorted set (what Worker.queue_size counts).
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self._keys[0])
        pipe.zcard(self._keys[1])
        return sum(pipe.execute())

    def close(self) -> None:
        self._done.set()
        self.loop.run_until_complete(self._holder)
        self.loop.close()


def run_worker(url: str, concurrency: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    worker, _ = make_worker(url, concurrency)
    worker.run_sync()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--concurrency", type=int, default=50)
        args = parser.parse_args(sys.argv[2:])
        run_worker(args.url, args.concurrency)
    else:
        main(StreaqAdapter)
