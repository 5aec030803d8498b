"""The shop's conveyor app: its queues, tasks and schedules.

Run the workers with ``conveyor worker examples.shop.tasks:app`` (every queue,
each with the concurrency, rate limit and backoff configured below), or let
``python -m examples.shop`` start them. Configuration comes from the
environment: CONVEYOR_REDIS_URL, DATABASE_URL, SMTP_URL, RECEIVER_URL (the
payment provider, the ERP and the marketplace; one local receiver in the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import smtplib
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from conveyor import Job, JobStateError, UnrecoverableError
from conveyor.app import Conveyor, current_job

from . import store

log = logging.getLogger("examples.shop")

app = Conveyor()  # $CONVEYOR_REDIS_URL

EMAIL, ORDER, WEBHOOK, RETRY = "email", "order", "payment-webhook", "payment-retry"
INVENTORY, REVIEW, DEAD = "inventory-release", "manual-review", "dead-letters"
TZ = ZoneInfo("Asia/Kolkata")
AUTO_CANCEL_AFTER = timedelta(hours=1)
#: Kept finished jobs, as the seed's maintenance section: a day, at most 1,000.
KEEP_A_DAY = {"age": 86_400, "count": 1_000}


def payment_retry_backoff(attempts_made: int, error: BaseException, job: Job) -> int:
    """The seed's custom backoff: 1 minute after the first failure, 2 after the second."""
    return attempts_made * 60_000


# A killed worker's jobs come back once their lock lapses and the stalled check
# runs: 2 s and 1 s here instead of 30 s each (the example's test kills workers).
_LOCKS: dict[str, Any] = {
    "lock_duration": int(os.environ.get("SHOP_LOCK_MS", "2000")),
    "stalled_interval": int(os.environ.get("SHOP_STALLED_MS", "1000")),
}
app.configure_worker(EMAIL, concurrency=5, limiter={"max": 100, "duration": 1000}, **_LOCKS)
app.configure_worker(ORDER, concurrency=10, **_LOCKS)
app.configure_worker(WEBHOOK, concurrency=20, **_LOCKS)
app.configure_worker(RETRY, concurrency=3, backoff_strategy=payment_retry_backoff, **_LOCKS)
app.configure_worker(INVENTORY, concurrency=8, **_LOCKS)
app.configure_worker(REVIEW, concurrency=1, **_LOCKS)  # admin-driven: one at a time
app.configure_worker(DEAD, concurrency=1, **_LOCKS)


def receiver(path: str) -> str:
    """A URL of the outside services (payment provider, ERP, marketplace)."""
    return os.environ["RECEIVER_URL"].rstrip("/") + path


# -- e-mail ----------------------------------------------------------------------

TEMPLATES: dict[str, tuple[str, str]] = {
    "welcome": ("Welcome to the shop, {name}", "Hello {name}, your account is ready."),
    "password_reset": ("Reset your password",
                       "Open https://shop.example/reset?token={token} within an hour."),
    "order_confirmation": ("Order {number} confirmed",
                           "We received your payment of Rs {total} for order {number}."),
    "shipping_notification": ("Order {number} has shipped", "Order {number} is on its way."),
    "order_cancelled": ("Order {number} cancelled",
                        "Order {number} was cancelled ({reason}); nothing was charged."),
    "refund_issued": ("Refund for order {number}",
                      "We refunded Rs {amount} for order {number}, which had expired."),
}

EMAIL_OPTIONS: dict[str, Any] = {
    "attempts": 3, "backoff": {"type": "exponential", "delay": 2000},  # 2 s, 4 s
    "remove_on_complete": True, "remove_on_fail": False, "dead_letter_queue": DEAD,
}


def _smtp_send(to: str, subject: str, body: str, message_id: str) -> None:
    url = urlsplit(os.environ["SMTP_URL"])
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@shop.example", to, subject
    msg["Message-ID"] = f"<{message_id}@shop.example>"
    msg.set_content(body)
    with smtplib.SMTP(url.hostname or "127.0.0.1", url.port or 25, timeout=10) as smtp:
        smtp.send_message(msg)


async def deliver(template: str, to: str, ref: str, **context: Any) -> dict[str, Any]:
    """Send the e-mail ``template`` about ``ref`` to ``to`` unless it went out already."""
    key = f"{template}:{ref}"
    if await store.email_sent(key):
        return {"sent": False, "duplicate": key}
    subject, body = TEMPLATES[template]
    subject = subject.format(**context)
    await asyncio.to_thread(_smtp_send, to, subject, body.format(**context), key)
    await store.record_email(key, to, subject)
    return {"sent": True, "messageId": key}


async def _order_context(order_id: int) -> tuple[store.Order, dict[str, Any]]:
    order = await store.get_order(order_id)
    return order, {"number": order.number, "total": order.total}


@app.task(queue=EMAIL, name="send-welcome-email", **EMAIL_OPTIONS)
async def send_welcome_email(to: str, name: str) -> dict[str, Any]:
    """A new customer's welcome."""
    return await deliver("welcome", to, to, name=name)


@app.task(queue=EMAIL, name="send-password-reset", **EMAIL_OPTIONS)
async def send_password_reset(to: str) -> dict[str, Any]:
    """A reset link; the token is made here, so it never sits in Redis."""
    ref = str(current_job().id)
    if await store.email_sent(f"password_reset:{ref}"):
        return {"sent": False}
    return await deliver("password_reset", to, ref, token=await store.new_reset_token(to))


@app.task(queue=EMAIL, name="send-order-confirmation", **EMAIL_OPTIONS)
async def send_order_confirmation(to: str, order_id: int) -> dict[str, Any]:
    """The confirmation of a paid order (the job carries its id, not its items)."""
    order, context = await _order_context(order_id)
    return await deliver("order_confirmation", to, order.number, **context)


@app.task(queue=EMAIL, name="send-shipping-notification", **EMAIL_OPTIONS)
async def send_shipping_notification(to: str, order_id: int) -> dict[str, Any]:
    """An order left the warehouse."""
    order, context = await _order_context(order_id)
    return await deliver("shipping_notification", to, order.number, **context)


@app.task(queue=EMAIL, name="send-order-cancelled", **EMAIL_OPTIONS)
async def send_order_cancelled(to: str, order_id: int, reason: str) -> dict[str, Any]:
    """An order was cancelled (unpaid in time, or its payment failed)."""
    order, context = await _order_context(order_id)
    return await deliver("order_cancelled", to, order.number, reason=reason, **context)


@app.task(queue=EMAIL, name="send-refund-issued", **EMAIL_OPTIONS)
async def send_refund_issued(to: str, order_id: int, payment_id: str) -> dict[str, Any]:
    """Money that came for an expired order went back."""
    _, context = await _order_context(order_id)
    paid = await store.payment(payment_id)
    return await deliver("refund_issued", to, payment_id, amount=paid["amount"] if paid else 0,
                         **context)


# -- what follows from an order's state -----------------------------------------------


async def settle(order_id: int) -> None:
    """Enqueue what the order's state calls for. Safe to run again: every job
    has an id of its own and every task checks PostgreSQL before acting."""
    order = await store.get_order(order_id)
    oid = order.id
    if order.status != "pending":
        # No auto-cancel any more; if it is running, it finds the order not pending.
        with contextlib.suppress(JobStateError):
            await app.queue(ORDER).remove(f"cancel-{oid}")
    if order.status in ("paid", "shipped"):  # shipped: it was paid (a rerun may come late)
        await send_order_confirmation.with_options(job_id=f"confirmation-{oid}").enqueue(
            order.customer_email, oid)
        await generate_invoice.with_options(job_id=f"invoice-{oid}").enqueue(oid)
        await sync_erp.with_options(job_id=f"erp-{oid}").enqueue(oid)
        if order.total > store.HIGH_VALUE:
            await review_high_value_order.with_options(job_id=f"review-order-{oid}").enqueue(oid)
    if order.status in ("cancelled", "payment_failed"):
        await release_inventory.with_options(job_id=f"release-{oid}").enqueue(oid, order.status)
        reason = "not paid in time" if order.status == "cancelled" else "the payment failed"
        await send_order_cancelled.with_options(job_id=f"cancelled-{oid}").enqueue(
            order.customer_email, oid, reason)
    for payment in await store.payments_of(oid):
        pid = payment["payment_id"]
        if payment["status"] == "authorized":
            await retry_payment_capture.with_options(job_id=f"capture-{pid}").enqueue(pid)
        elif payment["status"] == "refund_due":
            await retry_refund.with_options(job_id=f"refund-{pid}").enqueue(pid)


# -- order ---------------------------------------------------------------------------

ORDER_OPTIONS: dict[str, Any] = {"attempts": 2, "remove_on_complete": KEEP_A_DAY,
                                 "dead_letter_queue": DEAD}


async def place_order(email: str, items: dict[str, int]) -> store.Order:
    """Reserve stock, record the order, and schedule its auto-cancel in an hour
    under the job id ``cancel-<order>`` (removed when the payment arrives)."""
    order = await store.create_order(email, items)
    await auto_cancel.with_options(
        delay=AUTO_CANCEL_AFTER, job_id=f"cancel-{order.id}").enqueue(order.id)
    return order


@app.task(queue=ORDER, name="auto-cancel", **ORDER_OPTIONS)
async def auto_cancel(order_id: int) -> str:
    """Cancel an order still unpaid an hour after it was placed."""
    cancelled = await store.cancel_if_pending(order_id)
    await settle(order_id)
    return "cancelled" if cancelled else "not pending"


@app.task(queue=ORDER, name="generate-invoice", **ORDER_OPTIONS)
async def generate_invoice(order_id: int) -> str:
    """The invoice of a paid order (one per order)."""
    job = current_job()
    order = await store.get_order(order_id)
    await job.update_progress(50)
    number = f"INV-{order.id:05d}"
    await (await store.pool()).execute(
        "INSERT INTO invoices (order_id, number, amount) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING", order.id, number, order.total)
    await job.update_progress(100)
    return number


@app.task(queue=ORDER, name="update-order-status", **ORDER_OPTIONS)
async def update_order_status(order_id: int, status: str) -> bool:
    """Move an order on (the warehouse says ``shipped``) and tell the customer."""
    if status != "shipped":
        raise UnrecoverableError(f"unknown status {status!r}")  # a retry cannot help
    changed = await store.mark_shipped(order_id)
    order = await store.get_order(order_id)
    if order.status == "shipped":
        await send_shipping_notification.with_options(job_id=f"shipped-{order_id}").enqueue(
            order.customer_email, order_id)
    return changed


@app.task(queue=ORDER, name="sync-erp", timeout=10_000, **ORDER_OPTIONS)
async def sync_erp(order_id: int) -> bool:
    """Send a paid order to the ERP (the idempotency key makes a resend harmless)."""
    order = await store.get_order(order_id)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(receiver("/erp/orders"), headers={
            "Idempotency-Key": order.number}, json={"number": order.number, "total": order.total})
        response.raise_for_status()
    await (await store.pool()).execute(
        "INSERT INTO erp_synced (order_id) VALUES ($1) ON CONFLICT DO NOTHING", order_id)
    return True


@app.cron("0 9 * * *", tz="Asia/Kolkata", scheduler_id="daily-report")
@app.task(queue=ORDER, name="daily-report", attempts=2, remove_on_complete=KEEP_A_DAY)
async def daily_report() -> dict[str, int]:
    """The last 24 hours' orders, paid, cancelled and revenue: one row per day
    (India time), made again if the job runs twice."""
    day = datetime.now(TZ).date()
    row = await (await store.pool()).fetchrow(
        """INSERT INTO daily_reports (day, orders, paid, cancelled, revenue)
           SELECT $1, count(*), count(*) FILTER (WHERE status IN ('paid', 'shipped')),
                  count(*) FILTER (WHERE status IN ('cancelled', 'payment_failed')),
                  coalesce(sum(total) FILTER (WHERE status IN ('paid', 'shipped')), 0)
           FROM orders WHERE created_at > now() - interval '24 hours'
           ON CONFLICT (day) DO UPDATE SET orders = EXCLUDED.orders, paid = EXCLUDED.paid,
               cancelled = EXCLUDED.cancelled, revenue = EXCLUDED.revenue, made_at = now()
           RETURNING orders, paid, cancelled, revenue""", day)
    return dict(row)


@app.cron("0 3 * * *", tz="Asia/Kolkata", scheduler_id="clean-queues")
@app.task(queue=ORDER, name="clean-queues", remove_on_complete=KEEP_A_DAY)
async def clean_queues() -> dict[str, int]:
    """The seed's manual cleanup, nightly: every completed job goes, failed jobs
    after 7 days (the dead-letter table keeps what they were)."""
    removed = {}
    for name in app.queue_names():
        queue = app.queue(name)
        done = await queue.clean(0, 0, "completed")
        failed = await queue.clean(7 * 24 * 3_600_000, 0, "failed")
        removed[name] = len(done) + len(failed)
    return removed


# -- payment webhooks ---------------------------------------------------------------

WEBHOOK_OPTIONS: dict[str, Any] = {
    "attempts": 5, "backoff": {"type": "exponential", "delay": 1000}, "timeout": 30_000,
    "remove_on_complete": KEEP_A_DAY, "dead_letter_queue": DEAD,
}


async def apply_payment_event(event: store.PaymentEvent) -> str:
    """Record the event once (by its id), then enqueue what the order's state
    calls for; a re-delivered event charges nothing and sends nothing twice."""
    outcome = await store.record_payment_event(event)
    if outcome == "suspicious":
        await review_suspicious_payment.with_options(
            job_id=f"review-payment-{event.event_id}").enqueue(
            event.event_id, event.order_id, f"{event.provider} sent {event.amount} "
            f"for order {event.order_id} ({event.type})")
    else:
        await settle(event.order_id)
    return outcome


@app.task(queue=WEBHOOK, name="stripe-webhook", **WEBHOOK_OPTIONS)
async def stripe_webhook(event_id: str, type: str, order_id: int, payment_id: str,
                         amount: int) -> str:
    """A Stripe event (its signature was checked by the web front)."""
    kind = {"payment_intent.succeeded": "captured",
            "payment_intent.amount_capturable_updated": "authorized",
            "payment_intent.payment_failed": "failed"}.get(type)
    if kind is None:
        return "ignored"
    return await apply_payment_event(store.PaymentEvent(
        "stripe", event_id, kind, order_id, payment_id, amount))


@app.task(queue=WEBHOOK, name="razorpay-webhook", **WEBHOOK_OPTIONS)
async def razorpay_webhook(event_id: str, type: str, order_id: int, payment_id: str,
                           amount: int) -> str:
    """A Razorpay event: ``payment.authorized`` is captured by the shop."""
    kind = {"payment.captured": "captured", "payment.authorized": "authorized",
            "payment.failed": "failed"}.get(type)
    if kind is None:
        return "ignored"
    return await apply_payment_event(store.PaymentEvent(
        "razorpay", event_id, kind, order_id, payment_id, amount))


@app.cron("30 2 * * *", tz="Asia/Kolkata", scheduler_id="payment-reconciliation")
@app.task(queue=WEBHOOK, name="payment-reconciliation", attempts=5,
          remove_on_complete=KEEP_A_DAY)
async def payment_reconciliation() -> dict[str, int]:
    """Ask each provider for its captured payments and apply the ones whose
    webhook never came (as events ``reconcile-<payment>``)."""
    applied = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for provider in ("stripe", "razorpay"):
            response = await http.get(receiver(f"/{provider}/payments"))
            response.raise_for_status()
            outcomes = [await apply_payment_event(store.PaymentEvent(
                provider, f"reconcile-{p['id']}", "captured", int(p["order_id"]), p["id"],
                int(p["amount"]))) for p in response.json().get("data", [])]
            applied[provider] = sum(o != "duplicate" for o in outcomes)
    return applied


# -- payment retries (the seed's custom backoff: 1 min, 2 min) ---------------------------

RETRY_OPTIONS: dict[str, Any] = {
    "attempts": 3, "backoff": {"type": "custom"}, "timeout": 10_000,
    "remove_on_complete": KEEP_A_DAY, "dead_letter_queue": DEAD,
}


async def _provider_call(payment: dict[str, Any], action: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            receiver(f"/{payment['provider']}/payments/{payment['payment_id']}/{action}"),
            headers={"Idempotency-Key": f"{action}-{payment['payment_id']}"},
            json={"amount": payment["amount"]})
        response.raise_for_status()


@app.task(queue=RETRY, name="retry-payment-capture", **RETRY_OPTIONS)
async def retry_payment_capture(payment_id: str) -> str:
    """Capture an authorized payment; a failure retries after 1, then 2 minutes,
    and the third sends it to the dead letters (which release the stock)."""
    payment = await store.payment(payment_id)
    if payment is None or payment["status"] != "authorized":
        return "nothing to capture"
    await _provider_call(payment, "capture")
    outcome = await store.mark_captured(payment_id)
    await settle(payment["order_id"])
    return outcome


@app.task(queue=RETRY, name="retry-refund", **RETRY_OPTIONS)
async def retry_refund(payment_id: str) -> str:
    """Give back a payment that came for an order no longer pending."""
    payment = await store.payment(payment_id)
    if payment is None or payment["status"] not in ("refund_due", "refunded"):
        return "nothing to refund"
    if payment["status"] == "refund_due":
        await _provider_call(payment, "refund")
        await store.mark_refunded(payment_id)
    order = await store.get_order(payment["order_id"])
    await send_refund_issued.with_options(job_id=f"refund-mail-{payment_id}").enqueue(
        order.customer_email, order.id, payment_id)
    return "refunded"


# -- inventory ------------------------------------------------------------------------


@app.task(queue=INVENTORY, name="release-inventory", attempts=3,
          backoff={"type": "fixed", "delay": 5000}, remove_on_complete=KEEP_A_DAY,
          dead_letter_queue=DEAD)
async def release_inventory(order_id: int, reason: str) -> bool:
    """Put back the stock an order reserved (cancelled, or its payment failed): once."""
    return await store.release_stock(order_id)


@app.every(timedelta(hours=1), scheduler_id="stock-sync")
@app.task(queue=INVENTORY, name="stock-sync", attempts=3, remove_on_complete=KEEP_A_DAY)
async def stock_sync() -> int:
    """Publish the available stock of every product to the marketplace."""
    rows = await (await store.pool()).fetch("SELECT sku, stock FROM products ORDER BY sku")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(receiver("/marketplace/stock"),
                                   json={"items": [dict(r) for r in rows]})
        response.raise_for_status()
    return len(rows)


# -- manual review (concurrency 1) ------------------------------------------------------


async def _open_review(kind: str, ref: str, order_id: int | None, reason: str) -> bool:
    opened = await (await store.pool()).fetchval(
        "INSERT INTO reviews (kind, ref, order_id, reason) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING true", kind, ref, order_id, reason)
    await current_job().log(f"review {kind} {ref}: {reason}")
    return bool(opened)


@app.task(queue=REVIEW, name="review-high-value-order", remove_on_complete=KEEP_A_DAY)
async def review_high_value_order(order_id: int) -> bool:
    """A paid order above Rs 50,000 waits for an admin before it ships."""
    order = await store.get_order(order_id)
    return await _open_review("high_value_order", order.number, order_id,
                              f"total Rs {order.total} above Rs {store.HIGH_VALUE}")


@app.task(queue=REVIEW, name="review-suspicious-payment", remove_on_complete=KEEP_A_DAY)
async def review_suspicious_payment(event_id: str, order_id: int, reason: str) -> bool:
    """A payment that does not match its order (amount, unknown order)."""
    return await _open_review("suspicious_payment", event_id, None, reason)


@app.task(queue=REVIEW, name="review-return-request", remove_on_complete=KEEP_A_DAY)
async def review_return_request(order_id: int, reason: str) -> bool:
    """A customer asks to return an order."""
    order = await store.get_order(order_id)
    return await _open_review("return_request", order.number, order_id, reason)


# -- dead letters ----------------------------------------------------------------------


async def park_dead_letter(**data: Any) -> str:
    """A job that failed for good: keep it in PostgreSQL for an admin, and
    compensate where the shop can (a capture that failed releases the stock)."""
    job = current_job()
    origin = job.dead_letter_of or {}
    await (await store.pool()).execute(
        "INSERT INTO dead_letters (queue, job_id, name, failed_reason, attempts_made, data) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        origin.get("queue", "?"), str(origin.get("id", job.id)), job.name,
        str(origin.get("failed_reason", "")), int(origin.get("attempts_made", 0)), data)
    if job.name == "retry-payment-capture":
        order_id = await store.fail_payment(data["payment_id"])
        if order_id is not None:
            await settle(order_id)
    log.warning("dead letter %s from %s: %s", job.name, origin.get("queue"),
                origin.get("failed_reason"))
    return "parked"


# Every task that can fail for good has a twin of the same name on the
# dead-letter queue (a dead letter keeps its job's name and data).
for _task in list(app.tasks):
    if _task.options.get("dead_letter_queue") == DEAD:
        app.task(queue=DEAD, name=_task.name)(park_dead_letter)
