"""Redis instructions per added job, counted by callgrind (deterministic on a
shared machine, where jobs/s are not).

    .venv/bin/python -m benchmarks.add_instructions [--batch 50] [--calls 20 120]

Runs a private redis-server under ``valgrind --tool=callgrind`` twice, sending
``add_jobs`` calls of ``--batch`` no-op jobs with generated ids (what a batch of
concurrent ``Queue.add`` calls sends), first the smaller number of ``--calls``,
then the larger; the difference of the two totals over the difference of jobs
is the per-job cost, start-up left out. Runs against whatever ``conveyor`` is
importable (``PYTHONPATH=<tree>/src`` to measure a branch). Idle ticks of the
server (serverCron) still count, so repeat runs differ by ~1%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import tempfile

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from conveyor import Queue
from conveyor._prepare import new_job, prepare_job
from conveyor.embedded import free_port


async def _drive(url: str, batch: int, calls: int) -> None:
    client = aioredis.Redis.from_url(url)
    for _ in range(400):  # the server starts slowly under valgrind
        try:
            await client.ping()
            break
        except (OSError, RedisConnectionError):
            await asyncio.sleep(0.05)
    async with Queue("bench", url) as queue:
        await queue.add("warm-up")
        jobs = [new_job(*prepare_job(queue, "noop", [i, 1], {})) for i in range(batch)]
        for _ in range(calls):
            await queue.scripts.add_jobs(None, jobs)
    await client.shutdown(nosave=True)  # callgrind writes its counts at exit


def instructions(batch: int, calls: int) -> int:
    """Instructions of a redis-server that ran ``calls`` add_jobs of ``batch`` jobs."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        port = free_port()
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server",
             "--port", str(port), "--save", "", "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # SHUTDOWN closes the connection before replying
        with contextlib.suppress(RedisConnectionError):
            asyncio.run(_drive(f"redis://127.0.0.1:{port}/0", batch, calls))
        server.wait(timeout=300)
        with open(out) as lines:
            for line in lines:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--calls", type=int, nargs=2, default=[20, 120])
    args = parser.parse_args()
    few, many = args.calls
    per_job = (instructions(args.batch, many) - instructions(args.batch, few)) / (
        (many - few) * args.batch)
    print(f"add_jobs, batches of {args.batch}: {per_job:,.0f} Redis instructions per job")


if __name__ == "__main__":
    main()
