"""Every write an administrator makes to a queue and its jobs, in one place:
cleaning, draining, obliterating, bulk retry and promotion, cancelling,
removing and retrying one job, pausing, concurrency and rate caps, the
dead-letter set; and reading the worker registry (kept by
:mod:`conveyor.workers`). :class:`QueueAdmin` is mixed into
:class:`conveyor.Queue`; :meth:`conveyor.Job.promote`, ``change_delay`` and
``change_priority`` call this module's functions. (Adding and reading jobs
are :mod:`conveyor.queue`'s.)

Calls that may touch any number of jobs run as a series of atomic scripts, each
on at most a bounded batch (Redis serves nobody else while a script runs), so a
queue of millions never stalls Redis; each batch is atomic, the call as a whole
is not (a worker may take a job between two batches).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from ._queue_base import QueueCore
from ._stream import text
from .errors import ValidationError
from .keys import FINISHED, JobState, glob_escape, registry_key
from .options import (
    MAX_COUNT,
    MAX_PRIORITY,
    Duration,
    check_count,
    check_int,
    dump_data,
    to_ms,
    validate_job_id,
)
from .workers import WorkerInfo, read_workers

if TYPE_CHECKING:

    from .job import Job
    from .queue import Queue

__all__ = ["CLEANABLE_STATES", "Progress", "QueueAdmin", "change_delay", "change_priority",
           "promote_job"]

#: Most jobs one admin script call removes, moves or examines.
BATCH = 1000
#: States :meth:`QueueAdmin.clean` accepts.
CLEANABLE_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.WAITING, JobState.PRIORITIZED,
                    JobState.DELAYED, JobState.ACTIVE)
#: progress(done) of a call that runs in batches: the running count after each batch.
Progress = Callable[[int], object]


class QueueAdmin(QueueCore):
    """Admin calls of a queue; each one is one atomic script (or a series of
    atomic, bounded scripts for calls that page through a large set)."""

    # -- removing jobs ----------------------------------------------------------

    async def clean(
        self, grace_ms: Duration, limit: int = 0, state: str = "completed",
        *, progress: Progress | None = None,
    ) -> list[str]:
        """Remove up to ``limit`` jobs (0: all) in ``state`` that are at least
        ``grace_ms`` old; returns their ids. A ``removed`` event names each.

        Age counts from the finish time for ``completed`` and ``failed`` jobs,
        from the start of the running attempt for ``active`` ones and from the
        time they were added for ``waiting``, ``prioritized`` and ``delayed``
        ones. ``active`` removes only jobs whose lock has lapsed (their worker
        is gone); a job a worker holds is never removed. The cut-off time is
        taken once, by Redis' clock, when the call starts. With a ``limit``,
        the oldest finished jobs go first, and of the other states the jobs
        that would run last (the tail of the wait list, the lowest priority,
        the latest due). ``progress``, if given, is called with the number
        removed so far after each batch (of at most 1,000)."""
        grace = to_ms("grace_ms", grace_ms) or 0
        check_count("limit", limit, 0)
        if state not in CLEANABLE_STATES:
            raise ValidationError(
                "state", f"cannot clean {state!r}; one of {', '.join(CLEANABLE_STATES)}", state
            )
        removed: list[str] = []
        cursor, cutoff = 0, ""
        while True:
            n = BATCH if not limit else min(BATCH, limit - len(removed))
            ids, cursor, cutoff = await self.scripts.clean_jobs(
                state, cutoff, grace, n, cursor, BATCH
            )
            removed.extend(text(i) for i in ids)
            if progress is not None:
                progress(len(removed))
            if int(cursor) < 0 or (limit and len(removed) >= limit):
                return removed

    async def drain(self, delayed: bool = False) -> int:
        """Remove every job waiting to run (wait list and prioritized), and the
        delayed ones too with ``delayed=True``; active, completed and failed
        jobs stay. Returns the number removed."""
        _check_bool("delayed", delayed)
        total = 0
        while True:
            n = await self.scripts.drain(delayed, BATCH)
            total += n
            if n < BATCH:
                return total

    async def obliterate(self, force: bool = False) -> None:
        """Delete the queue: every job, setting, event and key it owns.

        Refused with :class:`JobStateError` while jobs are active, unless
        ``force`` (workers running them then find their lock gone and record
        nothing). The queue is paused first, in the same atomic step as that
        check, so no job starts meanwhile; keys go in batches (SCAN), so a huge
        queue does not block Redis. Jobs added while it runs may survive. Its
        name leaves the registry of queues, so inspection no longer lists it."""
        _check_bool("force", force)
        await self.scripts.obliterate("start", force)
        pattern = glob_escape(self.keys.base) + "*"
        cursor: Any = 0
        while True:
            cursor, found = await self.client.scan(cursor, match=pattern, count=BATCH)
            if found:
                await self.scripts.obliterate("keys", force, [text(key) for key in found])
            if not int(cursor):
                break
        await self.scripts.obliterate("finish", force)
        registry = registry_key(self.prefix)  # another slot on a cluster: its own call
        await self.connector.client_for(registry).srem(registry, self.name)
        self._registered = False

    # -- moving jobs --------------------------------------------------------------

    async def retry_jobs(
        self, state: str = "failed", count: int = 1000, *, reset_attempts: bool = False,
        progress: Progress | None = None,
    ) -> int:
        """Send every ``failed`` (or ``completed``) job back to waiting, ``count``
        per atomic batch; returns how many moved. Only jobs that finished
        before the call started are moved, so one that fails again meanwhile
        is not retried twice. Each job is retried as by :meth:`retry_job`.
        ``progress``, if given, is called with the number moved so far after
        each batch."""
        if state not in FINISHED:
            raise ValidationError("state", f"must be 'failed' or 'completed', got {state!r}", state)
        check_count("count", count, 1)
        _check_bool("reset_attempts", reset_attempts)
        total, cutoff = 0, ""
        while True:
            n, cutoff = await self.scripts.retry_jobs(state, count, cutoff, reset_attempts)
            total += int(n)
            if progress is not None:
                progress(total)
            if int(n) < count:
                return total

    async def promote_jobs(self, count: int = 1000) -> int:
        """Make every delayed job ready now, ``count`` per atomic batch; returns
        how many were promoted (at most the number delayed when the call
        started, so jobs delayed again meanwhile are left alone)."""
        check_count("count", count, 1)
        total, bound = 0, None
        while True:
            n, left = await self.scripts.promote_jobs(count)
            total += n
            if bound is None:
                bound = n + left
            if n < count or total >= bound:
                return total

    # -- one job ------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Cancel a job from anywhere. A waiting, prioritized or delayed job (or
        a flow parent waiting for children) is removed as :meth:`remove` removes
        it: its pending children too, :class:`JobStateError` while one of them
        runs. A running one is cancelled by its worker within moments (its
        task gets ``CancelledError``, ``job.cancel_reason`` says why) and fails
        for good with the reason. ``False`` if the job had already finished;
        :class:`JobNotFoundError` if there is no such job."""
        job_id = validate_job_id(job_id)
        if not isinstance(reason, str):
            raise ValidationError("reason", f"must be a str, got {reason!r}")
        return await self.scripts.cancel_job(job_id, reason) > 0

    async def remove(self, job_id: str, *, remove_children: bool = True) -> bool:
        """Delete a job and its logs; ``False`` if it did not exist. Raises
        :class:`JobStateError` while a worker holds the job, and for a job
        scheduler's pending job (remove the scheduler instead). A flow parent's
        pending children (and theirs) go with it, unless ``remove_children=False``:
        then they stay and run as jobs without a parent."""
        job_id = validate_job_id(job_id)
        if not isinstance(remove_children, bool):
            raise ValidationError("remove_children", f"must be a bool, got {remove_children!r}")
        return await self.scripts.remove_job(job_id, remove_children) == 1

    async def update_data(self, job_id: str, data: Any) -> None:
        """Replace the data of a job that has not started yet (waiting,
        prioritized, delayed or a flow parent waiting for its children), in one
        atomic step: :class:`JobStateError` for a job that is running or
        finished (a running step job changes its own data with
        ``job.update_data``), :class:`JobNotFoundError` for none."""
        job_id = validate_job_id(job_id)
        encoded = dump_data(data, self.max_data_bytes)
        await self.scripts.update_data(job_id, encoded, pending_only=True)

    async def retry_job(self, job_id: str, *, reset_attempts: bool = False) -> None:
        """Send a failed (or completed) job back to waiting. It keeps its
        stalled count; ``reset_attempts`` sets its attempts made and started
        back to 0."""
        job_id = validate_job_id(job_id)
        await self.scripts.retry_job(job_id, reset_attempts)

    # -- the queue's settings -------------------------------------------------------

    async def pause(self) -> None:
        """Stop workers from starting jobs of this queue; adds still land."""
        await self.scripts.set_paused(True)

    async def resume(self) -> None:
        """Let workers start jobs again."""
        await self.scripts.set_paused(False)

    async def is_paused(self) -> bool:
        """Whether the queue is paused (see :meth:`pause`)."""
        return bool(await self.client.hexists(self.keys.meta, "paused"))

    async def set_global_concurrency(self, n: int | None) -> None:
        """At most ``n`` jobs of this queue run at once across all workers
        (``None`` or 0: no cap beyond each worker's own concurrency)."""
        if n is None:
            n = 0
        check_count("n", n, 0)
        await self.scripts.set_global_concurrency(n)

    async def get_global_concurrency(self) -> int | None:
        """The cap set by :meth:`set_global_concurrency`, or ``None``."""
        value = await self.client.hget(self.keys.meta, "concurrency")
        return None if value is None else int(value)

    async def rate_limit(self, delay: Duration) -> None:
        """Make every worker of the queue wait ``delay`` before starting another
        job (jobs already running go on)."""
        ms = to_ms("delay", delay) or 0
        await self.scripts.rate_limit(ms)

    async def remove_deduplication_key(self, key: str) -> bool:
        """Let go of deduplication ``key`` now: the next add with it adds a job."""
        return bool(await self.client.delete(self.keys.deduplication(str(key))))

    async def set_group_concurrency(self, n: int | None) -> None:
        """At most ``n`` running jobs per group, across all workers (``None``: no cap)."""
        if n is None:
            n = 0
        check_count("n", n, 0)
        await self.scripts.set_group_limits("group_concurrency", str(n))

    async def set_group_limit(self, max: int | None, duration: int | timedelta = 1000) -> None:
        """At most ``max`` job starts per ``duration`` per group, across all workers
        (``None``: no limit)."""
        if max is None:
            await self.scripts.set_group_limits("group_limit", "0")
            return
        check_count("max", max, 1)
        ms = to_ms("duration", duration)
        if not ms:
            raise ValidationError("duration", "must be positive")
        await self.scripts.set_group_limits("group_limit", f"{max}:{ms}")

    # -- the dead-letter set ---------------------------------------------------------

    async def get_dead_letter(self, start: int = 0, end: int = -1) -> list[Job]:
        """The queue's dead-letter set: jobs that failed for good, newest first,
        ``start``..``end`` inclusive, each with ``failed_reason``,
        ``stacktrace`` and ``attempts_made``. Retry one with ``job.retry()``,
        all with ``retry_jobs("failed")``; empty it with ``clean(0, 0, "failed")``."""
        check_int("start", start, -MAX_COUNT, MAX_COUNT)
        check_int("end", end, -MAX_COUNT, MAX_COUNT)
        return await cast("Queue", self).get_jobs(JobState.FAILED, start, end)

    async def get_dead_letter_count(self) -> int:
        """Number of jobs in the dead-letter set."""
        return int(await self.client.zcard(self.keys.failed))

    # -- the worker registry -----------------------------------------------------------

    async def get_workers(self, start: int = 0, end: int = -1) -> list[WorkerInfo]:
        """The workers of this queue that are alive, oldest first, ``start``..``end``
        inclusive. A worker's entry goes when it stops, or expires three
        heartbeats after it died."""
        check_int("start", start, -MAX_COUNT, MAX_COUNT)
        check_int("end", end, -MAX_COUNT, MAX_COUNT)
        return await read_workers(cast("Queue", self), start, end)


def _check_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be a bool, got {value!r}", value)


# -- one job's settings (called by Job) ------------------------------------------------


async def promote_job(queue: QueueCore, job_id: str) -> None:
    """Make delayed job ``job_id`` ready now (:meth:`conveyor.Job.promote`)."""
    await queue.scripts.promote_job(job_id)


async def change_delay(queue: QueueCore, job_id: str, delay: Duration) -> int:
    """Make delayed job ``job_id`` due ``delay`` from now; its new due time (ms)."""
    ms = to_ms("delay", delay) or 0
    return await queue.scripts.change_delay(job_id, ms)


async def change_priority(queue: QueueCore, job_id: str, priority: int, lifo: bool) -> None:
    """Give job ``job_id`` a new priority (:meth:`conveyor.Job.change_priority`)."""
    check_int("priority", priority, 0, MAX_PRIORITY)
    _check_bool("lifo", lifo)
    await queue.scripts.change_priority(job_id, priority, lifo)
