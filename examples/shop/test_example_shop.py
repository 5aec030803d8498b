"""End-to-end test of the shop example: real Redis, PostgreSQL, SMTP sink, HTTP
receiver (payment providers, ERP, marketplace) and worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Job
from conveyor.embedded import free_port
from conveyor.inspection import Inspector
from examples.shop import store, tasks
from examples.shop.__main__ import PRODUCTS, seed_products, start_workers
from examples.shop.events import follow
from examples.shop.web import make_app, sign_razorpay, sign_stripe
from examples.support import Services, WorkerProcess, dashboard_screenshot, serve_app, wait_until

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


class Shop:
    """The running shop as a customer, a payment provider and an admin see it."""

    def __init__(self, services: Services, http: httpx.AsyncClient) -> None:
        self.services = services
        self.http = http

    async def order(self, email: str, items: dict[str, int]) -> int:
        response = await self.http.post("/orders", json={"email": email, "items": items})
        assert response.status_code == 201, response.text
        order_id: int = response.json()["id"]
        return order_id

    async def stripe(self, event_id: str, type: str, order_id: int, amount: int) -> None:
        body = json.dumps({"id": event_id, "type": type, "data": {"object": {
            "id": f"pi_{order_id}", "amount": amount,
            "metadata": {"order_id": str(order_id)}}}}).encode()
        response = await self.http.post("/webhooks/stripe", content=body, headers={
            "Stripe-Signature": sign_stripe(body), "Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    async def razorpay(self, event_id: str, type: str, order_id: int, amount: int) -> None:
        body = json.dumps({"event": type, "payload": {"payment": {"entity": {
            "id": f"pay_{order_id}", "amount": amount,
            "notes": {"order_id": str(order_id)}}}}}).encode()
        response = await self.http.post("/webhooks/razorpay", content=body, headers={
            "X-Razorpay-Signature": sign_razorpay(body), "X-Razorpay-Event-Id": event_id,
            "Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    async def status(self, order_id: int) -> str:
        status: str = (await self.http.get(f"/orders/{order_id}")).json()["status"]
        return status

    async def wait_status(self, order_id: int, status: str) -> None:
        async def reached() -> bool:
            return await self.status(order_id) == status
        await wait_until(reached, 20, what=f"order {order_id} {status}")


async def job_in(queue: str, job_id: str, state: str) -> Job | None:
    job = await tasks.app.queue(queue).get_job(job_id)
    return job if job is not None and await job.get_state() == state else None


async def promote_when_delayed(queue: str, job_id: str, backoff_ms: int) -> None:
    """Wait for a retry's backoff, check its length, and run it now."""
    async def delayed() -> bool:
        return await job_in(queue, job_id, "delayed") is not None
    await wait_until(delayed, 20, what=f"{job_id} delayed")
    async with Inspector(os.environ["CONVEYOR_REDIS_URL"]) as inspector:
        summary = (await inspector.job(queue, job_id)).summary
    assert summary.due is not None and summary.processed_on is not None
    assert backoff_ms <= summary.due - summary.processed_on < backoff_ms + 5_000
    job = await tasks.app.queue(queue).get_job(job_id)
    assert job is not None
    await job.promote()


async def run_schedule(queue: str, scheduler_id: str) -> Any:
    """Run a cron or interval schedule now: promote the job it keeps waiting
    for its next slot (the scheduler then makes the one after)."""
    q = tasks.app.queue(queue)
    scheduler = await q.get_job_scheduler(scheduler_id)
    assert scheduler is not None and scheduler.next_run is not None
    job = await q.get_job(f"sched-{scheduler_id}-{int(scheduler.next_run.timestamp() * 1000)}")
    assert job is not None
    await job.promote()
    return await job.wait_until_finished(timeout=20)


async def drained() -> bool:
    """No queue has work left but the schedulers' next jobs."""
    for name in tasks.app.queue_names():
        queue = tasks.app.queue(name)
        counts = await queue.get_job_counts()
        schedulers = len(await queue.get_job_schedulers())
        if counts["waiting"] or counts["active"] or counts["prioritized"] \
                or counts["delayed"] > schedulers:
            return False
    return True


@pytest.fixture
async def shop(services: Callable[..., Services], monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> AsyncIterator[tuple[Shop, list[WorkerProcess]]]:
    """The shop with its two worker processes and its HTTP front."""
    running = services(smtp=True, http=True)
    for key, value in running.env().items():
        monkeypatch.setenv(key, value)
    await store.apply_schema()
    await seed_products()
    workers = start_workers(running.env(), tmp_path)
    port = free_port()
    server, task = await serve_app(make_app(running.redis_url), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield Shop(running, http), workers
    finally:
        for worker in workers:
            worker.kill()
        server.should_exit = True
        await task


async def test_example_shop_pays_expires_refunds_and_mails_each_customer_once(
        shop: tuple[Shop, list[WorkerProcess]], tmp_path: Path) -> None:
    """Nine orders: three paid by webhook (two of those webhooks delivered
    twice), one high-value; two authorized and captured by the payment-retry
    queue (one after one failure and the 1-minute custom backoff, one failing
    three times into the dead letters); three left to expire (one with a
    wrong-amount payment, one paid too late and refunded); one paid only by the
    payment reconciliation, its webhook lost. The worker of every
    queue but e-mail is SIGKILLed while ERP syncs run and another is started.

    Time is not waited for: the 1-hour auto-cancel jobs and the payment
    retries' 1- and 2-minute backoffs are promoted once the test has checked
    their delay; the cron schedules (daily-report at 09:00, stock-sync every
    hour, clean-queues at 03:00, payment-reconciliation at 02:30) are run by
    promoting the job each scheduler keeps waiting for its next slot."""
    s, workers = shop
    receiver = s.services.http
    smtp = s.services.smtp
    assert receiver is not None and smtp is not None
    receiver.behave("/erp", delay=0.3, fail_first=1)  # slow, and down once: order's 2 attempts
    lines: list[str] = []
    follower = asyncio.create_task(follow(tasks.app.queue_names(),
                                          s.services.redis_url, lines.append))
    customers = [f"c{i}@example.com" for i in range(8)]
    for i, email in enumerate(customers):
        response = await s.http.post("/customers", json={"email": email, "name": f"C{i}"})
        assert response.status_code == 201
    for _ in range(3):  # the throttle: one e-mail a minute per address
        assert (await s.http.post("/password-resets", json={"email": customers[0]})).is_success

    o1 = await s.order(customers[0], {"TSHIRT": 2})              # 2,000
    o2 = await s.order(customers[1], {"TSHIRT": 1, "PHONE": 1})  # 31,000
    o3 = await s.order(customers[2], {"LAPTOP": 1})              # 60,000: review
    o4 = await s.order(customers[3], {"TSHIRT": 3})              # expires
    o5 = await s.order(customers[4], {"PHONE": 2})               # expires, paid late
    o6 = await s.order(customers[5], {"TSHIRT": 1})              # capture fails once
    o7 = await s.order(customers[6], {"PHONE": 1})               # capture always fails
    o8 = await s.order(customers[7], {"TSHIRT": 1})              # wrong amount, expires
    o9 = await s.order(customers[1], {"TSHIRT": 1})              # its webhook never comes
    receiver.behave(f"/razorpay/payments/pay_{o6}/capture", fail_first=1)
    receiver.behave(f"/razorpay/payments/pay_{o7}/capture", fail_first=1_000)
    assert (await s.http.post("/orders", json={"email": customers[0],
                                               "items": {"LAPTOP": 99}})).status_code == 409
    bad = await s.http.post("/webhooks/stripe", content=b"{}",
                            headers={"Stripe-Signature": "t=1,v1=forged"})
    assert bad.status_code == 400

    for _ in range(2):  # delivered twice: charged once
        await s.stripe("evt_o1", "payment_intent.succeeded", o1, 2_000)
        await s.razorpay("evt_o2", "payment.captured", o2, 31_000)
    await s.stripe("evt_o3", "payment_intent.succeeded", o3, 60_000)
    await s.stripe("evt_o8", "payment_intent.succeeded", o8, 1)

    # SIGKILL the worker of the order, webhook, retry... queues with jobs in flight.
    async def erp_running() -> bool:
        return (await tasks.app.queue(tasks.ORDER).get_job_counts())["active"] > 0
    await wait_until(erp_running, 20, what="ERP syncs running")
    killed = workers[1].pid
    workers[1].kill()
    workers[1].start()  # a new process in its place
    assert workers[1].pid != killed
    # Captures start only now: one killed between the provider's "fail first"
    # reply and its report would rightly run again and succeed, never reaching
    # the retry's backoff that the test checks below.
    await s.razorpay("evt_o6", "payment.authorized", o6, 1_000)
    await s.razorpay("evt_o7", "payment.authorized", o7, 30_000)

    for order_id in (o1, o2, o3):
        await s.wait_status(order_id, "paid")
    assert (await s.http.post(f"/orders/{o1}/ship")).status_code == 202
    assert (await s.http.post(f"/orders/{o2}/returns",
                              json={"reason": "wrong size"})).status_code == 202

    # payment-retry: 1 minute after the first failure, 2 after the second.
    await promote_when_delayed(tasks.RETRY, f"capture-pay_{o6}", 60_000)
    await promote_when_delayed(tasks.RETRY, f"capture-pay_{o7}", 60_000)
    await promote_when_delayed(tasks.RETRY, f"capture-pay_{o7}", 120_000)
    await s.wait_status(o6, "paid")
    await s.wait_status(o7, "payment_failed")

    # Paid orders have no auto-cancel left; the others expire (promoted: 1 hour).
    order_queue = tasks.app.queue(tasks.ORDER)
    for order_id in (o1, o2, o3, o6):  # (o9's goes when reconciliation pays it)
        assert await order_queue.get_job(f"cancel-{order_id}") is None
    reviewed = await store.pool()

    async def suspicious_reviewed() -> bool:
        return bool(await reviewed.fetchval("SELECT count(*) FROM reviews "
                                            "WHERE kind = 'suspicious_payment'"))
    await wait_until(suspicious_reviewed, 20, what="the wrong amount reviewed")
    for order_id in (o4, o5, o8):
        cancel = await order_queue.get_job(f"cancel-{order_id}")
        assert cancel is not None and cancel.delay == 3_600_000
        await cancel.promote()
        await s.wait_status(order_id, "cancelled")
    await s.stripe("evt_o5_late", "payment_intent.succeeded", o5, 60_000)
    # Reconciliation: Stripe lists a payment the shop knows, Razorpay one whose
    # webhook was lost: only that one is applied.
    receiver.behave("/stripe/payments", answer={"data": [
        {"id": f"pi_{o1}", "order_id": o1, "amount": 2_000}]})
    receiver.behave("/razorpay/payments", answer={"data": [
        {"id": f"pay_{o9}", "order_id": o9, "amount": 1_000}]})
    assert await run_schedule(tasks.WEBHOOK, "payment-reconciliation") == {
        "stripe": 0, "razorpay": 1}
    await s.wait_status(o9, "paid")
    await s.wait_status(o1, "shipped")
    # Queues are checked one after the other, so also wait for the last e-mail
    # (a job in one queue may enqueue into another already checked).
    async def settled() -> bool:
        return len(smtp.messages) >= 8 + 12 and await drained()
    await wait_until(settled, 30, what="every queue drained, every e-mail sent")

    db = await store.pool()
    statuses = dict(await db.fetch("SELECT id, status FROM orders"))
    assert statuses == {o1: "shipped", o2: "paid", o3: "paid", o4: "cancelled",
                        o5: "cancelled", o6: "paid", o7: "payment_failed", o8: "cancelled",
                        o9: "paid"}
    stock = dict(await db.fetch("SELECT sku, stock FROM products"))
    start = {sku: n for sku, _, _, n in PRODUCTS}
    assert stock == {"TSHIRT": start["TSHIRT"] - 2 - 1 - 1 - 1, "PHONE": start["PHONE"] - 1,
                     "LAPTOP": start["LAPTOP"] - 1}
    payments = {(r["order_id"], r["amount"], r["status"]) for r in await db.fetch(
        "SELECT order_id, amount, status FROM payments")}
    assert payments == {(o1, 2_000, "captured"), (o2, 31_000, "captured"),
                        (o3, 60_000, "captured"), (o5, 60_000, "refunded"),
                        (o6, 1_000, "captured"), (o7, 30_000, "failed"),
                        (o9, 1_000, "captured")}
    # 7 webhooks (2 delivered twice, stored once) and 2 reconciled payments
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 9
    assert len(receiver.received(f"/stripe/payments/pi_{o5}/refund", ok_only=True)) == 1
    # 3 attempts, each one call to the provider (same idempotency key).
    assert len(receiver.received(f"/razorpay/payments/pay_{o7}/capture")) >= 3
    assert sorted(await db.fetchval("SELECT array_agg(order_id) FROM invoices")) == \
        sorted([o1, o2, o3, o6, o9])
    assert sorted(await db.fetchval("SELECT array_agg(order_id) FROM erp_synced")) == \
        sorted([o1, o2, o3, o6, o9])
    assert {(r["kind"], r["order_id"]) for r in await db.fetch(
        "SELECT kind, order_id FROM reviews")} == {
        ("high_value_order", o3), ("return_request", o2), ("suspicious_payment", None)}
    [dead] = await db.fetch("SELECT queue, name, attempts_made FROM dead_letters")
    assert tuple(dead) == (tasks.RETRY, "retry-payment-capture", 3)

    # Each customer got each e-mail exactly once.
    def subjects(email: str) -> Counter[str]:
        return Counter(m.subject for m in smtp.to(email))

    def number(order_id: int) -> str:
        return f"ORD-{order_id:05d}"

    expected: dict[str, list[str]] = {
        customers[0]: ["Reset your password", f"Order {number(o1)} confirmed",
                       f"Order {number(o1)} has shipped"],
        customers[1]: [f"Order {number(o2)} confirmed", f"Order {number(o9)} confirmed"],
        customers[2]: [f"Order {number(o3)} confirmed"],
        customers[3]: [f"Order {number(o4)} cancelled"],
        customers[4]: [f"Order {number(o5)} cancelled", f"Refund for order {number(o5)}"],
        customers[5]: [f"Order {number(o6)} confirmed"],
        customers[6]: [f"Order {number(o7)} cancelled"],
        customers[7]: [f"Order {number(o8)} cancelled"],
    }
    for i, email in enumerate(customers):
        want = Counter([f"Welcome to the shop, C{i}", *expected[email]])
        assert subjects(email) == want, email
    assert "the payment failed" in smtp.to(customers[6])[-1].body or any(
        "the payment failed" in m.body for m in smtp.to(customers[6]))

    # The reset token is in the mail, only its hash in PostgreSQL, never in a job.
    [reset] = [m for m in smtp.to(customers[0]) if m.subject == "Reset your password"]
    token = reset.body.split("token=")[1].split()[0]
    assert await db.fetchval("SELECT token_hash FROM password_resets") == \
        hashlib.sha256(token.encode()).hexdigest()

    # The cron schedules, run now.
    report = await run_schedule(tasks.ORDER, "daily-report")
    assert report == {"orders": 9, "paid": 5, "cancelled": 4,
                      "revenue": 2_000 + 31_000 + 60_000 + 1_000 + 1_000}
    assert await run_schedule(tasks.INVENTORY, "stock-sync") == 3
    [sync] = receiver.received("/marketplace/stock")
    assert {i["sku"]: i["stock"] for i in sync.json()["items"]} == stock
    assert await order_queue.get_job(f"cancel-{o9}") is None
    assert (await s.http.get("/admin/queues")).json()[tasks.RETRY]["failed"] == 1
    [failed] = (await s.http.get(f"/admin/failed/{tasks.RETRY}")).json()
    assert (failed["name"], failed["attemptsMade"]) == ("retry-payment-capture", 3)

    release = await tasks.app.queue(tasks.INVENTORY).get_job(f"release-{o4}")
    assert release is not None and release.opts.backoff is not None
    assert (release.opts.backoff.type, release.opts.backoff.delay) == ("fixed", 5000)
    assert release.opts.attempts == 3
    invoice = await order_queue.get_job(f"invoice-{o1}")
    assert invoice is not None and invoice.progress == 100  # the seed's progress tracking
    concurrency = {tasks.EMAIL: 5, tasks.ORDER: 10, tasks.WEBHOOK: 20, tasks.RETRY: 3,
                   tasks.INVENTORY: 8, tasks.REVIEW: 1, tasks.DEAD: 1}
    for name, n in concurrency.items():  # the killed worker may still be listed: same numbers
        assert {w.concurrency for w in await tasks.app.queue(name).get_workers()} == {n}
    assert tasks.app.worker(tasks.EMAIL).limiter == (100, 1000)  # 100 jobs a second

    # Retention: e-mails leave nothing behind; the nightly cleanup removes the
    # completed jobs of every queue and keeps failed ones younger than 7 days.
    assert (await tasks.app.queue(tasks.EMAIL).get_job_counts())["completed"] == 0
    await run_schedule(tasks.ORDER, "clean-queues")
    for name in tasks.app.queue_names():
        counts = await tasks.app.queue(name).get_job_counts()
        assert counts["completed"] <= (1 if name == tasks.ORDER else 0), name
    assert (await tasks.app.queue(tasks.RETRY).get_job_counts())["failed"] == 1

    # The seed's completed/failed listeners, from the event streams.
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    assert f"{tasks.RETRY}: job capture-pay_{o7} failed: HTTPStatusError: Server error " \
        "'500 Internal Server Error'" in "\n".join(lines)
    assert f"{tasks.ORDER}: job invoice-{o1} completed" in lines

    png = tmp_path / "dashboard.png"
    url = str(s.http.base_url) + "/jobs/"
    await asyncio.to_thread(dashboard_screenshot, url, png, wait_for=f"text={tasks.RETRY}")
    page = (await s.http.get("/jobs/api/v1/queues")).text
    for name in tasks.app.queue_names():
        assert name in page
    if os.environ.get("CONVEYOR_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(png, HERE / "dashboard.png")
    await tasks.app.close()


def test_example_shop_command_starts_prints_its_urls_and_exits_0() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "examples.shop", "--seconds", "3"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "dashboard:  http://127.0.0.1:" in proc.stdout
    assert "shop:       http://127.0.0.1:" in proc.stdout
