"""The shop's HTTP front (FastAPI): customers, orders, payment webhooks, and
the admin views of the queues. Every slow or retried step is a job; a request
only writes what it must and enqueues the rest. conveyor's dashboard is
mounted at ``/jobs/``."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, Field

from conveyor.web.app import create_app

from . import store, tasks

__all__ = ["make_app", "sign_razorpay", "sign_stripe"]

#: Password-reset e-mails: at most one per address per minute, however often
#: the form is sent (the queue is not flooded; the job id of the first is returned).
RESET_THROTTLE_MS = 60_000


def _secret(provider: str) -> bytes:
    return os.environ.get(f"{provider.upper()}_WEBHOOK_SECRET", f"{provider}-dev-secret").encode()


def sign_stripe(body: bytes, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``body`` (what Stripe sends)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(_secret("stripe"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def sign_razorpay(body: bytes) -> str:
    """An ``X-Razorpay-Signature`` header for ``body``."""
    return hmac.new(_secret("razorpay"), body, hashlib.sha256).hexdigest()


def _check_stripe(body: bytes, header: str) -> None:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    expected = sign_stripe(body, int(parts.get("t", "0")))
    if not hmac.compare_digest(expected, header):
        raise HTTPException(400, "bad signature")


EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class NewCustomer(BaseModel):
    email: str = Field(pattern=EMAIL, max_length=254)
    name: str = Field(min_length=1, max_length=100)


class PasswordReset(BaseModel):
    email: str = Field(pattern=EMAIL, max_length=254)


class NewOrder(BaseModel):
    email: str = Field(pattern=EMAIL, max_length=254)
    items: dict[str, int] = Field(min_length=1)


class ReturnRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


def make_app(redis_url: str | None = None) -> FastAPI:
    """The shop's ASGI app, with conveyor's dashboard at ``/jobs/``."""
    dashboard = create_app(redis_url or os.environ.get("CONVEYOR_REDIS_URL"),
                           queues=tasks.app.queue_names())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(dashboard.router.lifespan_context(dashboard))
            stack.push_async_callback(store.close)
            stack.push_async_callback(tasks.app.close)
            yield

    api = FastAPI(title="shop", lifespan=lifespan)
    api.mount("/jobs", dashboard)

    @api.post("/customers", status_code=201)
    async def create_customer(body: NewCustomer) -> dict[str, str]:
        added = await (await store.pool()).fetchval(
            "INSERT INTO customers (email, name) VALUES ($1, $2) ON CONFLICT DO NOTHING "
            "RETURNING true", body.email, body.name)
        if not added:
            raise HTTPException(409, "customer exists")
        await tasks.send_welcome_email.enqueue(body.email, body.name)
        return {"email": body.email}

    @api.post("/password-resets", status_code=202)
    async def password_reset(body: PasswordReset) -> dict[str, str]:
        job = await tasks.send_password_reset.with_options(deduplication={
            "id": f"password-reset-{body.email}", "ttl": RESET_THROTTLE_MS}).enqueue(body.email)
        return {"job": str(job.id)}

    @api.post("/orders", status_code=201)
    async def create_order(body: NewOrder) -> dict[str, Any]:
        try:
            order = await tasks.place_order(body.email, body.items)
        except store.OutOfStock as exc:
            raise HTTPException(409, f"out of stock: {exc}") from None
        return {"id": order.id, "number": order.number, "total": order.total,
                "status": order.status}

    @api.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, Any]:
        try:
            order = await store.get_order(order_id)
        except KeyError:
            raise HTTPException(404, "no such order") from None
        return {"id": order.id, "number": order.number, "total": order.total,
                "status": order.status, "payments": await store.payments_of(order_id)}

    @api.post("/orders/{order_id}/ship", status_code=202)
    async def ship(order_id: int) -> dict[str, str]:
        job = await tasks.update_order_status.enqueue(order_id, "shipped")
        return {"job": str(job.id)}

    @api.post("/orders/{order_id}/returns", status_code=202)
    async def request_return(order_id: int, body: ReturnRequest) -> dict[str, str]:
        job = await tasks.review_return_request.with_options(
            job_id=f"return-{order_id}").enqueue(order_id, body.reason)
        return {"job": str(job.id)}

    @api.post("/webhooks/stripe")
    async def stripe(request: Request,
                     stripe_signature: str = Header("")) -> dict[str, str]:
        body = await request.body()
        _check_stripe(body, stripe_signature)
        event = await request.json()
        intent = event["data"]["object"]
        # The event id is the job id: a re-delivery adds nothing while the job is
        # kept, and the task's own check covers the time after.
        job = await tasks.stripe_webhook.with_options(job_id=f"stripe-{event['id']}").enqueue(
            event["id"], event["type"], int(intent["metadata"]["order_id"]), intent["id"],
            int(intent["amount"]))
        return {"job": str(job.id)}

    @api.post("/webhooks/razorpay")
    async def razorpay(request: Request, x_razorpay_signature: str = Header(""),
                       x_razorpay_event_id: str = Header("")) -> dict[str, str]:
        body = await request.body()
        if not hmac.compare_digest(sign_razorpay(body), x_razorpay_signature):
            raise HTTPException(400, "bad signature")
        event = await request.json()
        payment = event["payload"]["payment"]["entity"]
        job = await tasks.razorpay_webhook.with_options(
            job_id=f"razorpay-{x_razorpay_event_id}").enqueue(
            x_razorpay_event_id, event["event"], int(payment["notes"]["order_id"]),
            payment["id"], int(payment["amount"]))
        return {"job": str(job.id)}

    @api.get("/admin/queues")
    async def queue_counts() -> dict[str, dict[str, int]]:
        """The seed's getJobCounts, per queue."""
        return {name: await tasks.app.queue(name).get_job_counts()
                for name in tasks.app.queue_names()}

    @api.get("/admin/failed/{queue}")
    async def failed_jobs(queue: str) -> list[dict[str, Any]]:
        """The seed's failed-job inspection: reason, data, attempts."""
        if queue not in tasks.app.queue_names():
            raise HTTPException(404, "no such queue")
        jobs = await tasks.app.queue(queue).get_jobs(["failed"], 0, 49)
        return [{"id": j.id, "name": j.name, "failedReason": j.failed_reason, "data": j.data,
                 "attemptsMade": j.attempts_made} for j in jobs]

    return api
