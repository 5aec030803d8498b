"""CareCircle's conveyor app: its queues, their tasks with the seed's options,
and the per-queue worker settings (see worker.py).

Every job carries ids, never the objects: a task reads the medication, the
user or the document fresh from PostgreSQL when it runs, skips what no longer
applies (guard clauses), and records what it sent under the job's id, so a
retried or re-run job never sends twice.

Configuration comes from the environment (CONVEYOR_REDIS_URL, DATABASE_URL,
SMTP_URL, RECEIVER_URL), so the same module runs under ``python -m
examples.carecircle``, under a worker process and in the tests.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from conveyor import JobScheduler, UnrecoverableError
from conveyor.app import Conveyor, current_job

from . import db, schedules
from .analysis import analyse

__all__ = [
    "CONCURRENCY", "DOCUMENTS", "EMAIL", "PRIORITY_ROUTINE", "PRIORITY_URGENT", "QUEUES",
    "REMINDERS", "REMINDER_OPTIONS", "app", "escalate_missed_doses", "process_document",
    "schedule_medication", "send_email", "send_reminder", "send_urgent_alert",
]

REMINDERS = "reminders"
DOCUMENTS = "documents"
EMAIL = "email"
QUEUES = (REMINDERS, DOCUMENTS, EMAIL)

#: Jobs running at once per queue, in each worker process.
CONCURRENCY: Mapping[str, int] = {REMINDERS: 5, DOCUMENTS: 2, EMAIL: 5}

#: Lower runs first. Both kinds carry a priority: conveyor takes jobs without
#: one before any prioritized job, so a routine reminder without a priority
#: would go ahead of an urgent alert.
PRIORITY_URGENT = 1
PRIORITY_ROUTINE = 10

#: The seed's reminder options: 3 attempts, exponential backoff from 1 minute,
#: the newest 100 completed jobs kept for debugging, failed jobs all kept.
REMINDER_OPTIONS: dict[str, Any] = {
    "priority": PRIORITY_ROUTINE,
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 60_000},
    "remove_on_complete": 100,
    "remove_on_fail": False,
}

app = Conveyor()  # $CONVEYOR_REDIS_URL


class PushError(Exception):
    """The push provider refused a notification for now (retried)."""


async def _push(token: str, key: str, title: str, body: str, *, urgent: bool) -> None:
    """Send a push through the provider (RECEIVER_URL). ``key`` (the job id)
    is the provider's idempotency key: a job re-run after a crash between the
    send and our record is delivered once."""
    url = f"{os.environ['RECEIVER_URL']}/push/{token}"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            url, json={"title": title, "body": body, "urgent": urgent},
            headers={"Idempotency-Key": key},
        )
    if response.status_code == 410:  # the app was uninstalled: retrying cannot help
        raise UnrecoverableError(f"push token {token!r} is no longer registered")
    if response.status_code >= 400:
        raise PushError(f"push provider answered {response.status_code}")


async def _already_sent(conn: asyncpg.Connection, job_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM notification_log WHERE job_id = $1",
                                    job_id))


@app.task(queue=REMINDERS, **REMINDER_OPTIONS)
async def send_reminder(medication_id: int, user_id: int) -> dict[str, Any]:
    """Remind a user to take a medication (made by the medication's schedulers)."""
    job = current_job()
    due = schedules.scheduled_slot(job)
    async with (await db.pool()).acquire() as conn:
        if await _already_sent(conn, job.id):
            return {"skipped": "already_sent"}
        row = await conn.fetchrow(
            "SELECT m.name, m.status, u.push_token, u.tz FROM medications m "
            "JOIN users u ON u.id = m.user_id WHERE m.id = $1 AND u.id = $2",
            medication_id, user_id,
        )
        if row is None:
            return {"skipped": "not_found"}
        if row["status"] != "active":
            return {"skipped": "inactive"}
        local = due.astimezone(ZoneInfo(row["tz"]))
        await _push(row["push_token"], job.id, "Medication Reminder",
                    f"Time to take {row['name']} ({local:%H:%M})", urgent=False)
        await conn.execute(
            "INSERT INTO notification_log (job_id, kind, user_id, medication_id, scheduled_for,"
            " local_time) VALUES ($1, 'reminder', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            job.id, user_id, medication_id, due, f"{local:%H:%M}",
        )
    return {"success": True, "sentAt": datetime.now(UTC).isoformat()}


@app.task(queue=REMINDERS, priority=PRIORITY_URGENT, attempts=5,
          backoff={"type": "fixed", "delay": 5_000}, remove_on_complete=100,
          remove_on_fail=False)
async def send_urgent_alert(alert_id: int) -> dict[str, Any]:
    """Push an urgent alert (a missed dose, a fall): it overtakes routine reminders."""
    job = current_job()
    async with (await db.pool()).acquire() as conn:
        if await _already_sent(conn, job.id):
            return {"skipped": "already_sent"}
        row = await conn.fetchrow(
            "SELECT a.user_id, a.message, u.push_token FROM alerts a "
            "JOIN users u ON u.id = a.user_id WHERE a.id = $1", alert_id,
        )
        if row is None:
            return {"skipped": "not_found"}
        await _push(row["push_token"], job.id, "Urgent", row["message"], urgent=True)
        await conn.execute(
            "INSERT INTO notification_log (job_id, kind, user_id, alert_id)"
            " VALUES ($1, 'urgent', $2, $3) ON CONFLICT DO NOTHING",
            job.id, row["user_id"], alert_id,
        )
    return {"success": True}


#: A reminder not confirmed within this long becomes an urgent alert.
MISSED_AFTER = timedelta(minutes=30)


@app.every(timedelta(minutes=5), scheduler_id="missed-doses")
@app.task(queue=REMINDERS, priority=PRIORITY_URGENT, attempts=3,
          backoff={"type": "fixed", "delay": 10_000}, remove_on_complete=100,
          remove_on_fail=False)
async def escalate_missed_doses() -> dict[str, int]:
    """Every 5 minutes: each reminder not confirmed within MISSED_AFTER gets
    one urgent alert (the unique reminder_job_id makes a re-run add none)."""
    async with (await db.pool()).acquire() as conn:
        await conn.execute(
            "INSERT INTO alerts (user_id, message, reminder_job_id)"
            " SELECT n.user_id, 'Missed dose: ' || m.name || ' at ' || n.local_time, n.job_id"
            " FROM notification_log n JOIN medications m ON m.id = n.medication_id"
            " WHERE n.kind = 'reminder' AND n.taken_at IS NULL AND n.sent_at < now() - $1::interval"
            " ON CONFLICT (reminder_job_id) DO NOTHING", MISSED_AFTER)
        # Alerts not sent yet, including those of a run that died before enqueueing.
        pending = await conn.fetch(
            "SELECT a.id FROM alerts a WHERE a.reminder_job_id IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM notification_log n WHERE n.alert_id = a.id)")
    for row in pending:  # the job id makes an alert enqueued twice one job
        await send_urgent_alert.with_options(job_id=f"alert-{row['id']}").enqueue(
            alert_id=row["id"])
    return {"alerts": len(pending)}


# sandbox=True: the analysis is pure-Python CPU work; in a child process it
# cannot stall the worker's event loop (other jobs, lock renewals), as it would
# in an `async def`, nor hold the worker's GIL, as it would in a thread.
@app.task(queue=DOCUMENTS, sandbox=True, attempts=3,
          backoff={"type": "exponential", "delay": 5_000}, timeout=300_000,
          remove_on_complete=100, remove_on_fail=False)
async def process_document(document_id: int) -> dict[str, Any]:
    """Analyse an uploaded document (the job carries its id; the bytes stay in
    PostgreSQL), then have the owner told by e-mail."""
    conn = await asyncpg.connect(db.database_url())
    try:
        row = await conn.fetchrow(
            "UPDATE documents SET status = 'processing', runs = runs + 1, started_at = now()"
            " WHERE id = $1 AND status <> 'processed' RETURNING user_id, content", document_id,
        )
        result: dict[str, Any]
        if row is None:
            # Processed by a run that died before it finished: only the e-mail may be owed.
            user_id = await conn.fetchval(
                "SELECT user_id FROM documents WHERE id = $1 AND status = 'processed'",
                document_id)
            if user_id is None:
                return {"skipped": "not_found"}
            result = {"skipped": "already_processed"}
        else:
            user_id = row["user_id"]
            await current_job().update_progress(10)  # the worker writes it (sandbox)
            result = analyse(row["content"])
            await conn.execute(
                "UPDATE documents SET status = 'processed', sha256 = $2, words = $3,"
                " fingerprint = $4, processed_at = clock_timestamp() WHERE id = $1",
                document_id, result["sha256"], result["words"], result["fingerprint"],
            )
            await current_job().update_progress(100)
    finally:
        await conn.close()
    # Its job id makes the e-mail one, however often this job runs.
    await send_email.with_options(job_id=f"document-ready-{document_id}").enqueue(
        user_id=user_id, kind="document-ready", ref=document_id)
    return {"document_id": document_id, **result}


def _smtp_send(message: EmailMessage) -> None:
    url = urlsplit(os.environ["SMTP_URL"])
    with smtplib.SMTP(url.hostname or "127.0.0.1", url.port or 25, timeout=10) as smtp:
        smtp.send_message(message)


@app.task(queue=EMAIL, attempts=5, backoff={"type": "exponential", "delay": 2_000},
          remove_on_complete=100, remove_on_fail=False)
async def send_email(user_id: int, kind: str, ref: int) -> dict[str, Any]:
    """Send one templated e-mail, built from fresh data; once per job id."""
    job = current_job()
    async with (await db.pool()).acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM email_log WHERE job_id = $1", job.id):
            return {"skipped": "already_sent"}
        user = await conn.fetchrow("SELECT name, email FROM users WHERE id = $1", user_id)
        if user is None:
            return {"skipped": "not_found"}
        if kind != "document-ready":
            raise UnrecoverableError(f"no e-mail template {kind!r}")
        filename = await conn.fetchval("SELECT filename FROM documents WHERE id = $1", ref)
        message = EmailMessage()
        message["From"] = "CareCircle <care@carecircle.example>"
        message["To"] = user["email"]
        message["Subject"] = f"Your document {filename} is ready"
        message["Message-ID"] = f"<{job.id}@carecircle.example>"
        message.set_content(f"Hello {user['name']},\n\n{filename} has been analysed.\n")
        await asyncio.to_thread(_smtp_send, message)  # smtplib blocks: not on the loop
        await conn.execute(
            "INSERT INTO email_log (job_id, user_id, subject) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING", job.id, user_id, message["Subject"],
        )
    return {"sent": True}


async def schedule_medication(
    medication_id: int, user_id: int, times: list[str], tz: str
) -> list[JobScheduler]:
    """(Re)schedule a medication's reminders at ``times`` in the zone ``tz``."""
    return await schedules.schedule_medication(
        app.queue(REMINDERS), medication_id, user_id, times, tz, send_reminder.name,
        REMINDER_OPTIONS,
    )
