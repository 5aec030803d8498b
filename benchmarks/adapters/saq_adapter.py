"""saq's benchmark adapter (runs in benchmarks/.venvs/saq)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from typing import Any

from common import LATENCY_KEY, QUEUE, Adapter, main
from saq import Queue, Worker

NAME = "saq"
REQUIREMENTS = ["saq[hiredis]==0.26.4", "redis==8.1.0", "hiredis==3.5.0",
                "typing_extensions==4.16.0"]  # saq 0.26.4 imports it without declaring it
SETTINGS = ("Worker per process with concurrency 50 (100 for io), dequeue_timeout 0 "
            "(BLMOVE blocks until a job comes), default timers (scheduled jobs moved every 1 s), "
            "default job ttl 600 s, logging at WARNING like the saq CLI")


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    return None


async def io(ctx: dict[str, Any], *, i: int) -> None:
    await asyncio.sleep(0.01)


async def latency(ctx: dict[str, Any], *, i: int) -> None:
    await ctx["worker"].queue.redis.rpush(LATENCY_KEY, time.time())


class SaqAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        self.queue = Queue.from_url(url, name=QUEUE)
        self.loop.run_until_complete(self.queue.connect())
        self._incomplete = f"saq:{QUEUE}:incomplete"

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        extra: dict[str, Any] = {"scheduled": time.time() + delay_s} if delay_s else {}
        job = self.loop.run_until_complete(self.queue.enqueue(kind, i=i, **extra))
        assert job is not None

    # saq has no bulk enqueue: Queue.map enqueues one by one (and waits for the results),
    # Queue.batch only groups jobs for abort. enqueue_bulk stays the base class's False.

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        return [
            subprocess.Popen([sys.executable, __file__, "worker", "--url", self.url,
                              "--concurrency", str(concurrency)])
            for _ in range(processes)
        ]

    def remaining(self) -> int:
        # Every job (queued, scheduled or active) is in the "incomplete" sorted set until
        # the worker's finish removes it.
        return int(self.redis.zcard(self._incomplete))

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.disconnect())
        self.loop.close()


def run_worker(url: str, concurrency: int) -> None:
    # What saq's CLI (saq.worker.start) does with a settings dict, verbosity 0.
    logging.basicConfig(level=logging.WARNING)
    worker = Worker(Queue.from_url(url, name=QUEUE), functions=[noop, io, latency],
                    concurrency=concurrency)

    async def worker_start() -> None:
        try:
            await worker.queue.connect()
            await worker.start()
        finally:
            await worker.queue.disconnect()

    asyncio.new_event_loop().run_until_complete(worker_start())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--concurrency", type=int, default=50)
        args = parser.parse_args(sys.argv[2:])
        run_worker(args.url, args.concurrency)
    else:
        main(SaqAdapter)
