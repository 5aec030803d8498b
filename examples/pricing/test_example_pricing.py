"""End-to-end tests of the pricing platform (seed 003): real Redis, PostgreSQL,
worker processes, HTTP receiver and browser; nothing mocked.

The seed has no schedule (no cron or repeat job), so nothing here waits for a
clock; the one delayed job (an ingestion delayed a minute) is promoted.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from conveyor import Queue, QueueEvents
from conveyor.embedded import free_port
from examples.pricing.__main__ import add_tenant, workers_process
from examples.pricing.db import apply_schema
from examples.pricing.queue import (
    clean_old_jobs,
    enqueue_report,
    get_all_queue_metrics,
    queue_depth_warnings,
)
from examples.pricing.tasks import QUEUES, app, backoff
from examples.pricing.web import create_web_app
from examples.pricing.webhooks import verify_signature
from examples.support import Services, dashboard_screenshot, serve_app, wait_until

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
TOKEN = "pricing-test-token"
SECRETS = {"tenant-a": "secret-a", "tenant-b": "secret-b", "tenant-c": "secret-c"}
#: tenant -> batch ids; every batch has three contract lines on WTI as of 2024-01-15.
BATCHES = {"tenant-a": ["b1", "b2", "b3", "b4"], "tenant-b": ["b1", "b2"],
           "tenant-c": ["b1", "b2"]}
#: WTI as ingested: a preliminary and a final value for the 15th (the final one counts).
WTI = {"tenant-a": (Decimal("72.68"), Decimal("71.00")),
       "tenant-b": (Decimal("80.10"), Decimal("79.00")),
       "tenant-c": (Decimal("65.55"), Decimal("66.00"))}


def _items(tenant: str, batch: str) -> list[tuple[str, Decimal, Decimal]]:
    """(contract, base price, base index) of a batch's lines."""
    n = int(batch[1:])
    return [(f"{tenant}-{batch}-c{k}", Decimal(100 + 10 * n + k), Decimal("70.00") + k)
            for k in range(3)]


async def _seed(database_url: str, receiver: str) -> None:
    for tenant, secret in SECRETS.items():
        await add_tenant(database_url, tenant, f"{receiver}/webhooks/{tenant}", secret)
    conn = await asyncpg.connect(database_url)
    try:
        for tenant, batches in BATCHES.items():
            for batch in batches:
                await conn.execute(
                    "INSERT INTO calc_batches (tenant_id, batch_id, series_code, as_of_date) "
                    "VALUES ($1, $2, 'WTI', '2024-01-15')", tenant, batch)
                await conn.executemany(
                    "INSERT INTO calc_items VALUES ($1, $2, $3, $4, $5)",
                    [(tenant, batch, *item) for item in _items(tenant, batch)])
    finally:
        await conn.close()


async def _collect_events(queue: str, into: list[dict[str, Any]]) -> None:
    async with QueueEvents(queue, connection=os.environ["CONVEYOR_REDIS_URL"]) as stream:
        async for event in stream:
            into.append(event)


async def test_example_pricing_end_to_end(services: Callable[..., Services], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingestion (one delayed a minute, then promoted), seven calculation batches
    (one at priority 100, one enqueued twice under ``calc-<tenant>-<batch>``)
    while the calculation queue is paused, then resumed; the workers' process is
    SIGKILLed while calculations run and started again. Webhooks are signed and
    reach the receiver: tenant-b's endpoint fails twice (retried), tenant-c's
    always (5 attempts, then the failed set, fixed and retried by the API).
    Reports in CSV and PDF; status, metrics and worker-status endpoints; the
    webhook rate limit; the workers' log lines and Prometheus metrics; the
    dashboard screenshot. PostgreSQL's end state is checked to the row."""
    svc = services(http=True)
    assert svc.http is not None
    receiver = svc.http
    env = {**svc.env(), "PRICING_API_TOKEN": TOKEN, "PRICING_BACKOFF_MS": "20",
           "PRICING_LOCK_MS": "2000", "PRICING_STALLED_MS": "1000", "PRICING_STEP_MS": "150",
           "PRICING_WEBHOOK_LIMIT": "4/1000", "PRICING_METRICS_PORT": str(free_port())}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    await apply_schema(svc.database_url)
    await _seed(svc.database_url, receiver.url)
    receiver.behave("/webhooks/tenant-b", fail_first=2)
    receiver.behave("/webhooks/tenant-c", status=500)

    port = free_port()
    server, serving = await serve_app(create_web_app(TOKEN), port)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=10)
    log_file = tmp_path / "workers.log"
    workers = workers_process(env, log_file).start()
    events: list[dict[str, Any]] = []
    webhook_events: list[dict[str, Any]] = []
    listeners = [asyncio.create_task(_collect_events("calculation", events)),
                 asyncio.create_task(_collect_events("webhooks", webhook_events))]
    calc = Queue("calculation", os.environ["CONVEYOR_REDIS_URL"])
    webhooks_q = Queue("webhooks", os.environ["CONVEYOR_REDIS_URL"])
    try:
        async def status(queue: str, job_id: str) -> dict[str, Any]:
            response = await http.get(f"/api/jobs/{queue}/{job_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        async def worker_status() -> dict[str, dict[str, Any]]:
            response = await http.get("/api/jobs/workers")
            return {w["name"]: w for w in response.json()["workers"]}

        # Worker status: every queue served; the calculation queue paused.
        assert (await http.post("/api/jobs/calculation/pause")).json()["paused"] is True
        await wait_until(lambda: _all_running(worker_status), what="a worker per queue")
        assert {name: (w["isRunning"], w["isPaused"])
                for name, w in (await worker_status()).items()} == {
            "ingestion": (True, False), "calculation": (True, True),
            "webhooks": (True, False), "reports": (True, False)}

        # Ingestion: preliminary and final values; a duplicate adds nothing;
        # a delayed one (a minute) waits until promoted.
        ingestion_ids = []
        for tenant, (prelim, final) in WTI.items():
            for tag, index in (("prelim", prelim), ("final", final)):
                body = {"tenantId": tenant, "seriesCode": "WTI", "asOfDate": "2024-01-15",
                        "versionTag": tag, "source": "csv",
                        "data": [{"date": "2024-01-14", "value": 60.0},
                                 {"date": "2024-01-15", "value": float(index)}]}
                response = await http.post("/api/ingestions", json=body)
                assert response.status_code == 202
                ingestion_ids.append(response.json()["jobId"])
        again = await http.post("/api/ingestions", json=body)
        assert again.json()["jobId"] == ingestion_ids[-1] == "ingest-tenant-c-WTI-2024-01-15-final"
        delayed = (await http.post("/api/ingestions", json={
            "tenantId": "tenant-a", "seriesCode": "BRENT", "asOfDate": "2024-01-15",
            "versionTag": "final", "source": "api", "delay": 60_000,
            "data": [{"date": "2024-01-15", "value": 77.5}]})).json()["jobId"]
        assert (await status("ingestion", delayed))["state"] == "delayed"
        for job_id in ingestion_ids:
            await wait_until(partial(_state_is, status, "ingestion", job_id, "completed"),
                             what=f"ingestion {job_id}")
        ingestion = Queue("ingestion", os.environ["CONVEYOR_REDIS_URL"])
        promoted = await ingestion.get_job(delayed)
        assert promoted is not None
        await promoted.promote()
        await wait_until(lambda: _state_is(status, "ingestion", delayed, "completed"),
                         what="the promoted ingestion")
        await ingestion.close()

        # Calculations, enqueued while paused: tenant-b/b2 last but at priority 100;
        # tenant-a/b1 twice under its job id.
        calc_ids = []
        for tenant, batches in BATCHES.items():
            for batch in batches:
                if (tenant, batch) == ("tenant-b", "b2"):
                    continue
                response = await http.post("/api/calculations",
                                           json={"tenantId": tenant, "batchId": batch})
                calc_ids.append(response.json()["jobId"])
        urgent = await http.post("/api/calculations", json={
            "tenantId": "tenant-b", "batchId": "b2", "priority": 100})
        calc_ids.append(urgent.json()["jobId"])
        duplicate = await http.post("/api/calculations",
                                    json={"tenantId": "tenant-a", "batchId": "b1"})
        assert duplicate.json()["jobId"] == "calc-tenant-a-b1" == calc_ids[0]
        assert len(set(calc_ids)) == 8
        assert (await calc.get_job_counts("prioritized"))["prioritized"] == 8
        assert (await status("calculation", "calc-tenant-a-b1"))["state"] == "waiting"
        warnings = queue_depth_warnings(await get_all_queue_metrics(), threshold=5)
        assert warnings == ["Queue calculation has 8 waiting jobs"]
        paused_metrics = (await get_all_queue_metrics())["calculation"]
        assert (paused_metrics["waiting"], paused_metrics["paused"]) == (0, 8)

        # Resume; SIGKILL the workers while calculations run, start them again.
        await http.post("/api/jobs/calculation/resume")
        assert (await worker_status())["calculation"]["isPaused"] is False
        await wait_until(lambda: _active(calc), what="a running calculation")

        async def begun(n: int) -> bool:
            conn = await asyncpg.connect(svc.database_url)
            try:
                return int(await conn.fetchval(
                    "SELECT count(*) FROM calc_batches WHERE first_started_at IS NOT NULL")) >= n
            finally:
                await conn.close()
        # The first two (the urgent one among them) have begun in PostgreSQL, not
        # only been fetched: one killed before its first statement would begin
        # after the new process's first two, and the priority check below fail.
        await wait_until(lambda: begun(2), what="two calculations begun")
        in_flight = [job.id for job in await calc.get_jobs("active")]
        workers.kill()
        workers = workers_process(env, log_file).start()
        for job_id in calc_ids:
            await wait_until(partial(_state_is, status, "calculation", job_id, "completed"),
                             timeout=30, what=f"calculation {job_id}")
        stalled = [await calc.get_job(job_id) for job_id in in_flight]
        assert in_flight and any(job is not None and job.stalled_count == 1 for job in stalled)

        # Concurrency: each queue's worker runs its seed's number of jobs at once,
        # and never more calculations than 2 (their last attempts' run times overlap
        # at most 2 deep, and do reach 2).
        for name, concurrency in {"ingestion": 3, "calculation": 2, "webhooks": 5,
                                  "reports": 2}.items():
            async with Queue(name, os.environ["CONVEYOR_REDIS_URL"]) as queue:
                live = await queue.get_workers()
            assert live and {w.concurrency for w in live} == {concurrency}
        spans = [(j.processed_on or 0, j.finished_on or 0)
                 for j in await calc.get_jobs("completed")]
        assert len(spans) == 8
        assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) == 2

        # Status as the seed's getJobStatus shows it.
        done = await status("calculation", "calc-tenant-a-b1")
        assert done["state"] == "completed" and done["progress"] == 100
        assert done["result"]["status"] == "SUCCESS" and done["result"]["timestamp"]
        job = await calc.get_job("calc-tenant-a-b1")
        assert job is not None and job.opts.timeout == 300_000 and job.opts.attempts == 3

        # Webhooks: tenant-c's endpoint keeps failing -> failed after 5 attempts,
        # retried 20, 100, 500, 2500 ms after each failure.
        messages = {f"msg-calc-{t}-{b}" for t, bs in BATCHES.items() for b in bs}
        dead, dead_too = "webhook-msg-calc-tenant-c-b1", "webhook-msg-calc-tenant-c-b2"
        for job_id in (dead, dead_too):
            await wait_until(partial(_state_is, status, "webhooks", job_id, "failed"),
                             timeout=20, what=f"{job_id} in the failed set")
        failed = (await http.get("/api/jobs/webhooks/failed")).json()["jobs"]
        assert sorted((j["id"], j["attemptsMade"]) for j in failed) == [(dead, 5), (dead_too, 5)]
        assert all("HTTP 500" in j["failedReason"] for j in failed)
        for job_id in (dead, dead_too):
            assert [int(e["delay"]) for e in webhook_events
                    if e["event"] == "retrying" and e["job_id"] == job_id] == [20, 100, 500, 2500]
            assert [int(e["attempts_made"]) for e in webhook_events
                    if e["event"] == "failed" and e["job_id"] == job_id] == [5]
        receiver.behave("/webhooks/tenant-c")  # the tenant fixed its endpoint
        assert (await http.post(f"/api/jobs/webhooks/{dead}/retry")).status_code == 200
        retried = (await http.post("/api/jobs/webhooks/retry-failed")).json()["retried"]
        assert retried == 1  # dead_too; dead was already back in the queue
        for message in messages:
            await wait_until(partial(_state_is, status, "webhooks", f"webhook-{message}",
                                     "completed"), timeout=20, what=f"webhook {message}")

        # Reports of one batch, CSV and PDF, with progress to 100.
        response = await http.post("/api/reports", json={
            "tenantId": "tenant-a", "reportType": "price-math", "batchId": "b2",
            "format": "csv", "userId": "user-789"})
        report_ids = [response.json()["jobId"]]
        # The seed's integration test, in Python: enqueue, then wait until finished.
        pdf_job = await enqueue_report(tenant_id="tenant-a", report_type="price-math",
                                       batch_id="b2", format="pdf", user_id="user-789")
        assert pdf_job.id and pdf_job.data["batch_id"] == "b2"
        result = await pdf_job.wait_until_finished(timeout=20)
        assert result["status"] == "SUCCESS" and result["rows"] == 3
        report_ids.append(pdf_job.id)
        for job_id in report_ids:
            await wait_until(partial(_state_is, status, "reports", job_id, "completed"),
                             what=f"report {job_id}")
            assert (await status("reports", job_id))["progress"] == 100

        # --- PostgreSQL, exactly -------------------------------------------------
        conn = await asyncpg.connect(svc.database_url)
        try:
            expected = {
                (t, b, contract): (WTI[t][1], (price * WTI[t][1] / base).quantize(
                    Decimal("0.0001"), ROUND_HALF_EVEN))
                for t, bs in BATCHES.items() for b in bs
                for contract, price, base in _items(t, b)}
            rows = await conn.fetch("SELECT * FROM calc_results")
            assert {(r["tenant_id"], r["batch_id"], r["contract_id"]):
                    (r["index_value"], r["adjusted_price"]) for r in rows} == expected
            assert len(rows) == 24
            batches = await conn.fetch("SELECT * FROM calc_batches ORDER BY first_started_at")
            assert {r["status"] for r in batches} == {"completed"}
            assert all(r["runs"] >= 1 for r in batches)
            # Priority: the urgent batch is among the first two started (concurrency 2).
            assert ("tenant-b", "b2") in [(r["tenant_id"], r["batch_id"]) for r in batches[:2]]
            values = await conn.fetch("SELECT * FROM index_values")
            assert len(values) == 3 * 2 * 2 + 1
            assert await conn.fetchval(
                "SELECT value FROM index_values WHERE tenant_id = 'tenant-a' AND "
                "series_code = 'BRENT'") == Decimal("77.5")
            assert await conn.fetchval("SELECT count(*) FROM ingestions") == 7
            outbox = await conn.fetch("SELECT * FROM webhook_messages")
            assert {r["message_id"] for r in outbox} == messages
            assert all(r["delivered_at"] is not None and r["last_status"] == 200
                       for r in outbox)
            by_id = {r["message_id"]: r for r in outbox}
            assert by_id["msg-calc-tenant-c-b1"]["attempts"] == 6
            assert by_id["msg-calc-tenant-c-b2"]["attempts"] == 6
            assert sum(by_id[f"msg-calc-tenant-b-{b}"]["attempts"] for b in ("b1", "b2")) >= 4
            report = {r["format"]: r for r in await conn.fetch("SELECT * FROM reports")}
            lines = list(csv.reader(io.StringIO(bytes(report["csv"]["content"]).decode())))
            assert lines[0] == ["contract_id", "base_price", "base_index", "index_value",
                                "adjusted_price"]
            assert {(line[0], Decimal(line[4])) for line in lines[1:]} == {
                (c, adjusted) for (t, b, c), (_, adjusted) in expected.items()
                if (t, b) == ("tenant-a", "b2")}
            pdf = bytes(report["pdf"]["content"])
            assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
            assert b"tenant-a-b2-c0" in pdf and report["pdf"]["rows"] == 3
        finally:
            await conn.close()

        # --- the receiver: every request signed; each message taken -------------
        requests = receiver.received("/webhooks/")
        for request in requests:
            tenant = request.path.rsplit("/", 1)[1]
            header = request.headers["x-pricing-signature"]
            assert verify_signature(SECRETS[tenant], request.body, header)
            t, mac = (part.split("=", 1)[1] for part in header.split(","))
            assert mac == hmac.new(SECRETS[tenant].encode(), f"{t}.".encode() + request.body,
                                   hashlib.sha256).hexdigest()
            assert request.json()["id"] == request.headers["x-pricing-message-id"]
            assert not verify_signature("wrong", request.body, header)
        ok = {r.headers["x-pricing-message-id"] for r in receiver.received("/webhooks/",
                                                                             ok_only=True)}
        assert ok == messages
        assert len([r for r in receiver.received("/webhooks/tenant-b") if r.status == 500]) == 2
        assert len([r for r in receiver.received("/webhooks/tenant-c") if r.status == 500]) == 10
        payload = next(r.json() for r in requests if r.status == 200
                       and r.headers["x-pricing-message-id"] == "msg-calc-tenant-a-b1")
        assert payload["type"] == "calc.batch.completed"
        assert payload["data"] == {"tenantId": "tenant-a", "batchId": "b1", "items": 3,
                                   "index": "71.0"}

        # Rate limit: at most 4 webhook jobs start in any second (processed_on is
        # each job's last start, a subset of all starts, so the bound holds for it).
        starts = sorted(j.processed_on or 0 for j in await webhooks_q.get_jobs("completed"))
        assert len(starts) == 8
        assert all(starts[i + 4] - starts[i] >= 1000 for i in range(len(starts) - 4))

        # Retry delays are the seed's 5x growth (base 20 ms here instead of 5 s).
        assert [backoff(n) for n in (1, 2, 3, 4)] == [20, 100, 500, 2500]

        # Progress and completion reached a QueueEvents listener.
        await wait_until(lambda: any(e["event"] == "completed" and
                                     e["job_id"] == "calc-tenant-b-b2" for e in events),
                         what="the completed event")
        progress = [_json(e["progress"]) for e in events
                    if e["event"] == "progress" and e["job_id"] == "calc-tenant-b-b2"]
        assert sorted(set(progress)) == [0, 33, 66, 100]

        # /api/jobs/metrics: bearer token, the seed's shape.
        assert (await http.get("/api/jobs/metrics", headers={"Authorization": ""})
                ).status_code == 401
        assert (await http.get("/api/jobs/metrics", headers={"Authorization": "Bearer no"})
                ).status_code == 401
        metrics = (await http.get("/api/jobs/metrics")).json()
        assert list(metrics) == ["metrics"]
        assert list(metrics["metrics"]) == ["ingestion", "calculation", "webhooks", "reports"]
        assert all(list(m) == ["waiting", "active", "completed", "failed"]
                   for m in metrics["metrics"].values())
        assert metrics["metrics"]["calculation"] == {"waiting": 0, "active": 0,
                                                     "completed": 8, "failed": 0}
        assert metrics["metrics"]["webhooks"] == {"waiting": 0, "active": 0, "completed": 8,
                                                  "failed": 0}
        assert metrics["metrics"]["ingestion"]["completed"] == 7
        assert (await http.get("/api/jobs/calculation/nope")).status_code == 404

        # The workers' log lines, and their metrics for the alert rules.
        log = log_file.read_text()
        assert "[Calculation Worker] Processing: calc-tenant-a-b1" in log
        assert "[Calculation Worker] Completed: calc-tenant-a-b1 (" in log
        assert f"[Worker] Job failed: {dead}" in log
        scrape = (await http.get(f"http://127.0.0.1:{env['PRICING_METRICS_PORT']}/metrics")).text
        for name in ("process_resident_memory_bytes", 'conveyor_jobs{queue="calculation"',
                     "conveyor_jobs_completed_total", "conveyor_jobs_failed_total",
                     "conveyor_workers"):
            assert name in scrape

        # The dashboard, with the four queues on the page.
        png = tmp_path / "dashboard.png"
        page_has_queues = "body" + "".join(f':has-text("{q}")' for q in QUEUES)
        await asyncio.to_thread(dashboard_screenshot, f"http://127.0.0.1:{port}/dashboard/",
                                png, wait_for=page_has_queues)
        assert png.stat().st_size > 10_000
        if os.environ.get("CONVEYOR_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(png, HERE / "dashboard.png")

        # The seed's cleanup (grace 0 here instead of 7 and 30 days).
        removed = await clean_old_jobs(0, 0)
        assert removed == {"ingestion": 7, "calculation": 8, "webhooks": 8, "reports": 2}
        assert (await get_all_queue_metrics())["calculation"]["completed"] == 0

        # Graceful shutdown: SIGTERM, running jobs finish, exit 0.
        assert await asyncio.to_thread(workers.stop) == 0
        assert "Shutting down workers..." in log_file.read_text()
    finally:
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await asyncio.to_thread(workers.stop)
        await http.aclose()
        await calc.close()
        await webhooks_q.close()
        server.should_exit = True
        await serving
        await app.close()


async def _all_running(worker_status: Callable[[], Any]) -> bool:
    return all(w["isRunning"] for w in (await worker_status()).values())


async def _state_is(status: Callable[[str, str], Any], queue: str, job_id: str,
                    state: str) -> bool:
    found = (await status(queue, job_id))["state"]
    if found == "failed" and state != "failed":
        raise AssertionError(f"{queue} job {job_id} failed")
    return bool(found == state)


async def _active(queue: Queue) -> bool:
    return (await queue.get_job_counts("active"))["active"] > 0


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def test_example_pricing_alert_rules() -> None:
    """The seed's alerts (queue depth, failure rate, no jobs processed, workers
    down, memory) as Prometheus rules: promtool checks them and runs their unit
    tests (alerts_test.yml)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (make venv does)"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([promtool, *args], cwd=HERE, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_example_pricing_command_runs_and_stops(database_url: str) -> None:
    """``python -m examples.pricing --seconds 1`` starts everything, prints its
    URLs and exits 0 (on the session's PostgreSQL, to skip an initdb)."""
    env = {**os.environ, "DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-m", "examples.pricing", "--seconds", "1"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("redis:", "postgresql:", "receiver:", "api:", "metrics:", "dashboard:",
                 "stopped (workers exited 0)"):
        assert line in result.stdout
