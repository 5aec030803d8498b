"""Queue administration: cleaning, draining, obliterating, bulk retry and
promotion, the dead-letter set, and reading the worker registry (kept by
:mod:`conveyor.workers`). Mixed into :class:`conveyor.Queue`.

Calls that may touch any number of jobs run as a series of atomic scripts, each
on at most a bounded batch (Redis serves nobody else while a script runs), so a
queue of millions never stalls Redis; each batch is atomic, the call as a whole
is not (a worker may take a job between two batches).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from ._stream import text
from .errors import ValidationError
from .options import MAX_COUNT, Duration, to_ms
from .workers import WorkerInfo, read_workers

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._scripts import Scripts
    from .job import Job
    from .keys import QueueKeys
    from .queue import Queue

__all__ = ["CLEANABLE_STATES", "Progress", "QueueAdmin"]

#: Most jobs one admin script call removes, moves or examines.
BATCH = 1000
#: States :meth:`QueueAdmin.clean` accepts.
CLEANABLE_STATES = ("completed", "failed", "waiting", "prioritized", "delayed", "active")
_GLOB_SPECIAL = frozenset("\\*?[]")
#: progress(done) of a call that runs in batches: the running count after each batch.
Progress = Callable[[int], object]


class QueueAdmin:
    """Admin calls of a queue; each one is one atomic script (or a series of
    atomic, bounded scripts for calls that page through a large set)."""

    name: str
    client: Redis
    keys: QueueKeys
    scripts: Scripts

    _register: Callable[[], Awaitable[None]]  # Queue's: name the queue in the registry

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
        _check_int("limit", limit, 0)
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
        queue does not block Redis. Jobs added while it runs may survive."""
        _check_bool("force", force)
        await self.scripts.obliterate("start", force)
        pattern = "".join("\\" + c if c in _GLOB_SPECIAL else c for c in self.keys.base) + "*"
        cursor: Any = 0
        while True:
            cursor, found = await self.client.scan(cursor, match=pattern, count=BATCH)
            if found:
                await self.scripts.obliterate("keys", force, [text(key) for key in found])
            if not int(cursor):
                break
        await self.scripts.obliterate("finish", force)

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
        if state not in ("failed", "completed"):
            raise ValidationError("state", f"must be 'failed' or 'completed', got {state!r}", state)
        _check_int("count", count, 1)
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
        _check_int("count", count, 1)
        total, bound = 0, None
        while True:
            n, left = await self.scripts.promote_jobs(count)
            total += n
            if bound is None:
                bound = n + left
            if n < count or total >= bound:
                return total

    # -- the dead-letter set ---------------------------------------------------------

    async def get_dead_letter(self, start: int = 0, end: int = -1) -> list[Job]:
        """The queue's dead-letter set: jobs that failed for good, newest first,
        ``start``..``end`` inclusive, each with ``failed_reason``,
        ``stacktrace`` and ``attempts_made``. Retry one with ``job.retry()``,
        all with ``retry_jobs("failed")``; empty it with ``clean(0, 0, "failed")``."""
        _check_int("start", start)
        _check_int("end", end)
        return await cast("Queue", self).get_jobs("failed", start, end)

    async def get_dead_letter_count(self) -> int:
        """Number of jobs in the dead-letter set."""
        return int(await self.client.zcard(self.keys.failed))

    # -- the worker registry -----------------------------------------------------------

    async def get_workers(self, start: int = 0, end: int = -1) -> list[WorkerInfo]:
        """The workers of this queue that are alive, oldest first, ``start``..``end``
        inclusive. A worker's entry goes when it stops, or expires three
        heartbeats after it died."""
        _check_int("start", start)
        _check_int("end", end)
        return await read_workers(cast("Queue", self), start, end)


def _check_int(field: str, value: object, minimum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field, f"must be an int, got {value!r}", value)
    if minimum is not None and value < minimum:
        raise ValidationError(field, f"must be >= {minimum}, got {value}", value)
    if abs(value) > MAX_COUNT:  # Redis refuses what does not fit 64 bits
        low = -MAX_COUNT if minimum is None else minimum
        raise ValidationError(field, f"must be in {low}..{MAX_COUNT}, got {value}", value)


def _check_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be a bool, got {value!r}", value)

