"""Job schedulers: cron and fixed-interval schedules that produce jobs.
:class:`QueueSchedulers` is mixed into :class:`conveyor.Queue`.

A scheduler is a hash ``scheduler:<id>`` (its spec, the template of its jobs,
the slot of the job it made last and of the one it makes next) and a member of
the ``schedulers`` zset, scored by when its next job must be made. The job of
a slot is made ahead of time, as a delayed job with the id
``sched-<scheduler id>-<slot ms>``, so the worker's delayed machinery starts it
on time. When it falls due, the scheduler loop of any worker (one side task per
worker, :func:`conveyor._upkeep.run_job_schedulers`) computes the following
slot (Python: cron needs a library) and makes its job with
``advance_job_scheduler.lua`` (:func:`advance_job_scheduler`), a
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

from collections.abc import Mapping
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
from .connection import time_ms
from .errors import ValidationError
from .options import (
    JobOptions,
    dump_data,
    validate_job_name,
)

__all__ = [
    "JobScheduler", "MissedPolicy", "QueueSchedulers", "advance_job_scheduler", "next_cron_time",
]


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

    async def run_job_scheduler_now(self, scheduler_id: str) -> str | None:
        """Make one extra job of the scheduler now ("run now"), from its template,
        ready at once; returns its id (``sched-<scheduler id>-<now ms>``), or
        ``None`` if there is no such scheduler. The schedule is left as it is:
        the next run keeps its time and its job, and the extra job does not
        count towards ``limit``. Atomic (``run_job_scheduler_now.lua``)."""
        return await self.scripts.run_job_scheduler_now(check_scheduler_id(scheduler_id))


def _arg(slot: int | None) -> str:
    return "" if slot is None else str(slot)


async def advance_job_scheduler(queue: QueueSchedulers, scheduler_id: str) -> int:
    """Make the next jobs of a scheduler of ``queue`` whose last job fell due (the
    worker's scheduler loop, :mod:`conveyor._upkeep`, calls it). Returns
    Redis' clock (ms) as read for it. Safe to call from any number of
    processes at once: one of them makes the jobs."""
    k = queue.keys
    async with queue.client.pipeline(transaction=False) as pipe:
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
    await queue.scripts.advance_job_scheduler(
        scheduler_id, text(fields["gen"]), nxt, spec.missed, spec.limit or 0, _arg(future),
        _arg(following), missed,
    )
    return now
