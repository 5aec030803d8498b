"""CareCircle's worker process: ``python -m examples.carecircle.worker
[--queues reminders,documents,email]``.

One conveyor worker per queue in one event loop, each with its own
concurrency (tasks.CONCURRENCY), and a ``failed`` listener on each that logs
every failed attempt and records it in PostgreSQL (the seed's "no error
handling" mistake, avoided). SIGTERM or SIGINT stops taking jobs and lets the
running ones finish before the process exits 0 (the seed's "not handling
shutdown" mistake, avoided: conveyor's ``Worker.run`` installs the handlers).

``CARECIRCLE_LOCK_MS`` and ``CARECIRCLE_STALLED_MS`` shorten the lock and the
stalled check (default 30 s each), so a test's killed worker's jobs come back
in about a second; ``CARECIRCLE_WORKER_LOG`` names a log file (default: stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence

from conveyor import Job, UnrecoverableError, Worker

from . import db
from .tasks import CONCURRENCY, QUEUES, app

__all__ = ["main", "make_workers", "record_failure", "run"]

log = logging.getLogger("carecircle.worker")


async def record_failure(job: Job, error: BaseException) -> None:
    """Every failed attempt: a log line and a row in ``job_failures``; ``final``
    when no attempt is left (the job stays in the failed set for investigation)."""
    final = isinstance(error, UnrecoverableError) or job.attempts_made >= job.opts.attempts
    log.error("job failed: queue=%s id=%s name=%s attempt=%d final=%s error=%s",
              job.queue.name, job.id, job.name, job.attempts_made, final, error)
    try:
        async with (await db.pool()).acquire() as conn:
            await conn.execute(
                "INSERT INTO job_failures (queue, job_id, job_name, attempt, final, error)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                job.queue.name, job.id, job.name, job.attempts_made, final, str(error),
            )
    except Exception:  # the record is best effort; the job's own state is in Redis
        log.exception("could not record the failure of job %s", job.id)


def _ms(name: str) -> int:
    return int(os.environ.get(name, "30000"))


def make_workers(queues: Sequence[str] = QUEUES) -> list[Worker]:
    """The workers of ``queues``, with their concurrency and listeners."""
    workers = []
    for queue in queues:
        worker = app.worker(queue, concurrency=CONCURRENCY[queue],
                            lock_duration=_ms("CARECIRCLE_LOCK_MS"),
                            stalled_interval=_ms("CARECIRCLE_STALLED_MS"))
        worker.on("failed", record_failure)
        worker.on("error", lambda exc: log.error("worker error: %s", exc))
        workers.append(worker)
    return workers


async def run(queues: Sequence[str] = QUEUES) -> None:
    """Run the workers until SIGTERM/SIGINT; running jobs finish first."""
    await db.apply_schema()
    workers = make_workers(queues)
    try:
        await asyncio.gather(*(worker.run() for worker in workers))
    finally:
        await asyncio.gather(*(worker.close() for worker in workers), return_exceptions=True)
        await app.close()
        await db.close_pool()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``--queues a,b`` (default: all of CareCircle's queues)."""
    parser = argparse.ArgumentParser(prog="python -m examples.carecircle.worker")
    parser.add_argument("--queues", default=",".join(QUEUES))
    args = parser.parse_args(argv)
    queues = [q for q in args.queues.split(",") if q]
    unknown = set(queues) - set(QUEUES)
    if unknown:
        parser.error(f"unknown queues {sorted(unknown)}; CareCircle's: {', '.join(QUEUES)}")
    if os.environ.get("CARECIRCLE_OWN_SESSION") == "1":
        # Started by launch.py: Ctrl-C reaches the launcher only, which sends one
        # SIGTERM (a second signal would hand running jobs back instead).
        os.setsid()
    logging.basicConfig(level=logging.INFO, filename=os.environ.get("CARECIRCLE_WORKER_LOG"),
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per push is noise
    asyncio.run(run(queues))


if __name__ == "__main__":
    main()
