"""The ordering platform's business rules, as SQL on one connection inside the
caller's transaction. Each rule is idempotent (a conditional update, or a row
keyed by the job), so a retried or re-run job changes nothing twice, and each
returns the WhatsApp messages it wants sent: the caller enqueues them, with
their deterministic job ids, before it commits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "Message",
    "NoVendorAvailable",
    "award_biddings",
    "daily_report",
    "expire_order",
    "overdue_reminders",
    "reassign_vendor",
    "reconcile_credit",
    "time_out_confirmations",
]

# asyncpg has no type stubs: a connection is Any.
Conn = Any


@dataclass(frozen=True)
class Message:
    """A WhatsApp message to send, with the job id that makes it sent once."""

    job_id: str
    phone_number: str
    message: str


class NoVendorAvailable(Exception):
    """No active vendor of the order's zone is left to offer it to (retried:
    one may come online; after the last attempt the job is a dead letter)."""


async def expire_order(conn: Conn, order_id: str) -> list[Message]:
    """A still pending order past its expiry becomes ``expired``; its customer is told."""
    row = await conn.fetchrow(
        "UPDATE orders SET status = 'expired' WHERE id = $1 AND status = 'pending' "
        "RETURNING customer_phone", order_id)
    if row is None:  # confirmed meanwhile, or this job already ran
        return []
    return [Message(f"order-expired-{order_id}", row["customer_phone"],
                    f"Your order {order_id} expired before a vendor confirmed it.")]


async def reassign_vendor(conn: Conn, order_id: str, rejected_vendor_id: str) -> list[Message]:
    """Offer an order its vendor turned down to the next active vendor of its zone."""
    order = await conn.fetchrow(
        "SELECT zone, vendor_id, status FROM orders WHERE id = $1 FOR UPDATE", order_id)
    if order is None or order["status"] != "pending" or order["vendor_id"] != rejected_vendor_id:
        return []  # settled, or already reassigned by an earlier run of this job
    vendor = await conn.fetchrow(
        "SELECT id, phone FROM vendors v WHERE zone = $1 AND active AND NOT EXISTS "
        "(SELECT 1 FROM order_rejections r WHERE r.order_id = $2 AND r.vendor_id = v.id) "
        "ORDER BY id LIMIT 1", order["zone"], order_id)
    if vendor is None:
        raise NoVendorAvailable(f"no vendor left in zone {order['zone']!r} for order {order_id}")
    await conn.execute("UPDATE orders SET vendor_id = $2 WHERE id = $1", order_id, vendor["id"])
    return [Message(f"vendor-offer-{order_id}-{vendor['id']}", vendor["phone"],
                    f"New order {order_id} for you: please confirm.")]


async def award_biddings(conn: Conn, confirm_window_s: int) -> list[Message]:
    """Every open bidding past its close: the lowest bid wins and must confirm
    within ``confirm_window_s``; a bidding without bids ends ``no_bids``."""
    messages = []
    for bidding in await conn.fetch(
            "SELECT id FROM biddings WHERE status = 'open' AND closes_at <= now() "
            "ORDER BY id FOR UPDATE SKIP LOCKED"):
        messages += await _offer_next_bid(conn, bidding["id"], confirm_window_s, "no_bids")
    return messages


async def time_out_confirmations(conn: Conn, confirm_window_s: int) -> list[Message]:
    """Every pending wholesaler confirmation past its deadline times out and the
    next lowest bid is asked; with none left the bidding ends ``unfulfilled``."""
    messages = []
    for row in await conn.fetch(
            "UPDATE wholesaler_confirmations SET status = 'timed_out' "
            "WHERE status = 'pending' AND deadline <= now() RETURNING bidding_id, wholesaler"):
        messages.append(Message(
            f"confirm-timeout-{row['bidding_id']}-{row['wholesaler']}",
            await conn.fetchval("SELECT wholesaler_phone FROM bids WHERE bidding_id = $1 AND "
                                "wholesaler = $2", row["bidding_id"], row["wholesaler"]),
            f"Your confirmation window for bidding {row['bidding_id']} has closed."))
        messages += await _offer_next_bid(conn, row["bidding_id"], confirm_window_s,
                                          "unfulfilled")
    return messages


async def _offer_next_bid(conn: Conn, bidding_id: str, confirm_window_s: int,
                          none_left: str) -> list[Message]:
    bid = await conn.fetchrow(
        "SELECT wholesaler, wholesaler_phone, amount FROM bids b WHERE bidding_id = $1 AND "
        "NOT EXISTS (SELECT 1 FROM wholesaler_confirmations c WHERE c.bidding_id = $1 "
        "AND c.wholesaler = b.wholesaler) ORDER BY amount, wholesaler LIMIT 1", bidding_id)
    if bid is None:
        await conn.execute("UPDATE biddings SET status = $2, winner = NULL, "
                           "winning_amount = NULL WHERE id = $1", bidding_id, none_left)
        return []
    await conn.execute("UPDATE biddings SET status = 'awarded', winner = $2, winning_amount = $3 "
                       "WHERE id = $1", bidding_id, bid["wholesaler"], bid["amount"])
    await conn.execute(
        "INSERT INTO wholesaler_confirmations (bidding_id, wholesaler, deadline) "
        "VALUES ($1, $2, now() + make_interval(secs => $3))",
        bidding_id, bid["wholesaler"], confirm_window_s)
    return [Message(f"bid-won-{bidding_id}-{bid['wholesaler']}", bid["wholesaler_phone"],
                    f"You won bidding {bidding_id} at {bid['amount']}: confirm within "
                    f"{confirm_window_s // 60} minutes.")]


async def reconcile_credit(conn: Conn, job_id: str) -> int:
    """Set every credit balance that disagrees with its ledger to the ledger's
    sum; record the run under ``job_id`` and return how many were fixed."""
    fixed = await conn.fetch(
        "UPDATE credit_accounts a SET balance = l.total FROM (SELECT a2.customer_phone, "
        "COALESCE(SUM(l2.amount), 0) AS total FROM credit_accounts a2 LEFT JOIN "
        "credit_ledger l2 USING (customer_phone) GROUP BY a2.customer_phone) l "
        "WHERE a.customer_phone = l.customer_phone AND a.balance <> l.total "
        "RETURNING a.customer_phone")
    await conn.execute("INSERT INTO credit_reconciliations (job_id, accounts_fixed) "
                       "VALUES ($1, $2) ON CONFLICT (job_id) DO NOTHING", job_id, len(fixed))
    return len(fixed)


async def overdue_reminders(conn: Conn, tz: str) -> list[Message]:
    """A reminder for each unpaid invoice past its due date, once per local day."""
    rows = await conn.fetch(
        "UPDATE invoices SET reminded_on = (now() AT TIME ZONE $1)::date "
        "WHERE NOT paid AND due_date < (now() AT TIME ZONE $1)::date "
        "AND reminded_on IS DISTINCT FROM (now() AT TIME ZONE $1)::date "
        "RETURNING id, customer_phone, amount, due_date, reminded_on", tz)
    return [Message(f"payment-reminder-{r['id']}-{r['reminded_on']}", r["customer_phone"],
                    f"Invoice {r['id']} of {r['amount']} was due on {r['due_date']}: "
                    "please pay it.") for r in rows]


async def daily_report(conn: Conn, report_type: str, tz: str) -> dict[str, Any]:
    """The last 24 hours' orders, confirmations, expiries, revenue and messages,
    stored for the local day they mostly cover (yesterday, for a run at midnight)."""
    row = await conn.fetchrow(
        "SELECT ((now() - interval '1 day') AT TIME ZONE $1)::date AS report_date, "
        "count(*) AS orders, count(*) FILTER (WHERE status = 'confirmed') AS confirmed, "
        "count(*) FILTER (WHERE status = 'expired') AS expired, "
        "COALESCE(SUM(amount) FILTER (WHERE status = 'confirmed'), 0) AS revenue, "
        "(SELECT count(*) FROM whatsapp_messages WHERE sent_at > now() - interval '1 day') "
        "AS messages_sent FROM orders WHERE created_at > now() - interval '1 day'", tz)
    report: dict[str, Any] = {"report_type": report_type, **dict(row)}
    await conn.execute(
        "INSERT INTO daily_reports (report_date, report_type, orders, confirmed, expired, "
        "revenue, messages_sent) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (report_date, report_type) DO UPDATE SET orders = EXCLUDED.orders, "
        "confirmed = EXCLUDED.confirmed, expired = EXCLUDED.expired, "
        "revenue = EXCLUDED.revenue, messages_sent = EXCLUDED.messages_sent",
        report["report_date"], report_type, report["orders"], report["confirmed"],
        report["expired"], report["revenue"], report["messages_sent"])
    report["report_date"] = report["report_date"].isoformat()
    report["revenue"] = str(Decimal(report["revenue"]))
    return report
