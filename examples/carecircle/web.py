"""CareCircle's HTTP front (FastAPI). It answers what the user needs now
straight from PostgreSQL (the medication list: never through a queue), and
hands the rest to conveyor: reminder schedules, urgent alerts, uploaded
documents, whose bytes it stores and whose job carries only the id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field

from . import db, schedules
from .tasks import (
    REMINDERS,
    app,
    process_document,
    schedule_medication,
    send_reminder,
    send_urgent_alert,
)

__all__ = ["create_web_app"]


class NewUser(BaseModel):
    name: str
    email: str
    tz: str = Field(description="IANA time zone, e.g. Europe/Berlin")
    push_token: str


class TimeZone(BaseModel):
    tz: str


class NewMedication(BaseModel):
    user_id: int
    name: str
    times: list[str] = Field(description="local times of day, HH:MM")


class MedicationStatus(BaseModel):
    status: Literal["active", "paused"]


class Snooze(BaseModel):
    minutes: int = Field(15, ge=1, le=240)


class NewAlert(BaseModel):
    user_id: int
    message: str


def _bad(exc: ValueError) -> HTTPException:
    return HTTPException(422, str(exc))


async def _schedules_of(medication_id: int) -> list[dict[str, Any]]:
    prefix = f"med-{medication_id}-"
    return [
        {"id": s.id, "cron": s.cron, "tz": s.tz,
         "next_run": s.next_run.isoformat() if s.next_run else None}
        for s in await app.queue(REMINDERS).get_job_schedulers() if s.id.startswith(prefix)
    ]


def create_web_app() -> FastAPI:
    """The FastAPI app (reads DATABASE_URL and CONVEYOR_REDIS_URL)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.apply_schema()
        try:
            yield
        finally:
            await app.close()
            await db.close_pool()

    web = FastAPI(title="CareCircle", lifespan=lifespan)

    @web.post("/users", status_code=201)
    async def create_user(body: NewUser) -> dict[str, Any]:
        try:
            schedules.check_tz(body.tz)
        except ValueError as exc:
            raise _bad(exc) from None
        pool = await db.pool()
        user_id = await pool.fetchval(
            "INSERT INTO users (name, email, tz, push_token) VALUES ($1, $2, $3, $4)"
            " RETURNING id", body.name, body.email, body.tz, body.push_token)
        return {"id": user_id}

    @web.put("/users/{user_id}/timezone")
    async def change_time_zone(user_id: int, body: TimeZone) -> dict[str, Any]:
        """The user moved: every reminder follows to the new local time."""
        try:
            schedules.check_tz(body.tz)
        except ValueError as exc:
            raise _bad(exc) from None
        pool = await db.pool()
        if await pool.execute("UPDATE users SET tz = $2 WHERE id = $1", user_id,
                              body.tz) == "UPDATE 0":
            raise HTTPException(404, "no such user")
        meds = await pool.fetch("SELECT id, times FROM medications WHERE user_id = $1",
                                user_id)
        for med in meds:
            await schedule_medication(med["id"], user_id, list(med["times"]), body.tz)
        return {"id": user_id, "tz": body.tz, "medications": len(meds)}

    @web.get("/users/{user_id}/medications")
    async def medications(user_id: int) -> list[dict[str, Any]]:
        """Asked for now, answered now: a query, not a job."""
        rows = await (await db.pool()).fetch(
            "SELECT id, name, times, status FROM medications WHERE user_id = $1 ORDER BY id",
            user_id)
        return [{"id": r["id"], "name": r["name"], "times": list(r["times"]),
                 "status": r["status"], "schedules": await _schedules_of(r["id"])}
                for r in rows]

    @web.post("/medications", status_code=201)
    async def add_medication(body: NewMedication) -> dict[str, Any]:
        try:
            times = schedules.check_times(body.times)
        except ValueError as exc:
            raise _bad(exc) from None
        pool = await db.pool()
        tz = await pool.fetchval("SELECT tz FROM users WHERE id = $1", body.user_id)
        if tz is None:
            raise HTTPException(404, "no such user")
        med_id = await pool.fetchval(
            "INSERT INTO medications (user_id, name, times) VALUES ($1, $2, $3) RETURNING id",
            body.user_id, body.name, times)
        await schedule_medication(med_id, body.user_id, times, tz)
        return {"id": med_id, "schedules": await _schedules_of(med_id)}

    @web.patch("/medications/{medication_id}")
    async def set_status(medication_id: int, body: MedicationStatus) -> dict[str, Any]:
        """Pause or resume: the schedules stay; a paused medication's reminder
        sees the status when it runs and skips."""
        pool = await db.pool()
        if await pool.execute("UPDATE medications SET status = $2 WHERE id = $1",
                              medication_id, body.status) == "UPDATE 0":
            raise HTTPException(404, "no such medication")
        return {"id": medication_id, "status": body.status}

    @web.post("/alerts", status_code=201)
    async def raise_alert(body: NewAlert) -> dict[str, Any]:
        pool = await db.pool()
        alert_id = await pool.fetchval(
            "INSERT INTO alerts (user_id, message) SELECT id, $2 FROM users WHERE id = $1"
            " RETURNING id", body.user_id, body.message)
        if alert_id is None:
            raise HTTPException(404, "no such user")
        job = await send_urgent_alert.with_options(job_id=f"alert-{alert_id}").enqueue(
            alert_id=alert_id)
        return {"id": alert_id, "job_id": job.id}

    @web.post("/reminders/{job_id}/taken")
    async def taken(job_id: str) -> dict[str, Any]:
        """The user took the dose: no missed-dose alert for this reminder."""
        if await (await db.pool()).execute(
                "UPDATE notification_log SET taken_at = coalesce(taken_at, now())"
                " WHERE job_id = $1 AND kind = 'reminder'", job_id) == "UPDATE 0":
            raise HTTPException(404, "no such reminder")
        return {"job_id": job_id, "taken": True}

    @web.post("/reminders/{job_id}/snooze", status_code=201)
    async def snooze(job_id: str, body: Snooze) -> dict[str, Any]:
        """Remind me again in N minutes: a delayed job, one per reminder."""
        row = await (await db.pool()).fetchrow(
            "SELECT user_id, medication_id FROM notification_log"
            " WHERE job_id = $1 AND kind = 'reminder'", job_id)
        if row is None:
            raise HTTPException(404, "no such reminder")
        job = await send_reminder.with_options(
            job_id=f"snooze-{job_id}", delay=body.minutes * 60_000,
        ).enqueue(medication_id=row["medication_id"], user_id=row["user_id"])
        return {"job_id": job.id, "minutes": body.minutes}

    @web.post("/documents", status_code=201)
    async def upload(request: Request, user_id: int = Query(),
                     filename: str = Query(min_length=1)) -> dict[str, Any]:
        """The body is the file. It goes to PostgreSQL; the job gets its id."""
        content = await request.body()
        pool = await db.pool()
        doc_id = await pool.fetchval(
            "INSERT INTO documents (user_id, filename, content) SELECT id, $2, $3 FROM users"
            " WHERE id = $1 RETURNING id", user_id, filename, content)
        if doc_id is None:
            raise HTTPException(404, "no such user")
        job = await process_document.enqueue(document_id=doc_id)
        return {"id": doc_id, "bytes": len(content), "job_id": job.id}

    @web.get("/documents/{document_id}")
    async def document(document_id: int) -> dict[str, Any]:
        row = await (await db.pool()).fetchrow(
            "SELECT id, filename, status, runs, sha256, words, fingerprint, length(content)"
            " AS bytes FROM documents WHERE id = $1", document_id)
        if row is None:
            raise HTTPException(404, "no such document")
        return dict(row)

    return web
