"""The shop's PostgreSQL side: one function per state change, each one
transaction, each safe to run twice (a retried or re-delivered job finds its
effect already there and changes nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson

__all__ = [
    "HIGH_VALUE", "Order", "OutOfStock", "PaymentEvent", "apply_schema", "cancel_if_pending",
    "close", "connect", "create_order", "email_sent", "fail_payment", "get_order",
    "mark_captured", "mark_refunded", "mark_shipped", "new_reset_token", "payment",
    "payments_of", "pool", "record_email", "record_payment_event", "release_stock",
]

SCHEMA = Path(__file__).with_name("schema.sql")
#: Orders above this (rupees) go to manual review before they ship.
HIGH_VALUE = 50_000

_pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(),
                              decoder=orjson.loads, schema="pg_catalog")


async def connect(url: str | None = None) -> asyncpg.Pool:
    """A pool on ``url`` (default ``$DATABASE_URL``)."""
    dsn = url or os.environ["DATABASE_URL"]
    made: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, init=_init)
    return made


async def pool() -> asyncpg.Pool:
    """This event loop's pool on ``$DATABASE_URL`` (made on first use)."""
    loop = asyncio.get_running_loop()
    if loop not in _pools:
        _pools[loop] = await connect()
    return _pools[loop]


async def close() -> None:
    """Close this event loop's pool."""
    found = _pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


async def apply_schema(url: str | None = None) -> None:
    """Create the tables that do not exist yet."""
    conn = await asyncpg.connect(url or os.environ["DATABASE_URL"])
    try:
        await conn.execute(SCHEMA.read_text())
    finally:
        await conn.close()


class OutOfStock(Exception):
    """An order asked for more than is in stock."""


@dataclass(frozen=True)
class Order:
    """An order as the jobs read it."""

    id: int
    customer_email: str
    total: int
    status: str
    stock_released: bool

    @property
    def number(self) -> str:
        return f"ORD-{self.id:05d}"


async def create_order(email: str, items: dict[str, int]) -> Order:
    """Reserve the items' stock and record a pending order, or raise OutOfStock."""
    db = await pool()
    async with db.acquire() as conn, conn.transaction():
        total = 0
        prices: dict[str, int] = {}
        for sku, quantity in sorted(items.items()):  # one lock order: no deadlock
            price = await conn.fetchval(
                "UPDATE products SET stock = stock - $2 WHERE sku = $1 AND stock >= $2 "
                "RETURNING price", sku, quantity)
            if price is None:
                raise OutOfStock(sku)
            prices[sku] = price
            total += price * quantity
        order_id = await conn.fetchval(
            "INSERT INTO orders (customer_email, total) VALUES ($1, $2) RETURNING id",
            email, total)
        await conn.executemany(
            "INSERT INTO order_items (order_id, sku, quantity, price) VALUES ($1, $2, $3, $4)",
            [(order_id, sku, q, prices[sku]) for sku, q in items.items()])
    return Order(order_id, email, total, "pending", False)


async def get_order(order_id: int) -> Order:
    """The order ``order_id`` (KeyError if there is none)."""
    row = await (await pool()).fetchrow(
        "SELECT id, customer_email, total, status, stock_released_at IS NOT NULL AS released "
        "FROM orders WHERE id = $1", order_id)
    if row is None:
        raise KeyError(order_id)
    return Order(row["id"], row["customer_email"], row["total"], row["status"], row["released"])


async def payments_of(order_id: int) -> list[dict[str, Any]]:
    """The order's payments (payment_id, provider, amount, status)."""
    rows = await (await pool()).fetch(
        "SELECT payment_id, provider, amount, status FROM payments WHERE order_id = $1 "
        "ORDER BY created_at", order_id)
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class PaymentEvent:
    """A provider's webhook, reduced to what the shop needs (no card data)."""

    provider: str
    event_id: str
    type: str          # authorized, captured, failed
    order_id: int
    payment_id: str
    amount: int


async def record_payment_event(event: PaymentEvent) -> str:
    """Apply a payment event once: ``duplicate`` if its id was seen, else what it
    did: ``paid``, ``authorized``, ``refund_due`` (money for an order no longer
    pending), ``suspicious`` (amount is not the order's total), ``failed``."""
    db = await pool()
    async with db.acquire() as conn, conn.transaction():
        new = await conn.fetchval(
            "INSERT INTO webhook_events (event_id, provider, type, order_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            event.event_id, event.provider, event.type, event.order_id)
        if not new:
            return "duplicate"
        order = await conn.fetchrow(
            "SELECT total, status FROM orders WHERE id = $1 FOR UPDATE", event.order_id)
        if order is None or order["total"] != event.amount:
            return "suspicious"
        if event.type == "failed":
            return "failed"
        status = "authorized" if event.type == "authorized" else "captured"
        inserted = await conn.fetchval(
            "INSERT INTO payments (payment_id, provider, order_id, amount, status) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            event.payment_id, event.provider, event.order_id, event.amount, status)
        if not inserted:  # another event of a known payment: only authorized -> captured
            moved = status == "captured" and await conn.fetchval(
                "UPDATE payments SET status = 'captured', updated_at = now() "
                "WHERE payment_id = $1 AND status = 'authorized' RETURNING true",
                event.payment_id)
            if not moved:
                return "duplicate"
        if status == "authorized":
            return "authorized"
        return await _settle_capture(conn, event.payment_id, event.order_id)


async def _settle_capture(conn: asyncpg.Connection, payment_id: str, order_id: int) -> str:
    paid = await conn.fetchval(
        "UPDATE orders SET status = 'paid', paid_at = now() WHERE id = $1 "
        "AND status = 'pending' RETURNING true", order_id)
    if paid:
        return "paid"
    # The order expired (or was paid by another payment): give this money back.
    await conn.execute("UPDATE payments SET status = 'refund_due', updated_at = now() "
                       "WHERE payment_id = $1", payment_id)
    return "refund_due"


async def mark_captured(payment_id: str) -> str:
    """An authorized payment was captured: ``paid`` or ``refund_due``; ``done`` if
    it was no longer authorized."""
    db = await pool()
    async with db.acquire() as conn, conn.transaction():
        order_id = await conn.fetchval(
            "UPDATE payments SET status = 'captured', updated_at = now() "
            "WHERE payment_id = $1 AND status = 'authorized' RETURNING order_id", payment_id)
        if order_id is None:
            return "done"
        await conn.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
        return await _settle_capture(conn, payment_id, order_id)


async def payment(payment_id: str) -> dict[str, Any] | None:
    """One payment's row, or None."""
    row = await (await pool()).fetchrow("SELECT * FROM payments WHERE payment_id = $1",
                                        payment_id)
    return None if row is None else dict(row)


async def fail_payment(payment_id: str) -> int | None:
    """A capture that failed for good: the payment fails and its order, if still
    pending, becomes ``payment_failed``; the order's id."""
    db = await pool()
    async with db.acquire() as conn, conn.transaction():
        order_id: int | None = await conn.fetchval(
            "UPDATE payments SET status = 'failed', updated_at = now() "
            "WHERE payment_id = $1 AND status = 'authorized' RETURNING order_id", payment_id)
        if order_id is not None:
            await conn.execute("UPDATE orders SET status = 'payment_failed', cancelled_at = now()"
                               " WHERE id = $1 AND status = 'pending'", order_id)
        return order_id


async def mark_refunded(payment_id: str) -> bool:
    """The provider refunded a payment; False if it was not due."""
    done = await (await pool()).fetchval(
        "UPDATE payments SET status = 'refunded', updated_at = now() "
        "WHERE payment_id = $1 AND status = 'refund_due' RETURNING true", payment_id)
    return bool(done)


async def cancel_if_pending(order_id: int) -> bool:
    """Cancel an order nobody paid; False if it is no longer pending."""
    done = await (await pool()).fetchval(
        "UPDATE orders SET status = 'cancelled', cancelled_at = now() "
        "WHERE id = $1 AND status = 'pending' RETURNING true", order_id)
    return bool(done)


async def mark_shipped(order_id: int) -> bool:
    """A paid order shipped; False if it was not paid (or shipped already)."""
    done = await (await pool()).fetchval(
        "UPDATE orders SET status = 'shipped', shipped_at = now() "
        "WHERE id = $1 AND status = 'paid' RETURNING true", order_id)
    return bool(done)


async def release_stock(order_id: int) -> bool:
    """Put a cancelled or failed order's reservation back in stock, once."""
    db = await pool()
    async with db.acquire() as conn, conn.transaction():
        released = await conn.fetchval(
            "UPDATE orders SET stock_released_at = now() WHERE id = $1 "
            "AND stock_released_at IS NULL AND status IN ('cancelled', 'payment_failed') "
            "RETURNING true", order_id)
        if released:
            await conn.execute(
                "UPDATE products p SET stock = p.stock + i.quantity FROM order_items i "
                "WHERE i.order_id = $1 AND p.sku = i.sku", order_id)
        return bool(released)


async def email_sent(key: str) -> bool:
    """Whether the e-mail ``key`` went out already."""
    return bool(await (await pool()).fetchval(
        "SELECT true FROM emails_sent WHERE key = $1", key))


async def record_email(key: str, recipient: str, subject: str) -> None:
    """Note that the e-mail ``key`` went out."""
    await (await pool()).execute(
        "INSERT INTO emails_sent (key, recipient, subject) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING", key, recipient, subject)


async def new_reset_token(email: str) -> str:
    """A password-reset token for ``email``; only its hash is stored."""
    token = secrets.token_urlsafe(24)
    await (await pool()).execute(
        "INSERT INTO password_resets (email, token_hash) VALUES ($1, $2)",
        email, hashlib.sha256(token.encode()).hexdigest())
    return token
