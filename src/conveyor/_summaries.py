"""Jobs as lists show them: :class:`JobSummary`, and the reads behind a page of
jobs and the dashboard's recent failures. A list reads only the fields its rows
show (never ``data``, ``rv`` or ``st``) and only a preview of the user-sized
ones (``name``, ``progress``, ``failed_reason``), in one script call per queue
(``read_summaries.lua``), so a page of jobs with megabytes of data each costs
Redis and the reader a few hundred bytes per row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ._corrupt import not_a_hash, unreadable_job
from ._stream import text
from .job import Job, with_lock
from .keys import delayed_due

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .queue import Queue

__all__ = ["PREVIEW_BYTES", "JobSummary", "iso", "read_alerts", "read_page", "with_times"]

#: The most bytes a list shows of a job's name, progress (JSON) and failed reason;
#: a valid name (at most 255 characters) always fits.
PREVIEW_BYTES = 1024


def iso(ms: int | float | None) -> str | None:
    """Epoch ms as a UTC ISO-8601 string with milliseconds ("...T22:15:03.120Z");
    None past what a date holds (a due time stored before delays were bounded)."""
    if ms is None:
        return None
    try:
        moment = datetime.fromtimestamp(int(ms) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def with_times(out: dict[str, Any], **times: int | None) -> dict[str, Any]:
    """Add each time as ``name`` (ISO string) and ``name_ms`` (epoch ms)."""
    for name, ms in times.items():
        out[name] = iso(ms)
        out[name + "_ms"] = ms
    return out


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A job as listed in a table. Times are epoch ms (``to_dict`` adds ISO)."""

    id: str
    name: str
    state: str | None
    timestamp: int
    processed_on: int | None
    finished_on: int | None
    attempts_made: int
    attempts: int
    progress: Any
    failed_reason: str | None
    delay: int
    priority: int
    #: When a delayed job is due (epoch ms; its delay may have changed since it
    #: was added); None for a job that is not delayed.
    due: int | None = None
    #: What is wrong with the job's hash (see ``Job.corrupt``), else None.
    corrupt: str | None = None
    #: In a list, the name and failed reason are cut to PREVIEW_BYTES, and a
    #: progress longer than that is its JSON text cut so (a str); these say
    #: which were cut. A job's detail has them whole.
    name_truncated: bool = False
    progress_truncated: bool = False
    failed_reason_truncated: bool = False

    @classmethod
    def from_job(cls, job: Job, state: str | None, due: int | None = None) -> JobSummary:
        return cls(
            id=job.id, name=job.name, state=state, timestamp=job.timestamp,
            processed_on=job.processed_on, finished_on=job.finished_on,
            attempts_made=job.attempts_made, attempts=job.opts.attempts,
            progress=job.progress, failed_reason=job.failed_reason,
            delay=job.opts.delay, priority=job.opts.priority, due=due,
            corrupt=job.corrupt,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "state": self.state}
        with_times(out, timestamp=self.timestamp, processed_on=self.processed_on,
                   finished_on=self.finished_on)
        out.update(attempts_made=self.attempts_made, attempts=self.attempts,
                   progress=self.progress, failed_reason=self.failed_reason,
                   delay=self.delay, priority=self.priority, corrupt=self.corrupt,
                   name_truncated=self.name_truncated,
                   progress_truncated=self.progress_truncated,
                   failed_reason_truncated=self.failed_reason_truncated)
        if self.due is not None:
            with_times(out, due=self.due)
        return out


async def read_page(
    queue: Queue, state: str, start: int, count: int
) -> tuple[int, list[JobSummary]]:
    """The state's total and ``count`` of its jobs from ``start``, newest first
    ("waiting": the wait list, in reverse order of running): 2 round trips."""
    key = queue.keys.state_key(state)
    async with queue.client.pipeline(transaction=False) as pipe:
        if state == "waiting":
            pipe.llen(key)
            pipe.lrange(key, -(start + count), -(start + 1))
        else:
            pipe.zcard(key)
            pipe.zrevrange(key, start, start + count - 1, withscores=True)
        total, found = await pipe.execute()
    if state == "waiting":
        listed: list[tuple[str, int | None]] = [(text(i), None) for i in reversed(found)]
    else:
        listed = [(text(i), delayed_due(score) if state == "delayed" else None)
                  for i, score in found]
    if not listed:
        return int(total), []
    replies = await queue.scripts.read_summaries([i for i, _ in listed], PREVIEW_BYTES)
    rows = [_summary(queue, job_id, reply, state, due)
            for (job_id, due), reply in zip(listed, replies, strict=True)]
    return int(total), [row for row in rows if row is not None]


async def read_alerts(
    client: Redis, queue: Callable[[str], Queue], names: Sequence[str], most: int
) -> list[dict[str, Any]]:
    """The ``most`` newest failed jobs over the queues ``names``: {"queue", "id",
    "name", "reason", "reason_truncated", "failed_on", "failed_on_ms"} (a
    pipeline, then one script call per queue, concurrently)."""
    if not names:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zrevrange(queue(name).keys.failed, 0, most - 1, withscores=True)
        ranges = await pipe.execute()
    newest = sorted(
        ((int(score), name, text(job_id))
         for name, found in zip(names, ranges, strict=True)
         for job_id, score in found),
        reverse=True,
    )[:most]
    by_queue: dict[str, list[str]] = {}
    for _, name, job_id in newest:
        by_queue.setdefault(name, []).append(job_id)
    # Concurrent calls, not a pipeline: redis-py sends SCRIPT EXISTS before a
    # pipeline of scripts, one more round trip and a command the ACL need not grant.
    replies = await asyncio.gather(*(
        queue(name).scripts.read_summaries(ids, PREVIEW_BYTES) for name, ids in by_queue.items()
    ))
    rows: dict[tuple[str, str], tuple[JobSummary | None, bool]] = {}
    for (name, ids), per_queue in zip(by_queue.items(), replies, strict=True):
        for job_id, reply in zip(ids, per_queue, strict=True):
            hashed = not isinstance(reply, bytes | str)
            rows[name, job_id] = (_summary(queue(name), job_id, reply, "failed", None), hashed)
    alerts = []
    for at, name, job_id in newest:
        row, hashed = rows[name, job_id]
        alert: dict[str, Any] = {"queue": name, "id": job_id, "name": None, "reason": None,
                                 "reason_truncated": False}
        if row is not None and not hashed:
            alert["reason"] = f"corrupt job: {row.corrupt}"
        elif row is not None:
            alert.update(name=row.name, reason=row.failed_reason,
                         reason_truncated=row.failed_reason_truncated)
        alerts.append(with_times(alert, failed_on=at))
    return alerts


def _summary(
    queue: Queue, job_id: str, reply: Any, state: str, due: int | None
) -> JobSummary | None:
    """A row from one reply of read_summaries; None for a job gone since it was listed."""
    if isinstance(reply, int):
        return None
    if isinstance(reply, bytes | str):  # the key's type: not a hash
        error = ResponseError(f"WRONGTYPE the key holds a {text(reply)}")
        return JobSummary.from_job(unreadable_job(queue, job_id, not_a_hash(error)), state, due)
    name, ts, atm, opts, pon, fon, pr, fr, lock, name_n, pr_n, fr_n = reply
    cut = {"name": int(name_n) > PREVIEW_BYTES, "pr": int(pr_n) > PREVIEW_BYTES,
           "fr": int(fr_n) > PREVIEW_BYTES}
    fields: dict[str, bytes | str] = {}
    for field, value in (("name", name), ("ts", ts), ("atm", atm), ("opts", opts),
                         ("pon", pon), ("fon", fon), ("pr", pr), ("fr", fr)):
        if value is not None and not (field == "pr" and cut["pr"]):
            # A preview may end inside a character: that character is dropped.
            fields[field] = _preview(value) if cut.get(field) else value
    job = Job.from_fields(queue, job_id, with_lock(fields, lock) or {})
    summary = JobSummary.from_job(job, state, due)
    return replace(
        summary,
        progress=_preview(pr) if cut["pr"] else summary.progress,
        name_truncated=cut["name"], progress_truncated=cut["pr"],
        failed_reason_truncated=cut["fr"],
    )


def _preview(value: bytes | str) -> str:
    return value.decode(errors="ignore") if isinstance(value, bytes) else value
