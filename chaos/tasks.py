"""The chaos run's task app: what each job does, in ``conveyor worker`` processes.

``conveyor worker chaos.tasks:app`` runs it; the driver sets the environment:
``CHAOS_DATABASE_URL`` (the PostgreSQL of the effects), ``CHAOS_QUEUE``,
``CHAOS_LOCK_MS`` and ``CHAOS_STALLED_MS`` (short locks, so a killed or paused
worker's jobs come back within seconds), ``CHAOS_MAX_STALLED`` and
``CHAOS_CONCURRENCY``.

Every run of a job writes a row to ``runs`` as it starts (job id, this pid, the
attempt, when Redis handed the job out, when the run started) and fills in its
end; a job of kind ``ok`` or ``big`` then applies its effect, an idempotent
upsert into ``effects`` keyed by the job id that counts the runs that got
that far. The toxic kinds: ``raise`` (always raises), ``hang`` (sleeps past
its job timeout), ``exit`` (``os._exit(1)`` mid-run: a worker process dies),
``big`` (returns a 2 MB result).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from conveyor.app import Conveyor, current_job

__all__ = ["SCHEMA", "app", "effect"]

#: The tables the driver creates before the workers start.
SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    job_id   text PRIMARY KEY,
    runs     integer NOT NULL,
    first_at double precision NOT NULL,
    last_at  double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id         bigserial PRIMARY KEY,
    job_id     text NOT NULL,
    pid        integer NOT NULL,
    attempt    integer NOT NULL,
    fetched_at double precision,
    started_at double precision NOT NULL,
    ended_at   double precision,
    outcome    text
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job_id);
"""

QUEUE = os.environ.get("CHAOS_QUEUE", "chaos")
BIG_RESULT = 2 * 1024 * 1024

app = Conveyor()  # --redis URL on the command line
app.configure_worker(
    QUEUE,
    concurrency=int(os.environ.get("CHAOS_CONCURRENCY", "8")),
    lock_duration=int(os.environ.get("CHAOS_LOCK_MS", "3000")),
    stalled_interval=int(os.environ.get("CHAOS_STALLED_MS", "1000")),
    max_stalled_count=int(os.environ.get("CHAOS_MAX_STALLED", "2")),
)

_pool: Any = None
_pool_lock = asyncio.Lock()


async def _db() -> Any:
    """This process's connection pool (made on first use, in the worker's loop)."""
    global _pool
    async with _pool_lock:
        if _pool is None:
            import asyncpg

            _pool = await asyncpg.create_pool(
                os.environ["CHAOS_DATABASE_URL"], min_size=1,
                max_size=int(os.environ.get("CHAOS_CONCURRENCY", "8")) + 1,
            )
    return _pool


async def _end_run(run_id: int, outcome: str) -> None:
    pool = await _db()
    await pool.execute("UPDATE runs SET ended_at = $1, outcome = $2 WHERE id = $3",
                       time.time(), outcome, run_id)


@app.task(queue=QUEUE, name="effect")
async def effect(kind: str = "ok", work_ms: int = 5) -> Any:
    """One job of the chaos run (see the module's docstring for ``kind``)."""
    started = time.time()
    job = current_job()
    pool = await _db()
    fetched = None if job.processed_on is None else job.processed_on / 1000
    run_id = await pool.fetchval(
        "INSERT INTO runs (job_id, pid, attempt, fetched_at, started_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        job.id, os.getpid(), job.attempts_made + 1, fetched, started,
    )
    try:
        if kind == "exit":
            os._exit(1)
        if kind == "raise":
            raise RuntimeError("toxic job: raises on every attempt")
        await asyncio.sleep((60_000 if kind == "hang" else work_ms) / 1000)
        now = time.time()
        await pool.execute(
            "INSERT INTO effects (job_id, runs, first_at, last_at) VALUES ($1, 1, $2, $2) "
            "ON CONFLICT (job_id) DO UPDATE SET runs = effects.runs + 1, last_at = $2",
            job.id, now,
        )
    except BaseException as exc:
        # A timeout's cancel too: the row's end is written even so.
        await asyncio.shield(_end_run(run_id, type(exc).__name__))
        raise
    await _end_run(run_id, "ok")
    return "x" * BIG_RESULT if kind == "big" else {"job": job.id, "pid": os.getpid()}
