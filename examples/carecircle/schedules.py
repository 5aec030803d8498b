"""Per-user reminder schedules: one cron job scheduler per medication and time
of day, read in the user's own IANA time zone, so 08:00 is 08:00 where the
user lives, in winter and in summer.

A scheduler's id is ``med-<medication>-<HHMM>``; upserting it again (a new
time zone, new times) replaces its schedule atomically, so calling
:func:`schedule_medication` after any change is always right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor import Job, JobScheduler, Queue

__all__ = [
    "check_times", "check_tz", "cron_for", "schedule_medication", "scheduled_slot",
    "scheduler_id", "unschedule_medication",
]

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def check_tz(tz: str) -> str:
    """``tz`` if it names an IANA time zone, else ValueError."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None
    return tz


def check_times(times: Sequence[str]) -> list[str]:
    """The distinct local times ``HH:MM``, sorted; ValueError for a bad one."""
    for at in times:
        if not _TIME.match(at):
            raise ValueError(f"a time of day is HH:MM (24 h), got {at!r}")
    if not times:
        raise ValueError("give at least one time of day")
    return sorted(set(times))


def scheduler_id(medication_id: int, at: str) -> str:
    """The id of the scheduler of one medication at one local time."""
    return f"med-{medication_id}-{at.replace(':', '')}"


def cron_for(at: str) -> str:
    """``08:30`` -> ``30 8 * * *`` (every day at that local time)."""
    hour, minute = at.split(":")
    return f"{int(minute)} {int(hour)} * * *"


async def schedule_medication(
    queue: Queue, medication_id: int, user_id: int, times: Sequence[str], tz: str,
    job_name: str, job_options: Mapping[str, Any],
) -> list[JobScheduler]:
    """Upsert one scheduler per time in ``tz`` and remove the medication's
    schedulers for times it no longer has. The jobs carry ids, not the
    medication: the reminder reads it fresh when it runs."""
    wanted = {scheduler_id(medication_id, at): at for at in check_times(times)}
    check_tz(tz)
    prefix = f"med-{medication_id}-"
    for existing in await queue.get_job_schedulers():
        if existing.id.startswith(prefix) and existing.id not in wanted:
            await queue.remove_job_scheduler(existing.id)
    return [
        await queue.upsert_job_scheduler(
            sid, cron=cron_for(at), tz=tz, job_name=job_name,
            data={"medication_id": medication_id, "user_id": user_id}, **job_options,
        )
        for sid, at in wanted.items()
    ]


async def unschedule_medication(queue: Queue, medication_id: int) -> int:
    """Remove every scheduler of a medication (and its pending job); how many."""
    removed = 0
    for existing in await queue.get_job_schedulers():
        if existing.id.startswith(f"med-{medication_id}-"):
            removed += bool(await queue.remove_job_scheduler(existing.id))
    return removed


def scheduled_slot(job: Job) -> datetime:
    """When a reminder was due: the slot of a scheduler's job (its id is
    ``sched-<scheduler id>-<slot ms>``), else when the job was added plus its
    delay (a snoozed reminder)."""
    if job.id.startswith("sched-"):
        slot = job.id.rsplit("-", 1)[1]
        if slot.isdigit():
            return datetime.fromtimestamp(int(slot) / 1000, UTC)
    return datetime.fromtimestamp((job.timestamp + job.opts.delay) / 1000, UTC)
