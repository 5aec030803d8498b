"""Concurrent producers on one async Queue: the lone add's latency, the one-by-one
rate, and the rate of many coroutines adding at once (which share round trips).

    .venv/bin/python -m benchmarks.producers [--jobs 20000] [--producers 100] [--rounds 3]

Uses a private redis-server (AOF off). Per round, in turn: ``--samples`` lone
adds (one coroutine, each awaited, a 1 ms pause between them so nothing is in
flight when the next starts): p50 and p99 in µs; one coroutine adding
``--jobs`` one by one (jobs/s); ``--producers`` coroutines adding ``--jobs``
between them (jobs/s), and the script calls (round trips) per job from INFO
commandstats. Runs against whatever ``conveyor`` is importable, so the same
command measures a branch and main (``PYTHONPATH=<tree>/src``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import redis.asyncio as aioredis

from conveyor import Queue
from conveyor.embedded import RedisServer


async def _script_calls(client: aioredis.Redis) -> int:
    info: dict[str, Any] = await client.info("commandstats")
    return sum(int(info.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))


async def lone_latency(queue: Queue, samples: int) -> tuple[float, float]:
    """p50 and p99 (µs) of an add with nothing else in flight."""
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        await queue.add("lone", i)
        times.append((time.perf_counter() - t0) * 1e6)
        await asyncio.sleep(0.001)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


async def concurrent_rate(
    queue: Queue, client: aioredis.Redis, jobs: int, producers: int
) -> tuple[float, float]:
    """jobs/s of ``producers`` coroutines adding ``jobs`` between them, each
    awaiting its own add, and script calls per job."""
    per = [jobs // producers + (1 if p < jobs % producers else 0) for p in range(producers)]

    async def produce(p: int, count: int) -> None:
        for i in range(count):
            await queue.add("noop", [p, i])

    calls0 = await _script_calls(client)
    t0 = time.perf_counter()
    await asyncio.gather(*(produce(p, count) for p, count in enumerate(per)))
    elapsed = time.perf_counter() - t0
    calls = await _script_calls(client) - calls0
    return jobs / elapsed, calls / jobs


async def run_round(url: str, args: argparse.Namespace) -> dict[str, float]:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    async with Queue("bench", url) as queue:
        await queue.add("warm-up")
        p50, p99 = await lone_latency(queue, args.samples)
        await client.flushall()
        one_rate, one_calls = await concurrent_rate(queue, client, args.jobs, 1)
        await client.flushall()
        many_rate, many_calls = await concurrent_rate(queue, client, args.jobs, args.producers)
    await client.aclose()
    return {"p50_us": p50, "p99_us": p99, "one_by_one": one_rate, "one_calls": one_calls,
            "concurrent": many_rate, "concurrent_calls": many_calls}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--producers", type=int, default=100)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with RedisServer() as server:
        await aioredis.Redis.from_url(server.url).config_set("appendonly", "no")
        for r in range(args.rounds):
            res = await run_round(server.url, args)
            print(f"round {r + 1}: lone add p50 {res['p50_us']:.0f} µs p99 {res['p99_us']:.0f} µs"
                  f" | one by one {res['one_by_one']:,.0f} jobs/s"
                  f" ({res['one_calls']:.3f} script calls/job)"
                  f" | {args.producers} producers {res['concurrent']:,.0f} jobs/s"
                  f" ({res['concurrent_calls']:.3f} script calls/job)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
