"""What a worker's listeners learn of finished attempts: the job as Redis now
holds it (return value, reason, stacktrace, finish time), as BullMQ's
``completed``/``failed`` listeners get it, and the failures the stalled check
decides (no processor ran those, yet the ``failed`` listeners hear of them)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import UnrecoverableError
from .job import Job
from .options import to_ms

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["record_attempt", "stalled_failures", "strategy_delay"]

#: Stacktrace entries a job keeps (move_to_finished.lua's STACK_LIMIT).
STACK_LIMIT = 10


def record_attempt(job: Job, kind: str, payload: Any, reason: str, stack: str) -> None:
    """Set on ``job`` what move_to_finished will store for this attempt (its
    finish time comes with the reply)."""
    if kind == "c":
        job.return_value = payload
    elif kind == "f":
        job.failed_reason = reason
        job.stacktrace = [*job.stacktrace, stack][-STACK_LIMIT:]


async def strategy_delay(
    strategy: Callable[[int, BaseException, Job], Any], made: int, exc: BaseException, job: Job
) -> int | None:
    """A backoff strategy's delay in ms (``async def`` strategies are awaited);
    None or < 0: don't retry. Raises what the strategy raises, or a
    ValidationError for a value that is no delay."""
    delay = strategy(made, exc, job)
    if inspect.isawaitable(delay):
        delay = await delay
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        delay = int(delay.total_seconds() * 1000)
    return delay if type(delay) is int else to_ms("backoff_strategy()", delay)


async def stalled_failures(
    queue: Queue, ids: list[str], max_stalled: int
) -> list[tuple[Job, UnrecoverableError]]:
    """The jobs the stalled check failed for good, read back, with the error a
    ``failed`` listener gets (a job already deleted by its retention is rebuilt
    from its id and the reason)."""
    reason = f"job stalled more than max_stalled_count ({max_stalled}) times"
    failures = []
    for job_id in ids:
        job = await queue._read_job(job_id)
        if job is None:
            job = Job.from_fields(queue, job_id, {})
            job.failed_reason = reason
        failures.append((job, UnrecoverableError(job.failed_reason or reason)))
    return failures


