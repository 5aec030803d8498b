"""The ordering platform's HTTP front: its order endpoints, and conveyor's
dashboard and REST API mounted at ``/``, which serve the seed's monitoring
endpoints with its shapes (``GET /api/v1/queue/metrics``,
``/api/v1/queue/metrics/{queueName}``, ``/api/v1/queue/dead-letter/{queueName}``,
``POST /api/v1/queue/retry/{queueName}/{jobId}``,
``/api/v1/queue/clean/{queueName}`` with ``{"limit": 100}``, and
``GET /api/v1/queue/dashboard``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from conveyor.web.app import create_app as create_conveyor_app

from .db import close_pool, pool
from .tasks import JobType, add_delayed_job, add_job, app, dead_letter_queue

__all__ = ["create_web", "queue_names"]

#: An order nobody confirms expires after this long (the seed's example: 5 minutes).
ORDER_EXPIRY_MS = 5 * 60 * 1000


class NewOrder(BaseModel):
    """A customer's order for their zone."""

    customer_phone: str = Field(min_length=4)
    zone: str = Field(min_length=1)
    amount: Decimal = Field(gt=0)
    expires_in_ms: int = Field(default=ORDER_EXPIRY_MS, ge=0)


class Rejection(BaseModel):
    """The vendor turning an order down (or failing it)."""

    vendor_id: str


def queue_names() -> list[str]:
    """The eight queues and their dead-letter queues, as the dashboard shows them."""
    return [name for job_type in JobType for name in (job_type.value,
                                                      dead_letter_queue(job_type))]


def create_web(redis_url: str) -> FastAPI:
    """The front: order endpoints, and conveyor's dashboard and API (``/``,
    ``/api/v1``). Jobs go to ``redis_url``; PostgreSQL is ``$DATABASE_URL``."""
    app.connection = redis_url
    jobs = create_conveyor_app(redis_url, queues=queue_names())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with jobs.router.lifespan_context(jobs):
            try:
                yield
            finally:
                await close_pool()

    web = FastAPI(title="ordering", lifespan=lifespan)

    @web.post("/api/v1/orders", status_code=201)
    async def place_order(order: NewOrder) -> dict[str, Any]:
        """Place an order with the first vendor of its zone; it expires (a
        delayed ``order-expiry`` job) unless confirmed in time."""
        order_id = f"order-{uuid.uuid4().hex[:12]}"
        async with (await pool()).acquire() as conn, conn.transaction():
            vendor = await conn.fetchval(
                "SELECT id FROM vendors WHERE zone = $1 AND active ORDER BY id LIMIT 1",
                order.zone)
            if vendor is None:
                raise HTTPException(409, f"no vendor serves zone {order.zone!r}")
            await conn.execute(
                "INSERT INTO orders (id, customer_phone, zone, amount, vendor_id, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
                order_id, order.customer_phone, order.zone, order.amount, vendor,
                order.expires_in_ms / 1000)
            await add_delayed_job(JobType.ORDER_EXPIRY, {"order_id": order_id},
                                  order.expires_in_ms, job_id=f"expire-{order_id}")
        return {"success": True, "data": {"id": order_id, "vendor_id": vendor,
                                          "status": "pending"}}

    @web.post("/api/v1/orders/{order_id}/confirm")
    async def confirm_order(order_id: str) -> dict[str, Any]:
        """The vendor confirms: a pending order becomes ``confirmed``."""
        async with (await pool()).acquire() as conn:
            status = await conn.fetchval(
                "UPDATE orders SET status = 'confirmed' WHERE id = $1 AND status = 'pending' "
                "RETURNING status", order_id)
            if status is None:
                status = await conn.fetchval("SELECT status FROM orders WHERE id = $1",
                                             order_id)
        if status is None:
            raise HTTPException(404, f"no order {order_id}")
        return {"success": status == "confirmed", "data": {"id": order_id, "status": status}}

    @web.post("/api/v1/orders/{order_id}/reject")
    async def reject_order(order_id: str, rejection: Rejection) -> dict[str, Any]:
        """The vendor turns the order down: a ``vendor-fallback`` job re-assigns it."""
        async with (await pool()).acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT vendor_id FROM orders WHERE id = $1 AND status = 'pending' FOR UPDATE",
                order_id)
            if found != rejection.vendor_id:
                raise HTTPException(409, f"order {order_id} is not pending with "
                                         f"{rejection.vendor_id}")
            await conn.execute("INSERT INTO order_rejections VALUES ($1, $2) "
                               "ON CONFLICT DO NOTHING", order_id, rejection.vendor_id)
            job = await add_job(JobType.VENDOR_FALLBACK, {
                "order_id": order_id, "rejected_vendor_id": rejection.vendor_id},
                job_id=f"fallback-{order_id}-{rejection.vendor_id}")
        return {"success": True, "data": {"id": order_id, "jobId": job.id}}

    @web.get("/api/v1/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, Any]:
        """An order's state."""
        async with (await pool()).acquire() as conn:
            row = await conn.fetchrow("SELECT id, zone, vendor_id, status, amount FROM orders "
                                      "WHERE id = $1", order_id)
        if row is None:
            raise HTTPException(404, f"no order {order_id}")
        return {"success": True, "data": {**dict(row), "amount": str(row["amount"])}}

    web.mount("/", jobs)
    return web
