"""A job's attempts, one by one: when each started and ended, how it ended and
why it failed, for a job's page (the REST detail, the dashboard, the CLI).

Attempts that failed or stalled come from the job hash's ``ath`` field, which
the scripts append to as an attempt fails (``move_to_finished``) or its lock
lapses (``move_stalled_jobs``), the last 10 (see
``scripts/includes/attempts.lua``); the attempt that completed, or the one
running now, is the job's own ``pon``/``fon``, so a job that succeeds at once
costs nothing more; a retry of a completed job moves them to ``ath`` first.
Attempts handed back unfinished (a worker's shutdown, a rate limit) are not
attempts and are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from redis.exceptions import ResponseError

from .._render import TIME, View

if TYPE_CHECKING:
    from ..job import Job

__all__ = ["AttemptRecord", "attempt_records", "read_history"]

Outcome = Literal["completed", "failed", "stalled", "running"]


@dataclass(frozen=True, slots=True)
class AttemptRecord(View):
    """One attempt of a job."""

    #: 1 for the first attempt (counts restart after ``retry(reset_attempts=True)``);
    #: an attempt that stalled does not count, so the next one has its number too.
    attempt: int
    started_on: int | None = field(metadata=TIME)
    finished_on: int | None = field(metadata=TIME)
    outcome: Outcome
    #: The failed reason (cut to 1 KiB), why it stalled, None for other outcomes.
    error: str | None = None


def attempt_records(
    job: Job, state: str | None, history: bytes | str | None
) -> list[AttemptRecord]:
    """The attempts of ``job`` (now in ``state``), oldest first, from its
    ``ath`` field ``history`` (None: nothing recorded) and its own fields."""
    records = [AttemptRecord(attempt=n, started_on=start, finished_on=end, outcome=outcome,
                             error=reason or None)
               for n, start, end, reason, outcome in _entries(history)]
    if state == "active" and job.processed_on is not None:
        records.append(AttemptRecord(job.attempts_made + 1, job.processed_on, None, "running"))
    elif job.processed_on is not None and job.attempts_made > 0 and (
            state == "completed" or not any(
                r.attempt == job.attempts_made and r.outcome == "failed" for r in records)):
        # The last attempt made, unless the history has it: one that completed
        # (now, or before a retry), or one that failed before attempts were
        # recorded. (Attempt numbers tell, not start times: two attempts may
        # start in one ms.)
        completed = state == "completed" or job.failed_reason is None
        records.append(AttemptRecord(
            job.attempts_made, job.processed_on, job.finished_on,
            "completed" if completed else "failed",
            None if completed else job.failed_reason))
    return records


async def read_history(job: Job) -> bytes | str | None:
    """The job's ``ath`` field (None: none, or a corrupt job whose key is not a hash)."""
    queue = job.queue  # the job's own partition
    try:
        found: bytes | str | None = await queue.client.hget(queue.keys.job(job.id), "ath")
    except ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        return None
    return found


def _entries(history: bytes | str | None) -> list[tuple[int, int, int, str, Outcome]]:
    """The well-formed entries of an ``ath`` field (a corrupt one lists none)."""
    if history is None:
        return []
    try:
        raw: Any = orjson.loads(history)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(raw, list):
        return []
    found: list[tuple[int, int, int, str, Outcome]] = []
    for entry in raw:
        if (isinstance(entry, list) and len(entry) in (4, 5)
                and all(isinstance(v, int | float) for v in entry[:3])
                and isinstance(entry[3], str)):
            outcome: Outcome = ("stalled" if entry[4:] == ["stalled"]
                                else "completed" if entry[4:] == ["completed"] else "failed")
            found.append((int(entry[0]), int(entry[1]), int(entry[2]), entry[3], outcome))
    return found
