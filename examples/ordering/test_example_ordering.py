"""End-to-end tests of the ordering platform: a real Redis, PostgreSQL, worker
processes (one killed with SIGKILL while jobs are in flight), an HTTP receiver
standing in for the WhatsApp API, the order endpoints and the seed's
``/api/v1/queue/*`` monitoring endpoints, driven as the seed documents them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from conveyor import JobStateError, Queue
from conveyor.embedded import free_port
from examples.ordering.__main__ import worker_process
from examples.ordering.db import apply_schema
from examples.ordering.scheduler import SCHEDULES
from examples.ordering.tasks import TZ, JobType, add_job, app
from examples.ordering.web import create_web, queue_names
from examples.support import Services, dashboard_screenshot, serve_app, wait_until

HERE = Path(__file__).parent
SEED_KEYS = {"queueName", "waiting", "active", "completed", "failed", "delayed", "total"}
COUNT_KEYS = SEED_KEYS - {"queueName"}
PROVIDER = "/whatsapp/messages/"
DOOMED = "+9779800000999"  # the provider always answers 500 for this number
FLAKY = "+9779800000777"  # the provider fails the first message to it


async def seed_rows(conn: Any) -> None:
    """Vendors, biddings, a confirmation past its deadline, credit accounts, invoices."""
    await conn.executemany("INSERT INTO vendors (id, zone, phone) VALUES ($1, $2, $3)", [
        ("v-ktm-1", "kathmandu", "+9779800000101"), ("v-ktm-2", "kathmandu", "+9779800000102"),
        ("v-pkr-1", "pokhara", "+9779800000201")])
    await conn.execute("""
        INSERT INTO biddings (id, order_id, closes_at) VALUES
            ('bd-1', 'o-x', now() - interval '1 minute'),
            ('bd-2', 'o-y', now() - interval '1 minute'),
            ('bd-3', 'o-z', now() + interval '1 hour');
        INSERT INTO biddings (id, order_id, closes_at, status, winner, winning_amount) VALUES
            ('bd-4', 'o-w', now() - interval '1 hour', 'awarded', 'w-c', 300);
        INSERT INTO bids VALUES ('bd-1', 'w-a', '+9779811111001', 500),
            ('bd-1', 'w-b', '+9779811111002', 450), ('bd-3', 'w-a', '+9779811111001', 100),
            ('bd-4', 'w-c', '+9779811111003', 300), ('bd-4', 'w-d', '+9779811111004', 320);
        INSERT INTO wholesaler_confirmations (bidding_id, wholesaler, deadline) VALUES
            ('bd-4', 'w-c', now() - interval '1 minute');
        INSERT INTO credit_accounts VALUES ('+9779822222001', 100), ('+9779822222002', 999),
            ('+9779822222003', 10);
        INSERT INTO credit_ledger (customer_phone, amount) VALUES ('+9779822222001', 60),
            ('+9779822222001', 40), ('+9779822222002', 50);
    """)
    await conn.execute("""
        INSERT INTO invoices (id, customer_phone, amount, due_date, paid, reminded_on) VALUES
            ('inv-1', '+9779833333001', 1500, (now() AT TIME ZONE $1)::date - 3, false, NULL),
            ('inv-2', '+9779833333002', 700, (now() AT TIME ZONE $1)::date - 3, true, NULL),
            ('inv-3', '+9779833333003', 900, (now() AT TIME ZONE $1)::date + 3, false, NULL),
            ('inv-4', '+9779833333004', 200, (now() AT TIME ZONE $1)::date - 9, false,
             (now() AT TIME ZONE $1)::date)
    """, TZ)


async def run_schedule_now(job_type: JobType) -> Any:
    """Promote the delayed job a schedule made for its next slot (midnight, 2 AM,
    9 AM or the next even minute), so it runs now; its return value.

    The slot may come by itself while the test runs (an even minute does, one
    time in a few): the job then runs anyway, and a run before this one may
    have done its work already, so the callers check PostgreSQL, which ends
    the same either way, rather than what this run returns."""
    async with Queue(job_type.value, connection=app.connection) as queue:
        scheduler = await queue.get_job_scheduler(job_type.value)
        assert scheduler is not None and scheduler.next_run is not None
        job = await queue.get_job(
            f"sched-{scheduler.id}-{int(scheduler.next_run.timestamp() * 1000)}")
        assert job is not None
        with contextlib.suppress(JobStateError):  # its slot came: it is running already
            await job.promote()
        return await job.wait_until_finished(timeout=20)


async def test_example_ordering_end_to_end(services: Callable[..., Services],
                                           tmp_path: Path) -> None:
    """Orders expire, are confirmed or fall back to the next vendor; WhatsApp
    messages retry with exponential backoff; a worker is SIGKILLed while messages
    are in flight and PostgreSQL still holds each message exactly once; jobs that
    fail for good reach ``{queueName}-dlq``; then each seed endpoint is driven:
    metrics, per-queue metrics, dead letters, retry, clean with ``{"limit": 100}``
    and the dashboard's health.

    Schedules are tested without waiting: the test promotes the delayed job each
    scheduler made for its next slot (midnight, 2 AM, 9 AM, the next 2-minute
    mark), which runs it now."""
    s = services(http=True)
    assert s.http is not None
    receiver = s.http
    await apply_schema(s.database_url)
    db = await asyncpg.connect(s.database_url)
    log = tmp_path / "worker.log"
    workers = [worker_process(s.env(), log).start()]
    port = free_port()
    server, serving = await serve_app(create_web(s.redis_url), port)
    base = f"http://127.0.0.1:{port}"
    try:
        await seed_rows(db)
        async with httpx.AsyncClient(base_url=base, timeout=20) as api:
            await check_schedules()
            messages = await send_messages_and_kill_a_worker(db, receiver, workers, s.env(), log)
            orders = await place_orders(api, db)
            await check_scheduled_jobs(db)
            await check_whatsapp(db, receiver, messages, orders)
            await check_endpoints(api, db, orders, base, tmp_path)
        # worker.js's event logging: each outcome is a log line of the worker process
        lines = log.read_text()
        flaky = f"job {messages[-2]} (send_whatsapp_message) of whatsapp-message-send"
        assert f"{flaky} failed (attempt 1, 2 left)" in lines
        assert f"{flaky} completed" in lines
        assert (f"job {messages[-1]} (send_whatsapp_message) of whatsapp-message-send failed "
                "(attempt 3, to the dead-letter queue)") in lines
        assert "of vendor-fallback failed (attempt 1, 1 left)" in lines
        # the killed worker's messages were in flight: the next worker found them stalled
        assert "stalled (its worker stopped renewing the lock)" in lines
    finally:
        server.should_exit = True
        await serving
        for worker in workers:
            worker.kill()
        await db.close()
        await app.close()


async def check_schedules() -> None:
    """The worker upserted the seed's five schedules with their cron patterns."""
    async def upserted() -> bool:
        for job_type, _, _ in SCHEDULES:
            async with Queue(job_type.value, connection=app.connection) as queue:
                if await queue.get_job_scheduler(job_type.value) is None:
                    return False
        return True

    await wait_until(upserted, what="the worker's schedules")
    found = {}
    for job_type, _, _ in SCHEDULES:
        async with Queue(job_type.value, connection=app.connection) as queue:
            scheduler = await queue.get_job_scheduler(job_type.value)
            assert scheduler is not None and scheduler.tz == TZ
            found[job_type] = (scheduler.cron, scheduler.data, scheduler.opts.attempts)
    assert found == {
        JobType.DAILY_REPORTS: ("0 0 * * *", {"report_type": "all"}, 3),
        JobType.CREDIT_RECONCILIATION: ("0 2 * * *", {}, 3),
        JobType.BIDDING_TIMEOUT: ("*/2 * * * *", {}, 3),
        JobType.WHOLESALER_CONFIRMATION_TIMEOUT: ("*/2 * * * *", {}, 3),
        JobType.PAYMENT_REMINDERS: ("0 9 * * *", {}, 3),
    }


async def send_messages_and_kill_a_worker(db: Any, receiver: Any, workers: list[Any],
                                          env: dict[str, str], log: Path) -> list[str]:
    """20 messages through a slow provider; SIGKILL the worker mid-way and start
    another; then a message the provider fails once and one it always fails."""
    receiver.behave(PROVIDER, delay=0.2)
    receiver.behave(PROVIDER + FLAKY, fail_first=1)
    receiver.behave(PROVIDER + DOOMED, status=500)
    ids = [(await add_job(JobType.WHATSAPP_MESSAGE_SEND,
                          {"phone_number": f"+97798100000{n:02d}", "message": f"Hello {n}!"})).id
           for n in range(20)]
    async with Queue(JobType.WHATSAPP_MESSAGE_SEND.value, connection=app.connection) as queue:
        async def in_flight() -> bool:
            sent = await db.fetchval("SELECT count(*) FROM whatsapp_messages")
            return bool(sent >= 3 and (await queue.get_job_counts())["active"] > 0)

        await wait_until(in_flight, what="messages in flight")
        workers[0].kill()
    workers.append(worker_process(env, log).start())
    flaky = await add_job(JobType.WHATSAPP_MESSAGE_SEND,
                          {"phone_number": FLAKY, "message": "Your order is on its way."})
    doomed = await add_job(JobType.WHATSAPP_MESSAGE_SEND,
                           {"phone_number": DOOMED, "message": "Hello?"})
    return [*ids, flaky.id, doomed.id]


async def place_orders(api: httpx.AsyncClient, db: Any) -> dict[str, str]:
    """Four orders that expire in 1 s (two confirmed first), one rejected in
    Kathmandu (falls back to the second vendor), one rejected in Pokhara (no
    vendor left: two attempts 5 s apart, then a dead letter)."""
    orders: dict[str, str] = {}
    for key, zone, amount, expires in [
            ("a1", "kathmandu", 100, 1000), ("a2", "kathmandu", 200, 1000),
            ("a3", "kathmandu", 300, 1000), ("a4", "pokhara", 400, 1000),
            ("b1", "kathmandu", 500, 600_000), ("c1", "pokhara", 600, 600_000)]:
        r = await api.post("/api/v1/orders", json={
            "customer_phone": f"+97798440000{len(orders):02d}", "zone": zone, "amount": amount,
            "expires_in_ms": expires})
        assert r.status_code == 201, r.text
        orders[key] = r.json()["data"]["id"]
    for key in ("a1", "a2"):
        r = await api.post(f"/api/v1/orders/{orders[key]}/confirm")
        assert r.json() == {"success": True, "data": {"id": orders[key], "status": "confirmed"}}
    for key, vendor in (("b1", "v-ktm-1"), ("c1", "v-pkr-1")):
        r = await api.post(f"/api/v1/orders/{orders[key]}/reject", json={"vendor_id": vendor})
        assert r.json()["data"]["jobId"] == f"fallback-{orders[key]}-{vendor}"

    async def settled() -> bool:
        rows = await db.fetch("SELECT id, status FROM orders WHERE id = ANY($1)",
                              [orders[k] for k in ("a1", "a2", "a3", "a4")])
        return sorted(r["status"] for r in rows) == ["confirmed", "confirmed", "expired",
                                                     "expired"]

    await wait_until(settled, what="orders expired")
    assert await db.fetchval("SELECT status FROM orders WHERE id = $1", orders["a3"]) == "expired"
    await wait_until(lambda: vendor_of(db, orders["b1"], "v-ktm-2"), what="vendor fallback")
    return orders


async def vendor_of(db: Any, order_id: str, vendor: str) -> bool:
    """Whether the order is now offered to ``vendor``."""
    return bool(await db.fetchval("SELECT vendor_id = $2 FROM orders WHERE id = $1",
                                  order_id, vendor))


async def check_scheduled_jobs(db: Any) -> None:
    """Each schedule's job, run now, leaves exactly its effect in PostgreSQL."""
    await run_schedule_now(JobType.BIDDING_TIMEOUT)
    assert [tuple(r) for r in await db.fetch(
        "SELECT id, status, winner, winning_amount FROM biddings ORDER BY id")] == [
        ("bd-1", "awarded", "w-b", Decimal(450)), ("bd-2", "no_bids", None, None),
        ("bd-3", "open", None, None), ("bd-4", "awarded", "w-c", Decimal(300))]
    await run_schedule_now(JobType.WHOLESALER_CONFIRMATION_TIMEOUT)
    assert [tuple(r) for r in await db.fetch(
        "SELECT bidding_id, wholesaler, status FROM wholesaler_confirmations ORDER BY 1, 2")] == [
        ("bd-1", "w-b", "pending"), ("bd-4", "w-c", "timed_out"), ("bd-4", "w-d", "pending")]
    assert await db.fetchval("SELECT winner FROM biddings WHERE id = 'bd-4'") == "w-d"
    await run_schedule_now(JobType.CREDIT_RECONCILIATION)
    assert await db.fetchval("SELECT sum(accounts_fixed) FROM credit_reconciliations") == 2
    assert dict(await db.fetch("SELECT customer_phone, balance FROM credit_accounts")) == {
        "+9779822222001": 100, "+9779822222002": 50, "+9779822222003": 0}
    await run_schedule_now(JobType.PAYMENT_REMINDERS)
    assert dict(await db.fetch("SELECT id, reminded_on FROM invoices")) == {
        "inv-1": await local_today(db), "inv-2": None, "inv-3": None,
        "inv-4": await local_today(db)}
    # a second run the same day reminds nobody again (check_whatsapp: one message)
    assert await run_schedule_now(JobType.PAYMENT_REMINDERS) == {"reminded": 0}


async def check_whatsapp(db: Any, receiver: Any, messages: list[str],
                         orders: dict[str, str]) -> None:
    """Every message job is recorded exactly once, whatever the kill and the retries."""
    async with Queue(JobType.WHATSAPP_MESSAGE_SEND.value, connection=app.connection) as queue:
        async def done() -> bool:
            counts = await queue.get_job_counts()
            return (counts["failed"] == 1 and counts["waiting"] + counts["active"]
                    + counts["delayed"] == 0)

        await wait_until(done, what="messages sent")
        # WORKER_CONFIG: 5 at once per worker, and at most 10 starts a second per queue
        # (sliding window; started_on is Redis' clock, as the limiter's).
        assert {w.concurrency for w in await queue.get_workers()} == {5}
        starts = sorted([j.processed_on for j in await asyncio.gather(
            *(queue.get_job(i) for i in messages)) if j and j.processed_on])
        assert len(starts) == len(messages)
        # the seed's "clean up old jobs": a day of completed jobs, a week of failed ones
        job = await queue.get_job(messages[0])
        assert job is not None
        assert job.opts.remove_on_complete.to_json() == {"count": 1000, "age": 86_400}
        assert job.opts.remove_on_fail.to_json() == {"count": 5000, "age": 604_800}
        assert all(starts[i + 10] - starts[i] >= 1000 for i in range(len(starts) - 10))
    report = await run_schedule_now(JobType.DAILY_REPORTS)
    today = await db.fetchval("SELECT ((now() - interval '1 day') AT TIME ZONE $1)::date", TZ)
    assert report == {"report_type": "all", "report_date": today.isoformat(), "orders": 6,
                      "confirmed": 2, "expired": 2, "revenue": "300.00",
                      "messages_sent": 28}
    stored = await db.fetchrow("SELECT * FROM daily_reports")
    assert (stored["report_date"], stored["orders"], stored["revenue"]) == (today, 6, 300)
    expected_jobs = {
        *messages[:-1], f"order-expired-{orders['a3']}", f"order-expired-{orders['a4']}",
        f"vendor-offer-{orders['b1']}-v-ktm-2", "bid-won-bd-1-w-b", "confirm-timeout-bd-4-w-c",
        "bid-won-bd-4-w-d", f"payment-reminder-inv-1-{await local_today(db)}",
        f"daily-report-{today.isoformat()}-all",
    }

    async def all_sent() -> bool:
        return len(await db.fetch("SELECT 1 FROM whatsapp_messages")) == len(expected_jobs)

    await wait_until(all_sent, what="every message recorded")
    rows = await db.fetch("SELECT job_id, phone_number FROM whatsapp_messages")
    assert {r["job_id"] for r in rows} == expected_jobs
    assert {r["phone_number"] for r in rows} >= {"+9779811111002", "+9779811111003",
                                                 "+9779811111004", "+9779833333001"}
    # the provider saw the flaky number twice (a retry) and the doomed one three times
    assert [r.status for r in receiver.received(PROVIDER + FLAKY)] == [500, 200]
    assert [r.status for r in receiver.received(PROVIDER + DOOMED)] == [500, 500, 500]


async def local_today(db: Any) -> date:
    """Today in the schedules' time zone."""
    today: date = await db.fetchval("SELECT (now() AT TIME ZONE $1)::date", TZ)
    return today


async def check_endpoints(api: httpx.AsyncClient, db: Any, orders: dict[str, str], base: str,
                          tmp_path: Path) -> None:
    """The seed's monitoring endpoints, as its document drives them."""
    fallback_job = f"fallback-{orders['c1']}-v-pkr-1"
    async with Queue(JobType.VENDOR_FALLBACK.value, connection=app.connection) as queue:
        await wait_until(lambda: state_is(queue, fallback_job, "failed"), timeout=20,
                         what="the fallback without a vendor to fail twice")

    # GET /api/v1/queue/metrics: exactly the seed's shape, every queue, totals the sums.
    r = await api.get("/api/v1/queue/metrics")
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and set(body) == {"success", "data"}
    assert set(body["data"]) == {"queues", "totals"}
    queues = {q["queueName"]: q for q in body["data"]["queues"]}
    assert set(queues) == set(queue_names())
    # the seed's keys, in the seed's order
    assert all(list(q) == ["queueName", "waiting", "active", "completed", "failed", "delayed",
                           "total"] for q in queues.values())
    assert body["data"]["totals"] == {k: sum(q[k] for q in queues.values()) for k in COUNT_KEYS}
    whatsapp = queues["whatsapp-message-send"]
    assert (whatsapp["completed"], whatsapp["failed"], whatsapp["waiting"]) == (29, 1, 0)
    assert whatsapp["total"] == 30
    expiry = queues["order-expiry"]
    assert (expiry["completed"], expiry["delayed"], expiry["failed"]) == (4, 2, 0)

    # GET /api/v1/queue/metrics/:queueName
    r = await api.get("/api/v1/queue/metrics/vendor-fallback")
    one = r.json()["data"]
    assert set(one) >= SEED_KEYS and one["queueName"] == "vendor-fallback"
    # (the killed worker stays listed until its heartbeat entry lapses, 45 s)
    assert (one["completed"], one["failed"]) == (1, 1) and one["workers"] >= 1

    # GET /api/v1/queue/dead-letter/:queueName: what failed after all retries.
    r = await api.get("/api/v1/queue/dead-letter/vendor-fallback")
    dead = r.json()["data"]
    assert dead["total"] == 1 and dead["queueName"] == "vendor-fallback"
    assert dead["jobs"][0]["id"] == fallback_job and dead["jobs"][0]["attemptsMade"] == 2
    assert "no vendor left in zone 'pokhara'" in dead["jobs"][0]["failedReason"]
    r = await api.get("/api/v1/queue/dead-letter/whatsapp-message-send")
    dead = r.json()["data"]
    assert dead["total"] == 1 and dead["jobs"][0]["attemptsMade"] == 3
    # ... and each was copied into {queueName}-dlq, whose recorder kept it in PostgreSQL.
    await wait_until(lambda: count(db, "SELECT count(*) FROM dead_letters", 2),
                     what="dead letters recorded")
    assert sorted(tuple(r) for r in await db.fetch(
        "SELECT queue, job_id, attempts_made FROM dead_letters")) == [
        ("vendor-fallback", fallback_job, 2),
        ("whatsapp-message-send", dead["jobs"][0]["id"], 3)]
    assert queues["vendor-fallback-dlq"]["completed"] + queues["vendor-fallback-dlq"][
        "waiting"] + queues["vendor-fallback-dlq"]["active"] == 1

    # GET /api/v1/queue/dashboard: health, statistics, failed job alerts, performance.
    r = await api.get("/api/v1/queue/dashboard")
    board = r.json()["data"]
    assert set(board) == {"status", "queues", "statistics", "alerts", "performance"}
    health = {q["queueName"]: q for q in board["queues"]}
    assert health["vendor-fallback"]["status"] == "warning"
    assert "50% of jobs failed" in health["vendor-fallback"]["reasons"][0]
    assert health["order-expiry"] == {"queueName": "order-expiry", "status": "ok",
                                      "reasons": []}
    assert board["status"] == "warning"
    assert {(a["queueName"], a["jobId"]) for a in board["alerts"]} == {
        ("vendor-fallback", fallback_job), ("whatsapp-message-send", dead["jobs"][0]["id"])}
    assert board["statistics"]["totals"]["failed"] == 2
    assert {p["queueName"] for p in board["performance"]} == set(queue_names())

    await take_screenshot(base, tmp_path)

    # POST /api/v1/queue/retry/:queueName/:jobId once a vendor is back in Pokhara.
    await db.execute("INSERT INTO vendors VALUES ('v-pkr-2', 'pokhara', '+9779800000202')")
    r = await api.post(f"/api/v1/queue/retry/vendor-fallback/{fallback_job}")
    assert r.status_code == 200
    retried = r.json()
    assert retried["success"] is True
    assert (retried["data"]["queueName"], retried["data"]["jobId"]) == ("vendor-fallback",
                                                                       fallback_job)
    await wait_until(lambda: vendor_of(db, orders["c1"], "v-pkr-2"), what="the retried fallback")
    r = await api.get("/api/v1/queue/dead-letter/vendor-fallback")
    assert r.json()["data"]["total"] == 0
    offer = f"vendor-offer-{orders['c1']}-v-pkr-2"
    await wait_until(lambda: count(db, "SELECT count(*) FROM whatsapp_messages WHERE job_id = $1",
                                   1, offer), what="the new vendor told")

    # POST /api/v1/queue/clean/:queueName with {"limit": 100}: the failed jobs go.
    r = await api.post("/api/v1/queue/clean/whatsapp-message-send", json={"limit": 100})
    assert r.json() == {"success": True,
                        "data": {"queueName": "whatsapp-message-send", "removed": 1}}
    r = await api.get("/api/v1/queue/dead-letter/whatsapp-message-send")
    assert r.json()["data"]["total"] == 0
    r = await api.get("/api/v1/queue/metrics/whatsapp-message-send")
    assert r.json()["data"]["failed"] == 0
    # PostgreSQL: every order where it belongs.
    assert dict(await db.fetch("SELECT id, status FROM orders")) == {
        orders["a1"]: "confirmed", orders["a2"]: "confirmed", orders["a3"]: "expired",
        orders["a4"]: "expired", orders["b1"]: "pending", orders["c1"]: "pending"}


async def state_is(queue: Queue, job_id: str, state: str) -> bool:
    """Whether the job is in ``state``."""
    job = await queue.get_job(job_id)
    return job is not None and await job.get_state() == state


async def count(db: Any, sql: str, expected: int, *args: Any) -> bool:
    """Whether the query counts ``expected``."""
    return bool(await db.fetchval(sql, *args) == expected)


async def take_screenshot(base: str, tmp_path: Path) -> None:
    """The dashboard, once every queue's name shows on the page."""
    shot = tmp_path / "dashboard.png"
    wait_for = "body" + "".join(f':has-text("{name}")' for name in queue_names())
    await asyncio.to_thread(dashboard_screenshot, base + "/", shot, wait_for=wait_for)
    assert shot.stat().st_size > 10_000
    if os.environ.get("CONVEYOR_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, HERE / "dashboard.png")


async def test_example_ordering_command_runs_and_stops(database_url: str) -> None:
    """``python -m examples.ordering --seconds 2`` starts everything, prints its
    URLs, serves the seed's metrics endpoint, and exits 0 by itself."""
    env = {**os.environ, "DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.ordering", "--seconds", "2", cwd=HERE.parents[1],
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("orders:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "the command ended before printing its URLs"
            lines.append(line.strip())
        urls = dict(line.split(None, 1) for line in lines
                    if line.startswith(("dashboard", "metrics")))
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(urls["metrics:"])
            assert r.json()["success"] is True
            assert {q["queueName"] for q in r.json()["data"]["queues"]} == set(queue_names())
            assert (await client.get(urls["dashboard:"])).status_code == 200
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    assert "stopped (worker exit code 0)" in out.decode()
