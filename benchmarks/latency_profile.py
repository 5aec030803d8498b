"""Where the idle latency goes: enqueue-to-start split into its parts.

    .venv/bin/python -m benchmarks.latency_profile [--samples 300]

Runs on a private redis-server (AOF off) with one worker process, adding one
job at a time with a 10 ms pause between jobs (as the benchmark's latency
scenario does), and reports p50/p99 of:

- a PING round trip, back to back and after a 10 ms pause (the machine's floor);
- ``loop.run_until_complete`` of an empty coroutine after a 10 ms pause;
- ``conveyor.sync.Queue.add`` after a 10 ms pause with no worker running
  (the add alone), then with an idle worker waiting (the add plus the
  wake-up and the fetch that Redis runs before it replies);
- when the worker had the reply of the wait that the add ended (the job taken);
- when the job started running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from conveyor.embedded import RedisServer
from conveyor.sync import Queue

PAUSE = 0.01
MARKS = "bench:marks"
STOP = "bench:stop"


async def _worker(url: str) -> None:
    """The worker process: records when each wait-and-fetch returns and each job starts."""
    from conveyor import Job, Worker

    client = redis.asyncio.Redis.from_url(url)
    marks: list[tuple[str, Any, float]] = []

    async def process(job: Job) -> None:
        marks.append(("start", job.data, time.time()))

    worker = Worker("latency", process, connection=url, concurrency=50)
    wait_and_fetch = worker._wait_and_fetch

    async def timed(n: int, timeout: float) -> Any:
        reply = await wait_and_fetch(n, timeout)
        marks.append(("taken", None, time.time()))
        return reply

    worker._wait_and_fetch = timed  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    await client.blpop([STOP], 0)
    await worker.close()
    await task
    await client.rpush(MARKS, json.dumps(marks))
    await client.aclose()


def _p(values: list[float]) -> str:
    values = sorted(values)
    return (f"p50 {statistics.median(values):.3f} ms, "
            f"p99 {values[max(int(len(values) * 0.99) - 1, 0)]:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker(args.worker))
        return

    server = RedisServer()
    server.start()
    try:
        client = redis.Redis.from_url(server.url, socket_timeout=None)
        client.config_set("appendonly", "no")
        hot, cold = [], []
        for _ in range(args.samples):
            t = time.perf_counter()
            client.ping()
            hot.append((time.perf_counter() - t) * 1000)
        for _ in range(args.samples):
            time.sleep(PAUSE)
            t = time.perf_counter()
            client.ping()
            cold.append((time.perf_counter() - t) * 1000)
        print(f"PING back to back:            {_p(hot)}")
        print(f"PING after a {PAUSE * 1000:.0f} ms pause:      {_p(cold)}")

        loop = asyncio.new_event_loop()

        async def nothing() -> None:
            return None

        empty = []
        for _ in range(args.samples):
            time.sleep(PAUSE)
            t = time.perf_counter()
            loop.run_until_complete(nothing())
            empty.append((time.perf_counter() - t) * 1000)
        print(f"run_until_complete(empty):    {_p(empty)}")

        queue = Queue("latency", server.url)
        alone = []
        for i in range(args.samples):
            time.sleep(PAUSE)
            t = time.perf_counter()
            queue.add("alone", i)
            alone.append((time.perf_counter() - t) * 1000)
        print(f"add, no worker running:       {_p(alone)}")
        client.delete(*client.keys("*latency*"))

        worker = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.latency_profile", "--worker", server.url],
            cwd=Path(__file__).resolve().parent.parent,
        )
        queue.add("warm-up", -1)
        time.sleep(1.0)
        sent: list[tuple[float, float]] = []
        for i in range(args.samples):
            time.sleep(PAUSE)
            t0 = time.time()
            queue.add("job", i)
            sent.append((t0, time.time()))
        client.rpush(STOP, 1)
        worker.wait(30)
        queue.close()
        raw: Any = client.lpop(MARKS)
        marks = json.loads(raw or b"[]")
        starts = {data: t for kind, data, t in marks if kind == "start"}
        taken = sorted(t for kind, _, t in marks if kind == "taken")
        add_ms, taken_ms, start_ms = [], [], []
        for i, (t0, t1) in enumerate(sent):
            if i not in starts:
                continue
            start = starts[i]
            before = [t for t in taken if t <= start]
            add_ms.append((t1 - t0) * 1000)
            start_ms.append((start - t0) * 1000)
            if before:
                taken_ms.append((before[-1] - t0) * 1000)
        print(f"add until its reply:          {_p(add_ms)}")
        print(f"add until the worker has it:  {_p(taken_ms)}")
        print(f"add until the job starts:     {_p(start_ms)}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
