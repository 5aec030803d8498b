"""Redis memory per job, measured on a private redis-server: the figure for
sizing Redis (docs/deployment/redis.md).

    .venv/bin/python -m benchmarks.job_memory [--jobs 10000] [--data-bytes 100 1000 10000]

For each size of job data (a JSON object with one string of that many bytes),
adds ``--jobs`` jobs and reads ``used_memory`` before and after: the
difference over the number of jobs is what a waiting job costs, its hash
(``MEMORY USAGE``, all fields sampled) plus its place in the wait list and its
share of the event stream. Then a worker completes them all (each returning a
small dict, kept: ``remove_on_complete`` set to keep every one) and the same
is read for a completed job; then as many fail for good (one attempt, a short
exception: its stack trace is a few hundred bytes) and are kept, for a failed
job. The event stream is capped (10,000 entries by
default), so its share per job falls as the number of jobs grows; it is
reported on its own.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from conveyor import Job, Queue, Worker
from conveyor.embedded import RedisServer

QUEUE = "memory"


@dataclass
class Figures:
    data_bytes: int
    waiting_per_job: float     # used_memory delta / jobs, waiting
    waiting_hash: float        # MEMORY USAGE of one job hash, waiting
    completed_per_job: float   # used_memory delta / jobs, completed and kept
    completed_hash: float
    failed_per_job: float      # used_memory delta / jobs, failed and kept
    failed_hash: float
    events_stream: int         # MEMORY USAGE of the event stream at the end


async def _used(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def _mean_hash(client: aioredis.Redis, queue: Queue, ids: Sequence[str]) -> float:
    sample = ids[:: max(1, len(ids) // 200)]
    sizes = [await client.memory_usage(queue.keys.job(job_id), samples=0) or 0
             for job_id in sample]
    return sum(sizes) / len(sizes)


async def _done(job: Job) -> dict[str, bool]:
    if job.name == "failing":
        raise ConnectionError("the partner did not answer")
    return {"ok": True}


async def _run_all(url: str, jobs: int, event: str) -> None:
    """Run the queue's jobs until ``jobs`` of them emitted ``event``."""
    worker = Worker(QUEUE, _done, connection=url, concurrency=100, handle_signals=False)
    finished = asyncio.Event()
    count = 0

    def one_more(*_: object) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            finished.set()

    worker.on(event, one_more)
    running = asyncio.create_task(worker.run())
    await finished.wait()
    await worker.close()
    await running


async def measure(url: str, jobs: int, data_bytes: int) -> Figures:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    async with Queue(QUEUE, url) as queue:
        await queue.add("warm-up", remove_on_complete=True)   # creates meta, registry
        await queue.drain()
        before = await _used(client)
        data = {"payload": "x" * data_bytes}
        ids: list[str] = []
        for start in range(0, jobs, 1000):
            batch = [{"name": "job", "data": data, "remove_on_complete": jobs}
                     for _ in range(start, min(jobs, start + 1000))]
            ids += [job.id for job in await queue.add_bulk(batch)]
        waiting = await _used(client)
        waiting_hash = await _mean_hash(client, queue, ids)

        await _run_all(url, jobs, "completed")
        # The worker's registration and locks are gone; per-minute metrics stay
        # (a few hashes per queue, not per job).
        completed = await _used(client)
        completed_hash = await _mean_hash(client, queue, ids)

        failing = [{"name": "failing", "data": data, "remove_on_fail": jobs}
                   for _ in range(jobs)]
        failed_ids: list[str] = []
        for start in range(0, jobs, 1000):
            failed_ids += [job.id for job in await queue.add_bulk(failing[start:start + 1000])]
        await _run_all(url, jobs, "failed")
        failed = await _used(client)
        failed_hash = await _mean_hash(client, queue, failed_ids)
        events = await client.memory_usage(queue.keys.events, samples=0) or 0
    await client.aclose()
    return Figures(data_bytes, (waiting - before) / jobs, waiting_hash,
                   (completed - before) / jobs, completed_hash,
                   (failed - completed) / jobs, failed_hash, events)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--data-bytes", type=int, nargs="+", default=[100, 1000, 10_000])
    args = parser.parse_args(argv)
    with RedisServer() as server:
        print(f"{args.jobs} jobs per size on a private redis-server")
        print("| data bytes | waiting: per job | its hash | completed: per job | its hash "
              "| failed: per job | its hash | event stream |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for size in args.data_bytes:
            f = asyncio.run(measure(server.url, args.jobs, size))
            print(f"| {f.data_bytes:,} | {f.waiting_per_job:,.0f} B | {f.waiting_hash:,.0f} B "
                  f"| {f.completed_per_job:,.0f} B | {f.completed_hash:,.0f} B "
                  f"| {f.failed_per_job:,.0f} B | {f.failed_hash:,.0f} B "
                  f"| {f.events_stream / 1024:,.0f} KiB |")


if __name__ == "__main__":
    main()
