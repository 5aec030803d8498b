"""The reads behind a page of jobs and the dashboard's recent failures. A list
reads only the fields its rows show (never ``data``, ``rv`` or ``st``) and
only a preview of the user-sized ones (``name``, ``progress``,
``failed_reason``), in one script call per queue (``read_summaries.lua``), so
a page of jobs with megabytes of data each costs Redis and the reader a few
hundred bytes per row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from .._cluster import pipelined
from .._corrupt import not_a_hash, unreadable_job
from .._render import iso
from .._stream import text
from ..connection import time_ms
from ..job import Job, with_lock
from ..keys import JobState, delayed_due
from ..partitions import PartitionedQueue
from .views import JobSummary

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

    from ..queue import Queue

__all__ = ["PREVIEW_BYTES", "read_alerts", "read_page", "ready_ends", "summary_from_reply"]

#: The most bytes a list shows of a job's name, progress (JSON) and failed reason;
#: a valid name (at most 255 characters) always fits.
PREVIEW_BYTES = 1024


async def read_page(
    queue: Queue, state: str, start: int, count: int
) -> tuple[int, list[JobSummary]]:
    """The state's total and ``count`` of its jobs from ``start``, newest first
    ("waiting": the wait list, in reverse order of running): 2 round trips. Of a
    partitioned queue: each partition's first ``start + count``, merged by time."""
    if isinstance(queue, PartitionedQueue):
        pages = await asyncio.gather(*(read_page(p, state, 0, start + count)
                                       for p in queue.partitions))
        merged = sorted((row for _, page in pages for row in page), key=_newest, reverse=True)
        return sum(total for total, _ in pages), merged[start:start + count]
    key = queue.keys.state_key(state)
    async with queue.client.pipeline(transaction=False) as pipe:
        if state == JobState.WAITING:
            pipe.llen(key)
            pipe.lrange(key, -(start + count), -(start + 1))
        else:
            pipe.zcard(key)
            pipe.zrevrange(key, start, start + count - 1, withscores=True)
        total, found = await pipe.execute()
    if state == JobState.WAITING:
        listed: list[tuple[str, int | None]] = [(text(i), None) for i in reversed(found)]
    else:
        listed = [(text(i), delayed_due(score) if state == JobState.DELAYED else None)
                  for i, score in found]
    if not listed:
        return int(total), []
    replies = await queue.scripts.read_summaries([i for i, _ in listed], PREVIEW_BYTES)
    rows = [summary_from_reply(queue, job_id, reply, state, due)
            for (job_id, due), reply in zip(listed, replies, strict=True)]
    return int(total), [row for row in rows if row is not None]


async def read_alerts(
    queue: Callable[[str], Queue], names: Sequence[str], most: int
) -> list[dict[str, Any]]:
    """The ``most`` newest failed jobs over the queues ``names``: {"queue", "id",
    "name", "reason", "reason_truncated", "failed_on", "failed_on_ms"} (a
    pipeline per Redis node, then one script call per queue, concurrently)."""
    if not names:
        return []
    def newest_of(key: str) -> Callable[[Pipeline], Any]:
        return lambda pipe: pipe.zrevrange(key, 0, most - 1, withscores=True)

    ranges = await pipelined([(queue(name).client, newest_of(queue(name).keys.failed))
                              for name in names])
    for found in ranges:
        if isinstance(found, Exception):
            raise found
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
            rows[name, job_id] = (summary_from_reply(queue(name), job_id, reply, "failed", None),
                                 hashed)
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
        alerts.append({**alert, "failed_on": iso(at), "failed_on_ms": at})
    return alerts


def summary_from_reply(
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


def _newest(row: JobSummary) -> int:
    return row.finished_on or row.timestamp or 0


async def ready_ends(queue: Queue) -> tuple[int, list[tuple[Queue, str]]]:
    """Redis' clock (epoch ms) and the jobs at both ends of the wait list and of
    the prioritized set, of each partition: (partition, job id). Between the ends
    of a list nothing has waited longer than both (the wait list is filled at its
    tail and LIFO jobs at its head). One pipelined round trip per node."""
    parts = queue.partitions if isinstance(queue, PartitionedQueue) else [queue]
    calls: list[tuple[Any, Callable[[Pipeline], Any]]] = [(parts[0].client, _time)]
    for part in parts:
        k = part.keys
        calls += [(part.client, _ends("lrange", k.wait, 0)),
                  (part.client, _ends("lrange", k.wait, -1)),
                  (part.client, _ends("zrange", k.prioritized, 0)),
                  (part.client, _ends("zrange", k.prioritized, -1))]
    replies = await pipelined(calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    now_reply, *ends = replies
    found = {(n // 4, text(i)) for n, ids in enumerate(ends) for i in ids}
    return time_ms(now_reply), [(parts[n], job_id) for n, job_id in sorted(found)]


def _time(pipe: Pipeline) -> Any:
    return pipe.time()


def _ends(command: str, key: str, at: int) -> Callable[[Pipeline], Any]:
    return lambda pipe: getattr(pipe, command)(key, at, at)
