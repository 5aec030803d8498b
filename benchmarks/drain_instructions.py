"""CPU instructions the worker's Python process spends per job, counted by
``valgrind --tool=callgrind``: deterministic where wall-clock drain figures on a
shared machine are not.

    .venv/bin/python -m benchmarks.drain_instructions --jobs 4000 --concurrency 10 100
    .venv/bin/python -m benchmarks.drain_instructions --src /work/wt/head0/src --src src
    .venv/bin/python -m benchmarks.drain_instructions --profile /tmp/drain.prof --concurrency 10

Each run adds N no-op jobs to a queue on a private redis-server (not under
valgrind), then starts a child process under callgrind that imports conveyor
from ``--src`` (so two checkouts compare on one harness), runs one Worker until
it has completed N jobs and closes it. Startup, imports and shutdown cost the
same whatever N is, so the figure per job is the difference of two runs,
(I(N) - I(N0)) / (N - N0) with N0 = ``--base-jobs``. ``--repeat`` runs each
pair again to show the spread; ``--profile`` runs the child without valgrind
under cProfile instead and writes its stats (for ``pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
QUEUE = "bench"


def fill(url: str, jobs: int) -> None:
    """An empty server holding ``jobs`` waiting no-op jobs (added by the
    checkout the harness runs from: the jobs' form is the same for both)."""
    from conveyor.sync import Queue

    redis.Redis.from_url(url).flushall()
    queue = Queue(QUEUE, url)
    try:
        for start in range(0, jobs, 1000):
            queue.add_bulk([{"name": "noop", "data": i}
                            for i in range(start, min(jobs, start + 1000))])
    finally:
        queue.close()


def child_env(src: Path) -> dict[str, str]:
    """The environment of a child that imports conveyor from ``src``."""
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE.parent}",
            "CONVEYOR_SERVER_CHECKS": "0", "PYTHONHASHSEED": "0"}


def count(src: Path, url: str, jobs: int, concurrency: int) -> int:
    """Instructions of a child process that drains ``jobs`` jobs (callgrind's total)."""
    fill(url, jobs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--dump-line=no", sys.executable, "-m", "benchmarks.drain_instructions",
             "--child", url, str(jobs), str(concurrency)],
            env=child_env(src), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError(f"no total in {out}")
        return int(found.group(1))


def profile(src: Path, url: str, jobs: int, concurrency: int, path: str) -> None:
    """cProfile stats of a child that drains ``jobs`` jobs, written to ``path``."""
    fill(url, jobs)
    subprocess.run([sys.executable, "-m", "benchmarks.drain_instructions", "--child", url,
                    str(jobs), str(concurrency), "--profile", path],
                   env=child_env(src), check=True)


async def drain(url: str, jobs: int, concurrency: int) -> None:
    """Run one Worker until it has completed ``jobs`` jobs, then close it."""
    from conveyor import Job, Worker

    done = asyncio.Event()
    finished = 0

    async def noop(job: Job) -> None:
        return None

    def completed(job: Job, result: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    worker = Worker(QUEUE, noop, connection=url, concurrency=concurrency)
    worker.on("completed", completed)
    task = asyncio.create_task(worker.run())
    await done.wait()
    await worker.close()
    await task


def run_child(url: str, jobs: int, concurrency: int, profile_path: str | None) -> None:
    if profile_path is None:
        asyncio.run(drain(url, jobs, concurrency))
        return
    import cProfile

    with cProfile.Profile() as prof:
        asyncio.run(drain(url, jobs, concurrency))
    prof.dump_stats(profile_path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("URL", "JOBS", "CONCURRENCY"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, action="append",
                        help="a checkout's src/ to import conveyor from (repeatable; "
                             "default: this checkout's)")
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--base-jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", metavar="PATH",
                        help="write cProfile stats (PATH.<src#>.c<concurrency>) instead")
    args = parser.parse_args()
    if args.child:
        url, jobs, concurrency = args.child
        run_child(url, int(jobs), int(concurrency), args.profile)
        return
    from conveyor.embedded import RedisServer

    sources = [s.resolve() for s in args.src or [HERE.parent / "src"]]
    with RedisServer() as server:
        redis.Redis.from_url(server.url).config_set("appendonly", "no")
        for round_ in range(args.repeat):
            for c in args.concurrency:
                for i, src in enumerate(sources):
                    if args.profile:
                        path = f"{args.profile}.{i}.c{c}"
                        profile(src, server.url, args.jobs, c, path)
                        print(f"{src}: concurrency {c}: {path}", flush=True)
                        continue
                    big = count(src, server.url, args.jobs, c)
                    small = count(src, server.url, args.base_jobs, c)
                    per_job = (big - small) / (args.jobs - args.base_jobs)
                    print(f"round {round_ + 1} {src}: concurrency {c:>3}: "
                          f"{per_job:>9,.0f} instructions/job "
                          f"(total {big:,} for {args.jobs}, {small:,} for {args.base_jobs})",
                          flush=True)


if __name__ == "__main__":
    main()
