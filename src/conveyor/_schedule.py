"""A scheduler's schedule: its spec (every or cron, time zone, dates, limit,
missed policy), the slots it names, and the rules its arguments follow. Used by
:mod:`conveyor.schedulers` and by the task app's ``schedule()``."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import CroniterBadDateError, croniter

from .errors import ValidationError
from .options import MAX_EPOCH_MS, check_count, to_ms

__all__ = [
    "MAX_CATCH_UP",
    "MAX_SCHEDULER_ID",
    "MissedPolicy",
    "ScheduleSpec",
    "check_scheduler_id",
    "next_cron_time",
    "parse_schedule",
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
class ScheduleSpec:
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
    def from_json(cls, raw: bytes | str) -> ScheduleSpec:
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

    def slots_before(self, before: int, count: int) -> list[int]:
        """Up to ``count`` slots earlier than ``before`` (ms), latest first, none
        before ``start`` or after ``end`` (the jobs a scheduler made last are
        those of these slots)."""
        slots: list[int] = []
        if self.end is not None and before > self.end:
            before = self.end + 1
        if self.every is not None:
            origin = self.start if self.start is not None else 0
            slot = origin + ((before - 1 - origin) // self.every) * self.every
            while len(slots) < count and slot >= origin:
                slots.append(slot)
                slot -= self.every
            return slots
        assert self.cron is not None
        at = datetime.fromtimestamp(before / 1000, UTC).astimezone(ZoneInfo(self.tz))
        it = croniter(self.cron, at, second_at_beginning=len(self.cron.split()) == 6)
        while len(slots) < count:
            try:
                found = cast(datetime, it.get_prev(datetime))
            except CroniterBadDateError:
                break
            slot = round(found.timestamp() * 1000)
            if slot >= before:  # croniter may repeat the start time itself
                continue
            if self.start is not None and slot < self.start:
                break
            slots.append(slot)
        return slots

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


# -- validation -------------------------------------------------------------


def check_scheduler_id(value: object) -> str:
    """``value`` if it can name a scheduler, else a ValidationError on ``scheduler_id``."""
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


def parse_schedule(
    every: object, cron: object, tz: object, start_date: object, end_date: object,
    limit: object, missed: object,
) -> ScheduleSpec:
    """The schedule the arguments of ``upsert_job_scheduler`` describe, else a
    ValidationError naming the first argument refused."""
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
    spec = ScheduleSpec(every_ms, expression, tz, start, end, limit, cast(MissedPolicy, missed))
    never = expression is not None and spec.slot_after(round(time.time() * 1000)) is None
    if never and end is None:
        raise ValidationError("cron", f"{expression!r} never fires", cron)
    return spec
