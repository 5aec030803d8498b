"""conveyor's benchmark adapter (runs in the project's own virtualenv)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from common import LATENCY_KEY, QUEUE, Adapter, main

from conveyor import Job, Queue, Worker
from conveyor.sync import Queue as SyncQueue

NAME = "conveyor"
REQUIREMENTS: list[str] = []  # the project's own .venv
SETTINGS = ("async processor, one Worker per process with concurrency 50 (100 for io), "
            "hiredis, default retention (newest 1,000 completed kept); the one-by-one "
            "producer is conveyor.sync.Queue (a blocking client, as a web view would use); "
            "concurrent producers are coroutines on one asyncio Queue, each awaiting its "
            "add (concurrent adds are batched automatically)")


class ConveyorAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        self.queue = Queue(QUEUE, url)
        self.sync_queue = SyncQueue(QUEUE, url)
        k = self.queue.keys
        self._keys = (k.wait, k.prioritized, k.delayed, k.active)

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        self.sync_queue.add(kind, i, delay=int(delay_s * 1000))

    def enqueue_bulk(self, kind: str, n: int, delay_s: float = 0.0) -> bool:
        delay = int(delay_s * 1000)

        async def add_all() -> None:
            for start in range(0, n, 1000):
                await self.queue.add_bulk(
                    [{"name": kind, "data": i, "delay": delay}
                     for i in range(start, min(start + 1000, n))]
                )

        self.loop.run_until_complete(add_all())
        return True

    def enqueue_concurrent(self, kind: str, n: int, producers: int) -> bool:
        share = [n // producers + (1 if p < n % producers else 0) for p in range(producers)]

        async def produce(p: int, count: int) -> None:
            for i in range(count):
                await self.queue.add(kind, [p, i])

        async def add_all() -> None:
            await asyncio.gather(*(produce(p, count) for p, count in enumerate(share)))

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
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self._keys[0])
        for key in self._keys[1:]:
            pipe.zcard(key)
        return sum(pipe.execute())

    def close(self) -> None:
        self.sync_queue.close()
        self.loop.run_until_complete(self.queue.close())
        self.loop.close()


async def run_worker(url: str, concurrency: int) -> None:
    client = aioredis.Redis.from_url(url)

    async def process(job: Job) -> Any:
        if job.name == "io":
            await asyncio.sleep(0.01)
        elif job.name == "latency":
            await client.rpush(LATENCY_KEY, time.time())
        return None

    await Worker(QUEUE, process, connection=url, concurrency=concurrency).run()
    await client.aclose()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--concurrency", type=int, default=50)
        args = parser.parse_args(sys.argv[2:])
        asyncio.run(run_worker(args.url, args.concurrency))
    else:
        main(ConveyorAdapter)
