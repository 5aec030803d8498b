"""The recurring jobs (the seed's ``scheduler.js``), each made with
:func:`~examples.ordering.tasks.add_scheduled_job`: daily reports at midnight,
credit reconciliation at 2 AM, the bidding and wholesaler-confirmation
timeouts every 2 minutes and payment reminders at 9 AM, in ``$ORDERING_TZ``."""

from __future__ import annotations

from typing import Any

from conveyor import JobScheduler

from .tasks import JobType, add_scheduled_job

__all__ = ["SCHEDULES", "schedule_recurring_jobs"]

#: (job type, data, cron pattern)
SCHEDULES: list[tuple[JobType, dict[str, Any], str]] = [
    (JobType.DAILY_REPORTS, {"report_type": "all"}, "0 0 * * *"),  # daily at midnight
    (JobType.CREDIT_RECONCILIATION, {}, "0 2 * * *"),  # daily at 2 AM
    (JobType.BIDDING_TIMEOUT, {}, "*/2 * * * *"),  # every 2 minutes
    (JobType.WHOLESALER_CONFIRMATION_TIMEOUT, {}, "*/2 * * * *"),  # every 2 minutes
    (JobType.PAYMENT_REMINDERS, {}, "0 9 * * *"),  # daily at 9 AM
]


async def schedule_recurring_jobs() -> list[JobScheduler]:
    """Upsert every schedule (at each start: the same id never doubles)."""
    return [await add_scheduled_job(job_type, data, pattern)
            for job_type, data, pattern in SCHEDULES]
