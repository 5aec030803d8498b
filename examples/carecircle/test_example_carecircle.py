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
import signal
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
from examples.support import (
    HttpReceiver,
    Services,
    WorkerProcess,
    dashboard_screenshot,
    serve_app,
    wait_until,
)

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
    def receiver(self) -> HttpReceiver:
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
    # A killed worker's jobs come back in seconds, not a minute (a lock much
    # shorter than 3 s lapses under a loaded 2-core machine's scheduling).
    env = {**started.env(), "CARECIRCLE_LOCK_MS": "3000", "CARECIRCLE_STALLED_MS": "1000"}
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


async def in_state(job_id: str, wanted: str, queue: str = REMINDERS) -> bool:
    """Whether the job ``job_id`` of ``queue`` is in state ``wanted``."""
    job = await app.queue(queue).get_job(job_id)
    return job is not None and await job.get_state() == wanted


async def test_example_carecircle_reminders_at_local_time_urgent_lane_retries_and_kill(
        care: Care) -> None:
    """Per-user schedules in their own time zones (checked against zoneinfo,
    then fired by promoting each scheduler's pending job), guard clauses,
    retries with the failures recorded by the worker's listener, the failed
    set kept, a snooze (a delayed job, promoted), the every-5-minutes
    missed-dose check (its pending job promoted), an urgent alert overtaking a
    backlog of 110 routine reminders, a worker SIGKILLed mid-backlog, and
    retention of the newest 100."""
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
        await wait_until(lambda n=attempt: care.counts(  # type: ignore[misc]
            n, "SELECT count(*) FROM job_failures WHERE job_id = $1", flaky_id),
            what=f"failed attempt {attempt}")
        await wait_until(lambda: in_state(flaky_id, "delayed"),
                         what="the retry to wait its backoff")
        retry = await reminders.get_job(flaky_id)
        assert retry is not None
        await retry.promote()
    await wait_until(lambda: in_state(flaky_id, "completed"), what="the third attempt")
    failures = await care.db.fetch(
        "SELECT job_id, attempt, final FROM job_failures ORDER BY id")
    assert {(r["job_id"], r["attempt"], r["final"]) for r in failures} == {
        (flaky_id, 1, False), (flaky_id, 2, False), (gone_id, 1, True)}
    assert await care.count("SELECT count(*) FROM notification_log WHERE job_id = $1",
                            flaky_id) == 1

    # Guard clause: a reminder of a medication that is gone sends nothing.
    ghost = await tasks.send_reminder.enqueue(medication_id=999_999, user_id=ada)
    assert await ghost.wait_until_finished(timeout=20) == {"skipped": "not_found"}

    # "Remind me in 15 minutes" is a delayed job (promoted here, not waited for).
    snoozed = await care.http.post(f"/reminders/{fired[(insulin, '07:30')]}/snooze",
                                   json={"minutes": 15})
    assert snoozed.status_code == 201
    snooze = await reminders.get_job(snoozed.json()["job_id"])
    assert snooze is not None and snooze.opts.delay == 15 * 60_000
    assert await snooze.get_state() == "delayed"
    await snooze.promote()
    assert (await snooze.wait_until_finished(timeout=20))["success"] is True

    # Every 5 minutes, a reminder not confirmed within 30 minutes becomes an
    # urgent alert. The reminders are made 31 minutes old in the database and
    # the schedule's pending job is promoted instead of waiting 5 minutes.
    assert (await care.http.post(f"/reminders/{fired[(metformin, '20:00')]}/taken")
            ).status_code == 200
    await care.db.execute("UPDATE notification_log SET sent_at = sent_at - interval '31 min'"
                          " WHERE job_id = ANY($1)", list(fired.values()))
    missed_doses = await reminders.get_job_scheduler("missed-doses")
    assert missed_doses is not None and missed_doses.every == 5 * 60_000
    await (await pending_job("missed-doses")).promote()
    escalated = ("SELECT count(*) FROM alerts a JOIN notification_log n ON n.alert_id = a.id"
                 " WHERE a.reminder_job_id IS NOT NULL")
    await wait_until(lambda: care.counts(4, escalated), what="missed-dose alerts")
    missed = {fired[(metformin, "08:00")], fired[(lisinopril, "08:00")],
              fired[(insulin, "07:30")], flaky_id}
    assert {r["reminder_job_id"] for r in await care.db.fetch(
        "SELECT reminder_job_id FROM alerts")} == missed
    urgent_tokens = sorted(r.path for r in care.receiver.received("/push/", ok_only=True)
                           if r.json()["urgent"])
    assert urgent_tokens == sorted(
        f"/push/token-{t}" for t in ("ada", "grace", "kiran", "flaky"))

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
    alert = await care.http.post("/alerts", json={"user_id": bulk, "message": "Bea fell"})
    assert alert.status_code == 201
    before_alert = await care.count(routine, bulk)  # the alert's job exists by now
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
    # The reminders, the flaky one, the snoozed one, 4 missed-dose alerts, the backlog, Bea's.
    assert await care.count("SELECT count(*) FROM notification_log") == (
        len(sent) + 1 + 1 + 4 + 110 + 1)
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


def letter(seed: int, size: int = 600_000) -> bytes:
    """A document's bytes: text, different per seed."""
    words = [f"dose{seed}", "tablet", "morning", "evening", "kidney", "review", "mg", "daily"]
    out = bytearray()
    i = seed
    while len(out) < size:
        out += words[i % len(words)].encode() + (b"\n" if i % 11 == 0 else b" ")
        i = (i * 7 + 3) % 1_000_003
    return bytes(out[:size])


async def document_status(care: Care, doc_id: int, wanted: str) -> bool:
    """Whether a document reached status ``wanted``."""
    status: str | None = await care.db.fetchval(
        "SELECT status FROM documents WHERE id = $1", doc_id)
    return status == wanted


async def upload(care: Care, user_id: int, name: str, content: bytes) -> tuple[int, str]:
    response = await care.http.post(
        "/documents", params={"user_id": user_id, "filename": name}, content=content,
        headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["job_id"]


async def test_example_carecircle_documents_off_the_loop_graceful_shutdown_and_kill(
        care: Care, tmp_path: Path) -> None:
    """An uploaded document stays in PostgreSQL and its job carries the id;
    the CPU-heavy analysis runs in a sandboxed child while the same worker's
    event loop keeps sending reminders (and renewing the job's lock); a
    SIGTERM lets a running analysis finish and exits 0; a SIGKILL mid-analysis
    makes the job run again in the next worker; each owner gets one e-mail per
    document. Ends with the dashboard screenshot. Nothing here is scheduled."""
    documents = app.queue(DOCUMENTS)
    ada = await care.user("Ada", "Europe/Berlin", "token-ada")
    metformin = await care.medication(ada, "Metformin", ["08:00"])
    # a is big enough that its analysis lasts well beyond a reminder's round trip.
    contents = {"a.txt": letter(0, 1_500_000), "b.txt": letter(1), "c.txt": letter(2)}

    # Large payloads stay out of jobs: the job has the id; the bytes cannot go in.
    doc_a, job_a = await upload(care, ada, "a.txt", contents["a.txt"])
    job = await documents.get_job(job_a)
    assert job is not None and job.data == {"document_id": doc_a}
    with pytest.raises(ValidationError):
        # (1.5 MB: over the 1 MiB conveyor takes in a job)
        await documents.add("process_document", {"file": contents["a.txt"].decode()})

    # CPU-heavy work off the event loop: reminders keep flowing during the analysis.
    worker = care.start_worker()
    await wait_until(lambda: document_status(care, doc_a, "processing"), what="analysis of a")
    await app.queue(REMINDERS).add_bulk([
        {"name": tasks.send_reminder.name, "data": {"medication_id": metformin, "user_id": ada},
         **tasks.REMINDER_OPTIONS} for _ in range(20)])
    await wait_until(lambda: in_state(job_a, "completed", DOCUMENTS), what="a processed")
    job = await documents.get_job(job_a)
    assert job is not None and job.progress == 100
    during = await care.count(
        "SELECT count(*) FROM notification_log n, documents d WHERE d.id = $1"
        " AND n.sent_at BETWEEN d.started_at AND d.processed_at", doc_a)
    assert during > 0, "the worker's loop sent reminders while the analysis ran"
    assert await care.count("SELECT runs FROM documents WHERE id = $1", doc_a) == 1

    # Graceful shutdown: SIGTERM while b is being analysed; it finishes, exit 0.
    doc_b, job_b = await upload(care, ada, "b.txt", contents["b.txt"])
    await wait_until(lambda: document_status(care, doc_b, "processing"), what="analysis of b")
    assert await asyncio.to_thread(worker.stop) == 0
    assert await document_status(care, doc_b, "processed")
    finished = await documents.get_job(job_b)
    assert finished is not None and await finished.get_state() == "completed"
    assert finished.attempts_made == 1

    # SIGKILL while c is being analysed: the next worker runs it again.
    care.start_worker()
    doc_c, job_c = await upload(care, ada, "c.txt", contents["c.txt"])
    await wait_until(lambda: document_status(care, doc_c, "processing"), what="analysis of c")
    care.workers[-1].kill()
    assert await document_status(care, doc_c, "processing")
    care.start_worker()
    await wait_until(lambda: in_state(job_c, "completed", DOCUMENTS), what="c re-run")
    rerun = await documents.get_job(job_c)
    assert rerun is not None and rerun.stalled_count == 1

    # The end state: each document analysed right, c twice (the kill), one e-mail each.
    rows = {r["filename"]: r for r in await care.db.fetch("SELECT * FROM documents")}
    for name, content in contents.items():
        assert rows[name]["sha256"] == hashlib.sha256(content).hexdigest()
        assert rows[name]["words"] == len(content.split())
    # c's analysis ran again after the kill, unless the killed worker's child
    # finished it first (it notices its parent's death within a second); then
    # the re-run found it done. Either way it is analysed once, right.
    assert [rows[n]["runs"] for n in ("a.txt", "b.txt")] == [1, 1]
    assert rows["c.txt"]["runs"] in (1, 2) and rows["c.txt"]["status"] == "processed"
    smtp = care.services.smtp
    assert smtp is not None
    await wait_until(lambda: care.counts(3, "SELECT count(*) FROM email_log"),
                     what="three e-mails")
    assert sorted(m.subject for m in smtp.to("ada@example.com")) == [
        f"Your document {n} is ready" for n in ("a.txt", "b.txt", "c.txt")]
    assert await care.count("SELECT count(*) FROM notification_log") == 20
    await wait_until(all_done, what="every queue drained")
    assert len(smtp.messages) == 3
    for name in (DOCUMENTS, EMAIL, REMINDERS):
        assert (await app.queue(name).get_job_counts())["failed"] == 0, name

    await screenshot(care, tmp_path)


async def all_done() -> bool:
    """Whether no job of CareCircle waits or runs (a scheduler's next job is delayed)."""
    for name in QUEUES:
        counts = await app.queue(name).get_job_counts()
        if any(counts[s] for s in ("waiting", "active", "prioritized")):
            return False
    return True


async def screenshot(care: Care, tmp_path: Path) -> None:
    """The dashboard, with CareCircle's queues on it (copied into the example's
    folder with CONVEYOR_UPDATE_SCREENSHOTS=1)."""
    server, task = await serve_app(
        create_app(care.services.redis_url, queues=list(QUEUES)), port := free_port())
    try:
        png = tmp_path / "dashboard.png"
        names = "".join(f':has-text("{name}")' for name in QUEUES)
        await asyncio.to_thread(dashboard_screenshot, f"http://127.0.0.1:{port}/", png,
                                wait_for=f"body{names}")
        assert png.stat().st_size > 10_000
    finally:
        server.should_exit = True
        await task
    if os.environ.get("CONVEYOR_UPDATE_SCREENSHOTS") == "1":
        (HERE / "dashboard.png").write_bytes(png.read_bytes())


def test_example_carecircle_command_starts_prints_urls_and_stops(
        database_url: str, tmp_path: Path) -> None:
    """``python -m examples.carecircle --seconds N`` runs everything, prints its
    URLs and exits 0 (its worker stopped by SIGTERM). It uses the session's
    PostgreSQL through DATABASE_URL (without it, it starts a server of its own)."""
    env = {**os.environ, "DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        command = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "examples.carecircle", "--seconds", "3"],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        try:
            code = command.wait(60)
        except subprocess.TimeoutExpired:
            command.send_signal(signal.SIGABRT)  # faulthandler prints where it hangs
            command.wait()
            pytest.fail(f"the command did not stop:\n{out.read_text()}\n{err.read_text()}")
    printed = out.read_text()
    assert code == 0, err.read_text()
    assert "carecircle: http://127.0.0.1:" in printed
    assert "dashboard:  http://127.0.0.1:" in printed
    assert "stopped (worker exit code 0)" in printed
