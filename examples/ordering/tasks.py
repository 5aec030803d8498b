"""The ordering platform's queues and jobs (the seed's ``queue.js`` and
``processors/``): eight queues, one job type each, with the seed's retry
policies; every job that fails for good is also copied into
``{queueName}-dlq``, where a recorder task writes it to PostgreSQL. The seed's
``addJob`` / ``addDelayedJob`` / ``addScheduledJob`` are :func:`add_job`,
:func:`add_delayed_job` and :func:`add_scheduled_job`.

Configuration comes from the environment: ``CONVEYOR_REDIS_URL``,
``DATABASE_URL``, ``RECEIVER_URL`` (the WhatsApp API is ``$RECEIVER_URL/whatsapp``,
or ``WHATSAPP_API_URL``) and ``ORDERING_TZ`` (the time zone of the schedules).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any, Unpack

import httpx

from conveyor import Job, JobScheduler, RateLimitError, UnrecoverableError
from conveyor.app import Conveyor, Task, TaskOptions, current_job

from . import domain
from .db import pool

__all__ = [
    "JOB_TASKS",
    "JobType",
    "add_delayed_job",
    "add_job",
    "add_scheduled_job",
    "app",
    "dead_letter_queue",
]

app = Conveyor()  # $CONVEYOR_REDIS_URL

#: The schedules' time zone (the seed's platform is in Nepal: +977 numbers).
TZ = os.environ.get("ORDERING_TZ", "Asia/Kathmandu")
#: How long an awarded wholesaler has to confirm.
CONFIRM_WINDOW_S = int(os.environ.get("ORDERING_CONFIRM_WINDOW_S", "600"))


class JobType(StrEnum):
    """The seed's ``JOB_TYPES``: each is the name of its queue."""

    WHATSAPP_MESSAGE_SEND = "whatsapp-message-send"
    ORDER_EXPIRY = "order-expiry"
    VENDOR_FALLBACK = "vendor-fallback"
    DAILY_REPORTS = "daily-reports"
    CREDIT_RECONCILIATION = "credit-reconciliation"
    BIDDING_TIMEOUT = "bidding-timeout"
    WHOLESALER_CONFIRMATION_TIMEOUT = "wholesaler-confirmation-timeout"
    PAYMENT_REMINDERS = "payment-reminders"


def dead_letter_queue(queue: str) -> str:
    """Where a job of ``queue`` that failed for good is copied: ``{queueName}-dlq``."""
    return f"{queue}-dlq"


# The seed's two retry policies.
EXPONENTIAL = {"type": "exponential", "delay": 2000}  # 2 s, then 4 s
FIXED = {"type": "fixed", "delay": 5000}  # 5 s between retries
# The seed's "clean up old jobs": a day of completed jobs, a week of failed ones (the dead
# letters the API lists and retries).
KEEP_COMPLETED = {"age": 24 * 3600, "count": 1000}
KEEP_FAILED = {"age": 7 * 24 * 3600, "count": 5000}


def whatsapp_api_url() -> str:
    """The WhatsApp provider's base URL."""
    return os.environ.get("WHATSAPP_API_URL") or os.environ["RECEIVER_URL"] + "/whatsapp"


# -- processors ------------------------------------------------------------------


@app.task(queue=JobType.WHATSAPP_MESSAGE_SEND.value, attempts=3, backoff=EXPONENTIAL,
          dead_letter_queue=dead_letter_queue(JobType.WHATSAPP_MESSAGE_SEND),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def send_whatsapp_message(phone_number: str, message: str) -> dict[str, Any]:
    """Send one WhatsApp message through the provider's API; a 5xx or a network
    error raises, so the job is retried (3 attempts, exponential backoff)."""
    job = current_job()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{whatsapp_api_url()}/messages/{phone_number}",
            json={"to": phone_number, "text": message},
            # The provider drops a repeat of a key: a retry after a lost answer sends once.
            headers={"Idempotency-Key": f"{JobType.WHATSAPP_MESSAGE_SEND}-{job.id}"},
        )
    if response.status_code == 429:
        raise RateLimitError(int(response.headers.get("Retry-After", "1")) * 1000)
    if 400 <= response.status_code < 500:
        raise UnrecoverableError(f"the provider refused the message: {response.status_code}")
    response.raise_for_status()
    async with (await pool()).acquire() as conn:
        await conn.execute(
            "INSERT INTO whatsapp_messages (job_id, phone_number, message) VALUES ($1, $2, $3) "
            "ON CONFLICT (job_id) DO NOTHING", job.id, phone_number, message)
    return {"status": response.status_code}


@app.task(queue=JobType.ORDER_EXPIRY.value, attempts=1,
          dead_letter_queue=dead_letter_queue(JobType.ORDER_EXPIRY),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def expire_order(order_id: str) -> dict[str, Any]:
    """Expire an order nobody confirmed in time (added delayed, at its expiry)."""
    messages = await _in_transaction(domain.expire_order, order_id)
    return {"expired": bool(messages)}


@app.task(queue=JobType.VENDOR_FALLBACK.value, attempts=2, backoff=FIXED,
          dead_letter_queue=dead_letter_queue(JobType.VENDOR_FALLBACK),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def reassign_vendor(order_id: str, rejected_vendor_id: str) -> dict[str, Any]:
    """Re-assign an order its vendor rejected (or failed) to the next vendor."""
    messages = await _in_transaction(domain.reassign_vendor, order_id, rejected_vendor_id)
    return {"offered_to": [m.phone_number for m in messages]}


@app.task(queue=JobType.DAILY_REPORTS.value, attempts=3, backoff=EXPONENTIAL,
          dead_letter_queue=dead_letter_queue(JobType.DAILY_REPORTS),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def generate_daily_report(report_type: str = "all") -> dict[str, Any]:
    """Generate the daily analytics and send them to the operations phone."""
    async with (await pool()).acquire() as conn, conn.transaction():
        report = await domain.daily_report(conn, report_type, TZ)
        await _notify([domain.Message(
            f"daily-report-{report['report_date']}-{report_type}", ops_phone(),
            f"Daily report {report['report_date']}: {report['orders']} orders, "
            f"{report['confirmed']} confirmed, {report['expired']} expired, "
            f"revenue {report['revenue']}.")])
    return report


@app.task(queue=JobType.CREDIT_RECONCILIATION.value, attempts=3, backoff=EXPONENTIAL,
          dead_letter_queue=dead_letter_queue(JobType.CREDIT_RECONCILIATION),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def reconcile_credit() -> dict[str, int]:
    """Reconcile every credit account's balance with its ledger."""
    job_id = current_job().id
    async with (await pool()).acquire() as conn, conn.transaction():
        return {"accounts_fixed": await domain.reconcile_credit(conn, job_id)}


@app.task(queue=JobType.BIDDING_TIMEOUT.value, attempts=3, backoff=EXPONENTIAL,
          dead_letter_queue=dead_letter_queue(JobType.BIDDING_TIMEOUT),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def close_expired_biddings() -> dict[str, int]:
    """Auto-select the winner of every bidding whose time ran out."""
    messages = await _in_transaction(domain.award_biddings, CONFIRM_WINDOW_S)
    return {"awarded": len(messages)}


@app.task(queue=JobType.WHOLESALER_CONFIRMATION_TIMEOUT.value, attempts=3, backoff=EXPONENTIAL,
          dead_letter_queue=dead_letter_queue(JobType.WHOLESALER_CONFIRMATION_TIMEOUT),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def expire_wholesaler_confirmations() -> dict[str, int]:
    """Time out wholesalers that did not confirm; ask the next lowest bid."""
    messages = await _in_transaction(domain.time_out_confirmations, CONFIRM_WINDOW_S)
    return {"messages": len(messages)}


@app.task(queue=JobType.PAYMENT_REMINDERS.value, attempts=3, backoff=EXPONENTIAL,
          dead_letter_queue=dead_letter_queue(JobType.PAYMENT_REMINDERS),
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def send_payment_reminders() -> dict[str, int]:
    """Remind customers of their overdue invoices (once a day each)."""
    messages = await _in_transaction(domain.overdue_reminders, TZ)
    return {"reminded": len(messages)}


def ops_phone() -> str:
    """Where the daily report goes."""
    return os.environ.get("ORDERING_OPS_PHONE", "+9779800000001")


async def _in_transaction(rule: Any, *args: Any) -> list[domain.Message]:
    """Run a domain rule in a transaction and enqueue the messages it asks for
    before committing: a crash in between re-runs the rule, whose messages
    have the same job ids, so none is sent twice and none is lost."""
    async with (await pool()).acquire() as conn, conn.transaction():
        messages: list[domain.Message] = await rule(conn, *args)
        await _notify(messages)
    return messages


async def _notify(messages: Sequence[domain.Message]) -> None:
    for m in messages:
        await add_job(JobType.WHATSAPP_MESSAGE_SEND,
                      {"phone_number": m.phone_number, "message": m.message}, job_id=m.job_id)


# -- the dead-letter queues --------------------------------------------------------


async def record_dead_letter(**data: Any) -> dict[str, Any]:
    """A job copied into a ``{queueName}-dlq`` queue: keep it in PostgreSQL for
    the operators (the original stays in its queue's failed set, where the
    dead-letter endpoint lists it and the retry endpoint sends it back)."""
    job = current_job()
    origin = job.dead_letter_of or {}
    async with (await pool()).acquire() as conn:
        await conn.execute(
            "INSERT INTO dead_letters (queue, job_id, job_name, data, failed_reason, "
            "attempts_made, failed_on) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) "
            "ON CONFLICT DO NOTHING",
            origin.get("queue", ""), str(origin.get("id", job.id)), job.name,
            json.dumps(data), origin.get("failed_reason") or "",
            int(origin.get("attempts_made", 0)), int(origin.get("failed_on", 0)))
    return {"recorded": origin.get("id")}


#: Each job type's task (the processor of its queue).
JOB_TASKS: dict[JobType, Task[..., Any]] = {
    JobType.WHATSAPP_MESSAGE_SEND: send_whatsapp_message,
    JobType.ORDER_EXPIRY: expire_order,
    JobType.VENDOR_FALLBACK: reassign_vendor,
    JobType.DAILY_REPORTS: generate_daily_report,
    JobType.CREDIT_RECONCILIATION: reconcile_credit,
    JobType.BIDDING_TIMEOUT: close_expired_biddings,
    JobType.WHOLESALER_CONFIRMATION_TIMEOUT: expire_wholesaler_confirmations,
    JobType.PAYMENT_REMINDERS: send_payment_reminders,
}

# A dead-letter copy keeps its job's name, so each -dlq queue has the recorder under the
# name of its queue's task.
for _job_type, _task in JOB_TASKS.items():
    app.task(queue=dead_letter_queue(_job_type), name=_task.name, attempts=3,
             backoff=EXPONENTIAL)(record_dead_letter)


# -- the seed's helpers ------------------------------------------------------------


async def add_job(job_type: JobType, data: Mapping[str, Any],
                  **options: Unpack[TaskOptions]) -> Job:
    """Add an immediate job of ``job_type`` (the seed's ``addJob``); ``data`` are
    the processor's arguments; ``options`` override its queue's (e.g. ``job_id``)."""
    return await JOB_TASKS[job_type].with_options(**options).enqueue(**data)


async def add_delayed_job(job_type: JobType, data: Mapping[str, Any],
                          delay_ms: int | timedelta, **options: Unpack[TaskOptions]) -> Job:
    """Add a job that runs ``delay_ms`` (or a timedelta) from now (``addDelayedJob``)."""
    options["delay"] = delay_ms
    return await add_job(job_type, data, **options)


async def add_scheduled_job(job_type: JobType, data: Mapping[str, Any], pattern: str, *,
                            tz: str | None = None, scheduler_id: str | None = None
                            ) -> JobScheduler:
    """Run a job of ``job_type`` on the cron ``pattern`` (read in ``tz``, default
    ``$ORDERING_TZ``) with its queue's retry policy (the seed's
    ``addScheduledJob``). Upserted by id (default: the queue's name), so calling
    it at every start never doubles a schedule."""
    task = JOB_TASKS[job_type]
    options = {k: v for k, v in task.options.items()
               if k in ("attempts", "backoff", "remove_on_complete", "remove_on_fail",
                        "dead_letter_queue")}
    return await app.queue(task.queue).upsert_job_scheduler(
        scheduler_id or str(job_type), cron=pattern, tz=tz or TZ, job_name=task.name,
        data=task.arguments(**data), **options)
