"""What a sandboxed processor costs per job, beside the thread pool it replaces.

    .venv/bin/python -m benchmarks.sandbox --jobs 5000 --concurrency 1 8

Uses a private redis-server. For each concurrency, drains N no-op jobs with a
plain ``def`` processor twice: in the worker's thread pool and with
``sandbox=True`` (one child process per slot). Children are started (and the
pool warmed) by a first batch that is not timed. Prints jobs/s and the extra
time per job; with concurrency 1 that is the added latency of one job.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from conveyor import Queue, Worker
from conveyor.embedded import RedisServer


def noop(job: Any) -> None:
    return None


async def _drain(queue: Queue, worker: Worker, jobs: int) -> float:
    done = asyncio.Event()
    finished = 0

    def count(job: Any, result: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    worker.on("completed", count)
    start = time.perf_counter()
    await queue.add_bulk([{"name": "noop", "data": i} for i in range(jobs)])
    await done.wait()
    worker._listeners["completed"].remove(count)
    return time.perf_counter() - start


async def drain(url: str, jobs: int, concurrency: int, sandbox: bool) -> float:
    """Jobs/s of a warm worker."""
    await aioredis.Redis.from_url(url).flushall()
    queue = Queue("bench", url)
    worker = Worker("bench", noop, connection=url, concurrency=concurrency, sandbox=sandbox)
    task = asyncio.create_task(worker.run())
    await _drain(queue, worker, max(4 * concurrency, 100))  # start every child
    elapsed = await _drain(queue, worker, jobs)
    await worker.close()
    await task
    await queue.close()
    return jobs / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    with RedisServer() as server:
        await aioredis.Redis.from_url(server.url).config_set("appendonly", "no")
        for c in args.concurrency:
            threads = await drain(server.url, args.jobs, c, sandbox=False)
            children = await drain(server.url, args.jobs, c, sandbox=True)
            extra_us = (1 / children - 1 / threads) * 1e6
            print(f"concurrency {c:>3}: thread pool {threads:>7.0f} jobs/s   "
                  f"sandbox {children:>7.0f} jobs/s   +{extra_us:.0f} µs per job")


if __name__ == "__main__":
    asyncio.run(main())
