"""End-to-end tests of CareCircle: real Redis, PostgreSQL, SMTP sink, push
provider (an HTTP receiver) and worker processes, nothing mocked.

Schedules fire at 08:00 and such in each user's zone; the tests do not wait
for that: they check each scheduler's next run against the zone's clock, then
promote the scheduler's pending delayed job (the job of its next slot), which
runs it now. Retries wait 1 minute (the seed's backoff): the tests promote the
delayed retry instead of waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from conveyor import Job, ValidationError
from conveyor.embedded import free_port
from conveyor.web.app import create_app

from examples.carecircle import tasks
from examples.carecircle.launch import worker_process
from examples.carecircle.tasks import DOCUMENTS, EMAIL, QUEUES, REMINDERS, app
from examples.carecircle.web import create_web_app
from examples.support import Services, WorkerProcess, dashboard_screenshot, serve_app, wait_until

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


@dataclass
class Care:
    """The running example: services, the HTTP front, the database, workers."""

    services: Services
    env: dict[str, str]
    http: httpx.AsyncClient
    db: asyncpg.Pool
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        worker = worker_process(self.env, log=self.tmp / "worker.log").start()
        self.workers.append(worker)
        return worker

    @property
    def receiver(self):  # type: ignore[no-untyped-def]
        assert self.services.http is not None
        return self.services.http

    async def user(self, name: str, tz: str, token: str) -> int:
        response = await self.http.post("/users", json={
            "name": name, "email": f"{name.lower()}@example.com", "tz": tz, "push_token": token})
        assert response.status_code == 201, response.text
        user_id: int = response.json()["id"]
        return user_id

    async def medication(self, user_id: int, name: str, times: list[str]) -> int:
        response = await self.http.post("/medications", json={
            "user_id": user_id, "name": name, "times": times})
        assert response.status_code == 201, response.text
        med_id: int = response.json()["id"]
        return med_id

    async def count(self, sql: str, *args: object) -> int:
        value: int = await self.db.fetchval(sql, *args)
        return value

    async def counts(self, n: int, sql: str, *args: object) -> bool:
        """Whether the count ``sql`` gives is ``n`` (a wait_until predicate)."""
        return await self.count(sql, *args) == n

    async def at_least(self, n: int, sql: str, *args: object) -> bool:
        return await self.count(sql, *args) >= n


@pytest.fixture
async def care(services: Callable[..., Services], monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> AsyncIterator[Care]:
    started = services(smtp=True, http=True)
    # A killed worker's jobs come back in about a second, not a minute.
    env = {**started.env(), "CARECIRCLE_LOCK_MS": "1000", "CARECIRCLE_STALLED_MS": "500"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app.connection = started.redis_url
    server, task = await serve_app(create_web_app(), port := free_port())
    pool = await asyncpg.create_pool(started.database_url, min_size=1, max_size=4)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    care = Care(started, env, client, pool, tmp_path)
    try:
        yield care
    finally:
        for worker in care.workers:
            worker.kill()
        await client.aclose()
        server.should_exit = True
        await task
        await pool.close()
        await app.close()
        log = tmp_path / "worker.log"
        if log.exists():
            print(log.read_text()[-4000:])


def next_local(at: str, tz: str, now: datetime) -> datetime:
    """The next ``at`` (HH:MM) on the wall clock of ``tz`` after ``now``, in UTC."""
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    hour, minute = map(int, at.split(":"))
    day = local_now.date()
    while (slot := datetime.combine(day, time(hour, minute), tzinfo=zone)) <= local_now:
        day += timedelta(days=1)
    return slot.astimezone(UTC)


async def pending_job(scheduler_id: str) -> Job:
    """The delayed job a scheduler made for its next slot."""
    queue = app.queue(REMINDERS)
    scheduler = await queue.get_job_scheduler(scheduler_id)
    assert scheduler is not None and scheduler.next_run is not None
    job = await queue.get_job(f"sched-{scheduler_id}-{int(scheduler.next_run.timestamp() * 1000)}")
    assert job is not None and await job.get_state() == "delayed"
    return job


async def in_state(job_id: str, wanted: str) -> bool:
    """Whether the reminders job ``job_id`` is in state ``wanted``."""
    job = await app.queue(REMINDERS).get_job(job_id)
    return job is not None and await job.get_state() == wanted


async def test_example_carecircle_reminders_at_local_time_urgent_lane_retries_and_kill(
        care: Care) -> None:
    """Per-user schedules in their own time zones (checked against zoneinfo,
    then fired by promoting each scheduler's pending job), guard clauses,
    retries with the failures recorded by the worker's listener, the failed
    set kept, an urgent alert overtaking a backlog of 110 routine reminders,
    a worker SIGKILLed mid-backlog, and retention of the newest 100."""
    reminders = app.queue(REMINDERS)
    now = datetime.now(UTC)
    ada = await care.user("Ada", "Europe/Berlin", "token-ada")
    grace = await care.user("Grace", "America/New_York", "token-grace")
    kiran = await care.user("Kiran", "Asia/Kolkata", "token-kiran")
    flaky = await care.user("Flo", "UTC", "token-flaky")
    gone = await care.user("Gus", "Australia/Sydney", "token-gone")
    metformin = await care.medication(ada, "Metformin", ["20:00", "08:00"])
    vitamin = await care.medication(ada, "Vitamin D", ["12:00"])
    lisinopril = await care.medication(grace, "Lisinopril", ["08:00"])
    insulin = await care.medication(kiran, "Insulin", ["07:30"])
    statin = await care.medication(flaky, "Statin", ["21:15"])
    aspirin = await care.medication(gone, "Aspirin", ["09:00"])
    assert (await care.http.post("/users", json={
        "name": "X", "email": "x@example.com", "tz": "Mars/Olympus", "push_token": "t"})
    ).status_code == 422

    # Each reminder is due at the user's local time, whatever the offset.
    expected = {
        (metformin, "08:00"): "Europe/Berlin", (metformin, "20:00"): "Europe/Berlin",
        (vitamin, "12:00"): "Europe/Berlin", (lisinopril, "08:00"): "America/New_York",
        (insulin, "07:30"): "Asia/Kolkata", (statin, "21:15"): "UTC",
        (aspirin, "09:00"): "Australia/Sydney",
    }
    for (med, at), tz in expected.items():
        scheduler = await reminders.get_job_scheduler(f"med-{med}-{at.replace(':', '')}")
        assert scheduler is not None and scheduler.tz == tz
        assert scheduler.next_run == next_local(at, tz, now), (med, at, tz)

    # The user moves: her reminder follows to 08:00 Tokyo time.
    moved = await care.http.put(f"/users/{grace}/timezone", json={"tz": "Asia/Tokyo"})
    assert moved.status_code == 200
    scheduler = await reminders.get_job_scheduler(f"med-{lisinopril}-0800")
    assert scheduler is not None and scheduler.tz == "Asia/Tokyo"
    assert scheduler.next_run == next_local("08:00", "Asia/Tokyo", datetime.now(UTC))

    # What the user needs now is a query, not a job.
    counts = await reminders.get_job_counts()
    listed = (await care.http.get(f"/users/{ada}/medications")).json()
    assert [(m["name"], m["times"]) for m in listed] == [
        ("Metformin", ["08:00", "20:00"]), ("Vitamin D", ["12:00"])]
    assert await reminders.get_job_counts() == counts

    assert (await care.http.patch(f"/medications/{vitamin}", json={"status": "paused"})
            ).status_code == 200
    care.receiver.behave("/push/token-flaky", fail_first=2)
    care.receiver.behave("/push/token-gone", status=410)
    care.start_worker()

    fired = {}
    for med, at in expected:
        job = await pending_job(f"med-{med}-{at.replace(':', '')}")
        await job.promote()
        fired[(med, at)] = job.id
    sent = {(metformin, "08:00"), (metformin, "20:00"), (lisinopril, "08:00"),
            (insulin, "07:30")}
    await wait_until(lambda: care.counts(
        len(sent), "SELECT count(*) FROM notification_log WHERE job_id = ANY($1)",
        [fired[k] for k in sent]), what="the reminders")
    rows = {r["job_id"]: r for r in await care.db.fetch("SELECT * FROM notification_log")}
    for med, at in sent:
        row = rows[fired[(med, at)]]
        tz = "Asia/Tokyo" if med == lisinopril else expected[(med, at)]
        assert row["local_time"] == at
        assert row["scheduled_for"].astimezone(ZoneInfo(tz)).strftime("%H:%M") == at
    bodies = {r.headers["idempotency-key"]: r.json()["body"]
              for r in care.receiver.received("/push/", ok_only=True)}
    assert bodies[fired[(insulin, "07:30")]] == "Time to take Insulin (07:30)"

    # Guard clause: the paused medication's reminder ran and sent nothing.
    paused = await reminders.get_job(fired[(vitamin, "12:00")])
    assert paused is not None
    assert await paused.wait_until_finished(timeout=20) == {"skipped": "inactive"}

    # A revoked push token fails at once, for good, and stays for investigation.
    gone_id = fired[(aspirin, "09:00")]
    await wait_until(lambda: in_state(gone_id, "failed"),
                     what="the revoked token's reminder to fail")
    dead = await reminders.get_dead_letter(0, -1)
    assert [j.id for j in dead] == [gone_id] and dead[0].attempts_made == 1

    # A flaky provider: two failed attempts, each waiting its backoff (promoted here).
    flaky_id = fired[(statin, "21:15")]
    for attempt in (1, 2):
        await wait_until(lambda: care.counts(
            attempt, "SELECT count(*) FROM job_failures WHERE job_id = $1", flaky_id),
            what=f"failed attempt {attempt}")
        await wait_until(lambda: in_state(flaky_id, "delayed"),
                         what="the retry to wait its backoff")
        job = await reminders.get_job(flaky_id)
        assert job is not None
        await job.promote()
    await wait_until(lambda: in_state(flaky_id, "completed"), what="the third attempt")
    failures = await care.db.fetch(
        "SELECT job_id, attempt, final FROM job_failures ORDER BY id")
    assert {(r["job_id"], r["attempt"], r["final"]) for r in failures} == {
        (flaky_id, 1, False), (flaky_id, 2, False), (gone_id, 1, True)}
    assert await care.count("SELECT count(*) FROM notification_log WHERE job_id = $1",
                            flaky_id) == 1

    # The priority lane: 110 routine reminders at once, then an urgent alert.
    bulk = await care.user("Bea", "Europe/Lisbon", "token-bulk")
    pills = await care.medication(bulk, "Levothyroxine", ["06:00"])
    care.receiver.behave("/push/token-bulk", delay=0.05)
    # A morning's reminders for many users land at once (one atomic add_bulk).
    backlog = [j.id for j in await reminders.add_bulk([
        {"name": tasks.send_reminder.name, "data": {"medication_id": pills, "user_id": bulk},
         **tasks.REMINDER_OPTIONS} for _ in range(110)])]
    routine = "SELECT count(*) FROM notification_log WHERE user_id = $1 AND kind = 'reminder'"
    await wait_until(lambda: care.at_least(10, routine, bulk), what="the backlog to start")
    before_alert = await care.count(routine, bulk)
    alert = await care.http.post("/alerts", json={"user_id": bulk, "message": "Bea fell"})
    assert alert.status_code == 201
    alert_job = alert.json()["job_id"]
    await wait_until(lambda: care.counts(
        1, "SELECT count(*) FROM notification_log WHERE job_id = $1", alert_job),
        what="the urgent alert")
    # SIGKILL while the backlog is in flight; another worker finishes it.
    active = [j.id for j in await reminders.get_jobs(["active"], 0, -1)]
    assert active, "jobs in flight when the worker is killed"
    care.workers[-1].kill()
    care.start_worker()
    await wait_until(lambda: care.counts(110, routine, bulk), timeout=30,
                     what="the whole backlog after the kill")
    logged = {r["job_id"] for r in await care.db.fetch(
        "SELECT job_id FROM notification_log WHERE user_id = $1 AND kind = 'reminder'", bulk)}
    assert logged == set(backlog)
    delivered = [r.headers["idempotency-key"]
                 for r in care.receiver.received("/push/token-bulk", ok_only=True)]
    assert set(delivered) == set(backlog) | {alert_job}
    assert await care.count("SELECT count(*) FROM notification_log") == len(sent) + 1 + 110 + 1
    # The alert overtook the backlog: only reminders already running when it
    # was added (at most a fetch per half of the 5 slots) were sent before it.
    ahead = await care.count(
        routine + " AND sent_at < (SELECT sent_at FROM notification_log WHERE job_id = $2)",
        bulk, alert_job)
    assert ahead - before_alert <= 2 * tasks.CONCURRENCY[REMINDERS]
    assert 110 - ahead > 50, "most of the backlog was sent after the urgent alert"
    # removeOnComplete: 100, removeOnFail: false.
    counts = await reminders.get_job_counts()
    assert counts["completed"] == 100 and counts["failed"] == 1
    assert counts["active"] == counts["waiting"] == counts["prioritized"] == 0
