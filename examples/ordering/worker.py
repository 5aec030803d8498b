"""The worker process (the seed's ``worker.js``): one worker per queue, with
the seed's ``WORKER_CONFIG``, logging each job's outcome; it upserts the
schedules first. Run it with ``python -m examples.ordering.worker``; SIGTERM
or Ctrl-C lets running jobs finish, then it exits."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from conveyor import Job

from .db import close_pool
from .scheduler import schedule_recurring_jobs
from .tasks import app

__all__ = ["WORKER_CONFIG", "main", "run_workers"]

log = logging.getLogger("ordering.worker")

WORKER_CONFIG: dict[str, Any] = {
    "concurrency": 5,  # jobs at once, per queue
    "limiter": {"max": 10, "duration": 1000},  # at most 10 jobs a second, per queue
    # A worker that dies (kill -9, OOM) hands its jobs back in about 2 s, not 30.
    "lock_duration": int(os.environ.get("ORDERING_LOCK_MS", "2000")),
    "stalled_interval": int(os.environ.get("ORDERING_STALLED_MS", "1000")),
}


def _completed(job: Job, result: Any) -> None:
    log.info("job %s (%s) of %s completed: %s", job.id, job.name, job.queue.name, result)


def _failed(job: Job, error: BaseException) -> None:
    left = job.opts.attempts - job.attempts_made
    log.warning("job %s (%s) of %s failed (attempt %d, %s): %s", job.id, job.name,
                job.queue.name, job.attempts_made,
                f"{left} left" if left > 0 else "to the dead-letter queue", error)


def _error(error: BaseException) -> None:
    log.error("worker error: %s", error)


async def run_workers() -> None:
    """Upsert the schedules, then run every queue's worker until SIGTERM/SIGINT."""
    await schedule_recurring_jobs()
    workers = [app.worker(name, **WORKER_CONFIG) for name in app.queue_names()]
    for worker in workers:
        worker.on("completed", _completed)
        worker.on("failed", _failed)
        worker.on("error", _error)
    try:
        await asyncio.gather(*(worker.run() for worker in workers))
    finally:
        await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
        await close_pool()
        await app.close()


def main() -> None:
    """The worker process's entry point."""
    logging.basicConfig(filename=os.environ.get("ORDERING_LOG_FILE"),
                        level=os.environ.get("ORDERING_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_workers())


if __name__ == "__main__":
    main()
