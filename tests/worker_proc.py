"""A conveyor Worker in its own process, for tests that kill or signal workers.

Usage::

    python tests/worker_proc.py REDIS_URL QUEUE [--lock-duration MS]
        [--stalled-interval MS] [--max-stalled-count N] [--concurrency N]
        [--also OTHER_QUEUE ...]

``--also`` runs one more worker (same options) on another queue in the same
process and event loop. The processor announces each job by pushing
``<pid>:<job id>`` onto the list ``started_key(<its queue>)``, then holds the
job until the list ``release_key(<its queue>)`` is non-empty (it is never
consumed, so one push releases every job, now and later), and returns
``{"pid": <pid>, "job": <job id>}``. The workers log at INFO to stderr; the
process exits 0 once every ``run()`` returns (SIGTERM/SIGINT close them all).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()


def started_key(queue: str) -> str:
    return f"test:{queue}:started"


def release_key(queue: str) -> str:
    return f"test:{queue}:release"


def command(redis_url: str, queue: str, **options: Any) -> list[str]:
    """argv to run this script: ``options`` are the flags, e.g. lock_duration=1000
    (a list value repeats its flag)."""
    argv = [sys.executable, str(SCRIPT), redis_url, queue]
    for name, value in options.items():
        for one in value if isinstance(value, list) else [value]:
            argv += ["--" + name.replace("_", "-"), str(one)]
    return argv


async def main(args: argparse.Namespace) -> None:
    from conveyor import Job, Worker

    pid = os.getpid()

    async def hold(job: Job) -> dict[str, Any]:
        client = job.queue.client
        await client.rpush(started_key(job.queue.name), f"{pid}:{job.id}")
        release = release_key(job.queue.name)
        # Block (no polling) until the release list has an element; rotating it
        # onto itself leaves it there for every other job.
        while await client.blmove(release, release, 1, "RIGHT", "LEFT") is None:
            # Python 3.11's asyncio.wait_for (inside redis-py) may swallow the
            # cancel of a forced shutdown; honour it anyway.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
        return {"pid": pid, "job": job.id}

    workers = [
        Worker(
            queue,
            hold,
            connection=args.redis_url,
            lock_duration=args.lock_duration,
            stalled_interval=args.stalled_interval,
            max_stalled_count=args.max_stalled_count,
            concurrency=args.concurrency,
        )
        for queue in [args.queue, *args.also]
    ]
    await asyncio.gather(*(worker.run() for worker in workers))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("redis_url")
    parser.add_argument("queue")
    parser.add_argument("--lock-duration", type=int, default=1000)
    parser.add_argument("--stalled-interval", type=int, default=500)
    parser.add_argument("--max-stalled-count", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--also", action="append", default=[], metavar="OTHER_QUEUE")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(parse(sys.argv[1:])))
