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

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import CroniterBadDateError, croniter

from ._stream import text
from .errors import ValidationError
from .options import (
    MAX_EPOCH_MS,
    JobOptions,
    check_count,
    dump_data,
    to_ms,
    validate_job_name,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._scripts import Scripts
    from .keys import QueueKeys

__all__ = [
    "JobScheduler", "MissedPolicy", "QueueSchedulers", "advance_job_scheduler", "next_cron_time",
]

MissedPolicy = Literal["run_once", "run_all"]
_MISSED_POLICIES = ("run_once", "run_all")
#: run_all makes up at most this many missed slots (the earliest); the rest are skipped.
MAX_CATCH_UP = 100
MAX_SCHEDULER_ID = 200
# croniter's random (R) and hashed (H) fields would give each process other slots.
_NONDETERMINISTIC = re.compile(r"(?<![A-Z])[HR](?![A-Z])")


# -- slots ------------------------------------------------------------------


def next_cron_time(expression: str, after: datetime, tz: str = "UTC") -> datetime:
    """The first time after ``after`` (an aware datetime) that the cron
    ``expression`` (5 fields, or 6 with seconds first) names, read in time zone
    ``tz``; returned in ``tz``. Raises ``ValueError`` if it never fires."""
    zone = ZoneInfo(tz)
    fields = expression.split()
    seconds = len(fields) == 6
    hour_field = fields[2 if seconds else 1]
    it = croniter(expression, after.astimezone(zone), second_at_beginning=seconds)
    while True:
        try:
            found = cast(datetime, it.get_next(datetime))
        except CroniterBadDateError:
            raise ValueError(f"cron expression {expression!r} never fires") from None
        # The second pass through a wall time clocks went back over (fold=1):
        # a job at a fixed hour has already run in the first pass.
        repeated = found.fold == 1 and found.replace(fold=0).utcoffset() != found.utcoffset()
        if not repeated or hour_field == "*":
            return found


@dataclass(frozen=True, slots=True)
class _Spec:
    """The schedule of a scheduler (stored as canonical JSON)."""

    every: int | None
    cron: str | None
    tz: str
    start: int | None
    end: int | None
    limit: int | None
    missed: MissedPolicy

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"every": self.every, "cron": self.cron, "tz": self.tz, "start": self.start,
             "end": self.end, "limit": self.limit, "missed": self.missed},
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> _Spec:
        d = orjson.loads(raw)
        return cls(d["every"], d["cron"], d["tz"], d["start"], d["end"], d["limit"],
                   d["missed"])

    def slot_after(self, after: int) -> int | None:
        """The first slot later than ``after`` (ms), or None past ``end``."""
        if self.start is not None and after < self.start:
            after = self.start - 1
        if self.every is not None:
            origin = self.start if self.start is not None else 0
            slot = origin + ((after - origin) // self.every + 1) * self.every
        else:
            assert self.cron is not None
            after_dt = datetime.fromtimestamp(after / 1000, UTC)
            try:
                found = next_cron_time(self.cron, after_dt, self.tz)
            except ValueError:
                return None
            slot = round(found.timestamp() * 1000)
        if self.end is not None and slot > self.end:
            return None
        return slot

    def plan(self, next_slot: int, now: int) -> tuple[list[int], int | None, int | None]:
        """From the stored next slot at ``now``: (missed slots to make up,
        the first slot after now, the slot after that)."""
        cap = MAX_CATCH_UP if self.missed == "run_all" else 1
        missed: list[int] = []
        slot: int | None = next_slot
        while slot is not None and slot <= now:
            if len(missed) == cap:
                slot = self.slot_after(now)  # skip the rest without walking them
                break
            missed.append(slot)
            slot = self.slot_after(slot)
        following = None if slot is None else self.slot_after(slot)
        return missed, slot, following


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
    spec = _Spec.from_json(fields["spec"])
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


def _ms(t: list[Any] | tuple[Any, ...]) -> int:
    """Redis TIME as ms."""
    return int(t[0]) * 1000 + int(t[1]) // 1000


# -- validation -------------------------------------------------------------


def _scheduler_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_SCHEDULER_ID:
        raise ValidationError(
            "scheduler_id", f"must be a non-empty str of at most {MAX_SCHEDULER_ID} "
            f"characters, got {value!r}", value
        )
    if ":" in value:
        raise ValidationError("scheduler_id", f"may not contain ':', got {value!r}", value)
    return value


def _date(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(field, f"must be timezone-aware, got {value!r}", value)
        return round(value.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCH_MS:
        return value
    raise ValidationError(
        field, f"expected an aware datetime or epoch ms up to year 9999, got {value!r}", value
    )


def _cron(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError("cron", f"must be a str, got {value!r}", value)
    fields = value.split()
    if len(fields) not in (5, 6):
        raise ValidationError(
            "cron", f"needs 5 fields (or 6 with seconds first), got {value!r}", value
        )
    expression = " ".join(fields)
    if _NONDETERMINISTIC.search(expression.upper()) or not croniter.is_valid(
        expression, second_at_beginning=len(fields) == 6
    ):
        raise ValidationError("cron", f"not a valid cron expression: {value!r}", value)
    return expression


def _spec(
    every: object, cron: object, tz: object, start_date: object, end_date: object,
    limit: object, missed: object,
) -> _Spec:
    if (every is None) == (cron is None):
        raise ValidationError("every", "give exactly one of every= and cron=")
    every_ms = to_ms("every", every, allow_none=True)
    if every_ms == 0:
        raise ValidationError("every", "must be positive", every)
    expression = None if cron is None else _cron(cron)
    if not isinstance(tz, str) or not tz:
        raise ValidationError("tz", f"must be an IANA time zone name, got {tz!r}", tz)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("tz", f"unknown time zone {tz!r}", tz) from None
    start, end = _date("start_date", start_date), _date("end_date", end_date)
    if end is not None:
        if start is not None and end <= start:
            raise ValidationError("end_date", "must be after start_date", end_date)
        if end <= time.time() * 1000:
            raise ValidationError("end_date", "is in the past", end_date)
    limit = None if limit is None else check_count("limit", limit, 1)
    if missed not in _MISSED_POLICIES:
        raise ValidationError(
            "missed", f"must be one of {', '.join(_MISSED_POLICIES)}, got {missed!r}", missed
        )
    spec = _Spec(every_ms, expression, tz, start, end, limit, cast(MissedPolicy, missed))
    never = expression is not None and spec.slot_after(round(time.time() * 1000)) is None
    if never and end is None:
        raise ValidationError("cron", f"{expression!r} never fires", cron)
    return spec


# -- the queue calls ----------------------------------------------------------


class QueueSchedulers:
    """The job-scheduler calls of a queue."""

    name: str
    client: Redis
    keys: QueueKeys
    scripts: Scripts
    max_data_bytes: int
    default_job_options: dict[str, Any]
    _register: Callable[[], Awaitable[None]]  # Queue's: name the queue in the registry

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
        scheduler_id = _scheduler_id(scheduler_id)
        spec = _spec(every, cron, tz, start_date, end_date, limit, missed)
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

        now = _ms(await self.client.time())
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
        return _record(str(scheduler_id), _fields(raw), _ms(now))

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
            _record(scheduler_id, _fields(raw), _ms(now))
            for scheduler_id, raw in zip(ids, raws, strict=True)
            if raw
        ]

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete the scheduler and its job if that has not started yet (jobs
        running or finished stay). ``False`` if there was no such scheduler."""
        return await self.scripts.remove_job_scheduler(str(scheduler_id))


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
    now = _ms(raw_now)
    fields = _fields(raw)
    cur, nxt = text(fields.get("cur", b"")), text(fields.get("nxt", b""))
    if not fields or not nxt or (cur and int(cur) > now):
        return now  # gone, finished, or not due by Redis' clock
    spec = _Spec.from_json(fields["spec"])
    missed, future, following = spec.plan(int(nxt), now)
    await queue.scripts.advance_job_scheduler(
        scheduler_id, text(fields["gen"]), nxt, spec.missed, spec.limit or 0, _arg(future),
        _arg(following), missed,
    )
    return now
