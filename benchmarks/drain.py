"""Drain N waiting no-op jobs with one worker process and count Redis work per job.

    .venv/bin/python -m benchmarks.drain --jobs 20000 --concurrency 1 10 100
    .venv/bin/python -m benchmarks.drain --concurrency 100 --partitions 0 8

``--partitions 0`` is a plain queue, ``n`` a queue of n partitions (one server).

Uses a private redis-server. Reports jobs/s, and from INFO commandstats the
script calls (round trips of the hot path) and all Redis commands per job,
counting the commands the scripts run inside Redis. Wall-clock figures move
with the machine's load; ``python -m benchmarks.drain_instructions`` counts the
worker's instructions per job instead (callgrind), the same from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from conveyor import Job, Queue, Worker
from conveyor.embedded import RedisServer


async def _commandstats(client: aioredis.Redis) -> dict[str, int]:
    info: dict[str, Any] = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def _redis_cpu_s(client: aioredis.Redis) -> float:
    info: dict[str, Any] = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def drain(url: str, jobs: int, concurrency: int, partitions: int = 0) -> dict[str, float]:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    queue = Queue("bench", url, **({"partitions": partitions} if partitions else {}))
    await queue.add_bulk([{"name": "noop", "data": i} for i in range(jobs)])
    done = asyncio.Event()
    finished = 0

    async def noop(job: Job) -> None:
        return None

    def count(job: Job, result: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    worker = Worker("bench", noop, connection=url, concurrency=concurrency)
    worker.on("completed", count)
    await client.config_resetstat()
    cpu = await _redis_cpu_s(client)
    start = time.perf_counter()
    task = asyncio.create_task(worker.run())
    await done.wait()
    elapsed = time.perf_counter() - start
    stats = await _commandstats(client)
    cpu = await _redis_cpu_s(client) - cpu
    await worker.close()
    await task
    await queue.close()
    await client.aclose()
    scripts = stats.get("evalsha", 0) + stats.get("eval", 0)
    total = sum(v for k, v in stats.items() if k not in ("config|resetstat", "info"))
    return {
        "jobs_per_s": jobs / elapsed,
        "round_trips_per_job": scripts / jobs,
        "commands_per_job": (total - scripts) / jobs,
        "redis_cpu_us_per_job": cpu * 1e6 / jobs,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--partitions", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    with RedisServer() as server:
        # The benchmark measures the queue, not fsync: no AOF here.
        await aioredis.Redis.from_url(server.url).config_set("appendonly", "no")
        for c, p in [(c, p) for c in args.concurrency for p in args.partitions]:
            r = await drain(server.url, args.jobs, c, p)
            print(f"concurrency {c:>4} partitions {p:>3}: {r['jobs_per_s']:>8.0f} jobs/s  "
                  f"{r['round_trips_per_job']:.3f} script calls/job  "
                  f"{r['commands_per_job']:.1f} Redis commands/job  "
                  f"{r['redis_cpu_us_per_job']:.1f} µs Redis CPU/job")


if __name__ == "__main__":
    asyncio.run(main())
