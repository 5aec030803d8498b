"""arq's benchmark adapter (runs in benchmarks/.venvs/arq)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker
from common import LATENCY_KEY, QUEUE, Adapter, main

NAME = "arq"
REQUIREMENTS = ["arq==0.28.0", "redis==5.3.1", "hiredis==3.5.0"]
SETTINGS = ("Worker per process with max_jobs = concurrency (50; 100 for io), default "
            "poll_delay 0.5 s and queue_read_limit (max_jobs*5), default keep_result 3600 s, "
            "logging at WARNING")


async def noop(ctx: dict[str, Any], i: int) -> None:
    return None


async def io(ctx: dict[str, Any], i: int) -> None:
    await asyncio.sleep(0.01)


async def latency(ctx: dict[str, Any], i: int) -> None:
    await ctx["redis"].rpush(LATENCY_KEY, time.time())


class ArqAdapter(Adapter):
    name = NAME

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        self.pool: ArqRedis = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE))

    def enqueue_one(self, kind: str, i: int, delay_s: float = 0.0) -> None:
        job = self.loop.run_until_complete(
            self.pool.enqueue_job(kind, i, _defer_by=delay_s or None))
        assert job is not None

    # arq has no bulk enqueue API: enqueue_bulk stays the base class's False.

    def start_workers(
        self, kind: str, processes: int, concurrency: int
    ) -> list[subprocess.Popen[bytes]]:
        return [
            subprocess.Popen([sys.executable, __file__, "worker", "--url", self.url,
                              "--concurrency", str(concurrency)])
            for _ in range(processes)
        ]

    def remaining(self) -> int:
        # A job stays in the queue's sorted set (waiting, deferred or running) until
        # the worker's finish_job removes it.
        return int(self.redis.zcard(QUEUE))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


def run_worker(url: str, concurrency: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    Worker(functions=[noop, io, latency], queue_name=QUEUE,
           redis_settings=RedisSettings.from_dsn(url), max_jobs=concurrency).run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--url", required=True)
        parser.add_argument("--concurrency", type=int, default=50)
        args = parser.parse_args(sys.argv[2:])
        run_worker(args.url, args.concurrency)
    else:
        main(ArqAdapter)
