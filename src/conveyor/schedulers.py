"""Job schedulers: cron and fixed-interval schedules that produce jobs.
:class:`QueueSchedulers` is mixed into :class:`conveyor.Queue`.

A scheduler is a hash ``scheduler:<id>`` (its spec, the template of its jobs,
the slot of the job it made last and of the one it makes next) and a member of
the ``schedulers`` zset, scored by when its next job must be made. The job of
a slot is made ahead of time, as a delayed job with the id
``sched-<scheduler id>-<slot ms>``, so the worker's delayed machinery starts it
on time. When it falls due, the scheduler loop of any worker (one side task per
worker, :func:`run_job_schedulers`) computes the following slot (Python: cron
needs a library) and makes its job with ``advance_job_scheduler.lua``, a
compare-and-set on the stored next slot: however many workers race over a
slot, exactly one makes its job.

Cron expressions are evaluated by croniter (5 fields, or 6 with seconds
first), in the scheduler's IANA time zone: ``0 9 * * *`` in Europe/Berlin runs
at 09:00 local time in summer and winter. On the night clocks go back, a job at
a fixed hour runs once (the first time the hour comes); expressions whose hour
field is ``*`` run through the repeated hour. A slot in the hour skipped in
spring runs at the end of the gap (croniter's rule).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ._queue_base import QueueCore
from ._schedule import (
    MissedPolicy,
    ScheduleSpec,
    check_scheduler_id,
    next_cron_time,
    parse_schedule,
)
from ._stream import text
from .connection import REDIS_DOWN, raise_if_cancelled, socket_timeout, time_ms
from .errors import ValidationError
from .options import (
    JobOptions,
    dump_data,
    validate_job_name,
)

__all__ = ["JobScheduler", "MissedPolicy", "QueueSchedulers", "next_cron_time"]

log = logging.getLogger("conveyor.schedulers")

#: An idle scheduler loop reads the schedulers at least this often (seconds); an
#: upsert wakes one worker's loop at once through the ``schedulers-marker`` key.
RECHECK_INTERVAL = 30.0
#: The same while the queue has no scheduler at all (an idle worker's commands
#: per second count; an upsert still wakes the loop at once).
IDLE_RECHECK_INTERVAL = 120.0
#: Schedulers looked at per read of the ``schedulers`` zset.
_BATCH = 64


# -- the record -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobScheduler:
    """A job scheduler as stored in Redis (see :meth:`QueueSchedulers.upsert_job_scheduler`)."""

    id: str
    #: Interval in ms (``None`` for a cron scheduler).
    every: int | None
    cron: str | None
    tz: str
    start_date: datetime | None
    end_date: datetime | None
    limit: int | None
    missed: MissedPolicy
    #: When the next job runs (UTC); ``None`` once the scheduler has made its last job.
    next_run: datetime | None
    #: Jobs made so far.
    count: int
    job_name: str
    data: Any
    opts: JobOptions


def _utc(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _record(scheduler_id: str, fields: Mapping[str, Any], now: int) -> JobScheduler:
    spec = ScheduleSpec.from_json(fields["spec"])
    cur, nxt = text(fields.get("cur", b"")), text(fields.get("nxt", b""))
    if cur and int(cur) >= now:
        next_run: int | None = int(cur)
    else:
        next_run = int(nxt) if nxt else None
    return JobScheduler(
        id=scheduler_id, every=spec.every, cron=spec.cron, tz=spec.tz,
        start_date=_utc(spec.start), end_date=_utc(spec.end), limit=spec.limit,
        missed=spec.missed, next_run=_utc(next_run), count=int(fields.get("cnt", 0)),
        job_name=text(fields["name"]), data=orjson.loads(fields["data"]),
        opts=JobOptions.from_stored(fields["opts"]),
    )


def _fields(raw: Mapping[Any, Any]) -> dict[str, Any]:
    return {text(k): v for k, v in raw.items()}


# -- the queue calls ----------------------------------------------------------


class QueueSchedulers(QueueCore):
    """The job-scheduler calls of a queue."""

    async def upsert_job_scheduler(
        self,
        scheduler_id: str,
        *,
        every: int | timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        start_date: datetime | int | None = None,
        end_date: datetime | int | None = None,
        limit: int | None = None,
        immediately: bool = False,
        missed: MissedPolicy = "run_once",
        job_name: str | None = None,
        data: Any = None,
        **job_options: Any,
    ) -> JobScheduler:
        """Create or replace the job scheduler ``scheduler_id``; returns it.

        Give exactly one of ``every`` (ms or ``timedelta``: slots at multiples of
        it since ``start_date``, else since the epoch, so re-upserting keeps the
        phase) and ``cron`` (5 fields, or 6 with seconds first, read in the IANA
        time zone ``tz``). Slots before ``start_date`` or after ``end_date``
        (aware datetimes or epoch ms) make no job; ``limit`` caps the jobs made
        in all. ``immediately`` also runs one job now (refused with a
        ``start_date`` in the future). Each slot makes one job
        named ``job_name`` (default: the scheduler id) with ``data`` and the job
        options of :meth:`Queue.add` (not ``job_id`` or ``delay``: the schedule
        sets them); its id is ``sched-<scheduler id>-<slot ms>``.

        The job of the next slot is made ahead, as a delayed job, so it starts
        on time; a worker's scheduler loop makes the next one when it falls due.
        ``missed`` says what happens to slots that pass while no worker runs:
        ``"run_once"`` (default) runs one job for all of them when a worker is
        back, then keeps to the schedule; ``"run_all"`` runs one job per missed
        slot (at most :data:`MAX_CATCH_UP`, the earliest).

        Upserting an id again replaces its schedule and template atomically:
        the job the old schedule made is withdrawn if it has not started, and
        the new schedule's first job made, so a scheduler never has two. An
        unchanged schedule keeps its count of jobs made (``limit`` holds
        across re-upserts at every deploy). A scheduler that made its last job
        (``limit``, ``end_date``) stays listed, with ``next_run`` ``None``,
        until removed.
        """
        scheduler_id = check_scheduler_id(scheduler_id)
        spec = parse_schedule(every, cron, tz, start_date, end_date, limit, missed)
        if not isinstance(immediately, bool):
            raise ValidationError("immediately", f"must be a bool, got {immediately!r}")
        name = scheduler_id if job_name is None else job_name
        if not isinstance(name, str) or not name:
            raise ValidationError("job_name", f"must be a non-empty str, got {name!r}", name)
        validate_job_name(name, "job_name")
        for fixed in ("job_id", "delay"):
            if fixed in job_options:
                raise ValidationError(fixed, "is set by the schedule; not a scheduler option")
        if "deduplication" in job_options:  # each slot makes one job already
            raise ValidationError("deduplication", "not a scheduler option")
        defaults = {k: v for k, v in self.default_job_options.items()
                    if k not in ("job_id", "delay")}
        opts = JobOptions.parse({**defaults, **job_options})
        encoded = dump_data(data, self.max_data_bytes)

        now = time_ms(await self.client.time())
        if immediately and spec.start is not None and spec.start > now:
            raise ValidationError(
                "immediately", "cannot run now a schedule whose start_date is in the future",
                immediately,
            )
        if immediately and (spec.end is None or now <= spec.end):
            first: int | None = now
        else:
            first = spec.slot_after(now)
        following = None if first is None else spec.slot_after(max(first, now))
        await self._register()
        reply = await self.scripts.upsert_job_scheduler(
            scheduler_id, spec.to_json(), name, encoded, orjson.dumps(opts.to_json()),
            opts.priority, opts.attempts, opts.lifo, spec.limit or 0, _arg(first),
            _arg(following),
        )
        count, cur = int(reply[0]), text(reply[2])
        next_run = int(cur) if cur else None
        return JobScheduler(
            id=scheduler_id, every=spec.every, cron=spec.cron, tz=spec.tz,
            start_date=_utc(spec.start), end_date=_utc(spec.end), limit=spec.limit,
            missed=spec.missed, next_run=_utc(next_run), count=count, job_name=name,
            data=data, opts=opts,
        )

    async def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        """The scheduler with this id, or ``None``."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(self.keys.scheduler(str(scheduler_id)))
            now, raw = await pipe.execute()
        if not raw:
            return None
        return _record(str(scheduler_id), _fields(raw), time_ms(now))

    async def get_job_schedulers(self, start: int = 0, end: int = -1) -> list[JobScheduler]:
        """The queue's schedulers ``start``..``end`` (inclusive), soonest next job first."""
        found: Any = await self.client.zrange(self.keys.schedulers, start, end)
        ids = [text(i) for i in found]
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            for scheduler_id in ids:
                pipe.hgetall(self.keys.scheduler(scheduler_id))
            now, *raws = await pipe.execute()
        return [
            _record(scheduler_id, _fields(raw), time_ms(now))
            for scheduler_id, raw in zip(ids, raws, strict=True)
            if raw
        ]

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete the scheduler and its job if that has not started yet (jobs
        running or finished stay). ``False`` if there was no such scheduler."""
        return await self.scripts.remove_job_scheduler(str(scheduler_id))

    async def _advance_job_scheduler(self, scheduler_id: str) -> int:
        """Make the next jobs of a scheduler whose last job fell due. Returns
        Redis' clock (ms) as read for it. Safe to call from any number of
        processes at once: one of them makes the jobs."""
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(k.scheduler(scheduler_id))
            raw_now, raw = await pipe.execute()
        now = time_ms(raw_now)
        fields = _fields(raw)
        cur, nxt = text(fields.get("cur", b"")), text(fields.get("nxt", b""))
        if not fields or not nxt or (cur and int(cur) > now):
            return now  # gone, finished, or not due by Redis' clock
        spec = ScheduleSpec.from_json(fields["spec"])
        missed, future, following = spec.plan(int(nxt), now)
        await self.scripts.advance_job_scheduler(
            scheduler_id, text(fields["gen"]), nxt, spec.missed, spec.limit or 0, _arg(future),
            _arg(following), missed,
        )
        return now

    async def _run_job_schedulers(self, stopping: Callable[[], bool]) -> None:
        """A worker's scheduler loop (see :func:`run_job_schedulers`)."""
        await run_job_schedulers(self, stopping)


def _arg(slot: int | None) -> str:
    return "" if slot is None else str(slot)


# -- the worker's loop ----------------------------------------------------------


async def run_job_schedulers(queue: QueueSchedulers, stopping: Callable[[], bool]) -> None:
    """Make the jobs of ``queue``'s schedulers as their slots come, until
    ``stopping()`` (or cancelled). Each worker runs one; they need no
    coordination (see ``advance_job_scheduler.lua``).

    The loop sleeps until the earliest scheduler is due, at most
    :data:`RECHECK_INTERVAL`, blocked on the ``schedulers-marker`` key so that
    an upsert wakes it at once (the upsert made the first slot's job already:
    the loop only has to make the following ones). Idle, it costs a
    ``BZPOPMIN`` and a ``ZRANGE`` per interval (:data:`IDLE_RECHECK_INTERVAL`
    when the queue has no scheduler).
    """
    skew = 0  # Redis' clock minus ours (ms), from the last advance
    down = False
    retry = 0.1
    while not stopping():
        try:
            wait = RECHECK_INTERVAL
            entries: Any = await queue.client.zrange(
                queue.keys.schedulers, 0, _BATCH - 1, withscores=True
            )
            raise_if_cancelled()
            if not entries:
                wait = IDLE_RECHECK_INTERVAL
            for raw_id, score in entries:
                now = time.time() * 1000 + skew
                if score > now:
                    wait = min(wait, (score - now) / 1000)
                    break
                redis_now = await queue._advance_job_scheduler(text(raw_id))
                raise_if_cancelled()
                skew = redis_now - round(time.time() * 1000)
                wait = 0  # read again: the advanced schedulers have new scores
                if stopping():
                    return
            if down:
                log.warning("job schedulers of %r: connection to Redis is back", queue.name)
                down, retry = False, 0.1
            if wait > 0:
                await _sleep(queue, wait)
        except REDIS_DOWN as exc:
            if not down:
                log.warning("job schedulers of %r: lost connection to Redis (%s)",
                            queue.name, exc)
                down = True
            await asyncio.sleep(retry)
            retry = min(retry * 2, 5.0)
        except Exception:
            log.exception("job schedulers of %r failed; trying again", queue.name)
            await asyncio.sleep(5.0)


async def _sleep(queue: QueueSchedulers, seconds: float) -> None:
    """Wait ``seconds`` or until an upsert leaves the wake-up marker."""
    read_timeout = socket_timeout(queue.client)
    if read_timeout is not None:
        seconds = min(seconds, read_timeout * 0.8)
    if seconds < 0.01:  # below what a blocking wait resolves
        await asyncio.sleep(seconds)
        return
    await queue.client.bzpopmin(queue.keys.schedulers_marker, round(seconds, 3))
    raise_if_cancelled()
