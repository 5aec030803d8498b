"""The auction's durable record in PostgreSQL, written by the workers.

Every write here is safe to repeat (a job may run again after a retry or a
worker's crash): a bid is inserted once by its id, an auction update only
moves forward (``total_bids`` grows with each accepted bid), and an auction
ends once (``status = 'active'`` guards the update). ``is_winning`` stays
exact whatever order the jobs of different queues run in: every write that
changes an auction's leading bid and every bid insert first locks the
auction's row, and the insert reads the leader under that lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

__all__ = [
    "FinalState",
    "apply_schema",
    "connect",
    "finish_auction",
    "insert_auction",
    "persist_bid",
    "update_auction",
]

SCHEMA = Path(__file__).with_name("schema.sql")

#: A job waits at most this long for a row another transaction holds, then
#: fails and is retried with backoff, rather than holding a worker slot.
LOCK_TIMEOUT_MS = 1_000
STATEMENT_TIMEOUT_MS = 10_000


async def connect(url: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool with the example's timeouts."""
    return await asyncpg.create_pool(
        url, min_size=1, max_size=max_size,
        server_settings={"lock_timeout": str(LOCK_TIMEOUT_MS),
                         "statement_timeout": str(STATEMENT_TIMEOUT_MS)},
    )


async def apply_schema(pool: asyncpg.Pool) -> None:
    """Create the tables if they do not exist yet."""
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA.read_text())


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def parse_time(text: str) -> datetime:
    """``"2026-01-28T12:00:00.000Z"`` -> an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def insert_auction(pool: asyncpg.Pool, auction_id: str, *, title: str,
                         starting_price: str, min_increment: str, start_ms: int,
                         end_ms: int) -> None:
    """The auction's row, written when it opens (before Redis takes bids)."""
    await pool.execute(
        """INSERT INTO auctions (id, title, starting_price, min_increment, start_time, end_time)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        auction_id, title, Decimal(starting_price), Decimal(min_increment), _time(start_ms),
        _time(end_ms),
    )


async def persist_bid(pool: asyncpg.Pool, bid: dict[str, Any]) -> str:
    """Insert an accepted bid once: ``persisted``, ``already_persisted`` (its id
    is there) or ``duplicate`` (a concurrent run, or another id with the same
    auction and amount, got there first: PostgreSQL's 23505). Raises
    LookupError if the auction does not exist."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM bids WHERE id = $1", bid["bidId"]):
            return "already_persisted"
        winning = await conn.fetchrow(
            "SELECT winning_bid_id FROM auctions WHERE id = $1 FOR UPDATE", bid["auctionId"])
        if winning is None:
            raise LookupError(f"auction {bid['auctionId']} does not exist")
        try:
            async with conn.transaction():  # a savepoint: a 23505 leaves the rest usable
                row = await conn.fetchrow(
                    """INSERT INTO bids (id, auction_id, bidder_id, amount, bid_time,
                                         previous_bid, is_winning, ip_address, user_agent)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                       ON CONFLICT (id) DO NOTHING
                       RETURNING id""",
                    bid["bidId"], bid["auctionId"], bid["bidderId"], Decimal(bid["amount"]),
                    parse_time(bid["bidTime"]),
                    None if bid.get("previousBid") is None else Decimal(bid["previousBid"]),
                    str(winning["winning_bid_id"]) == bid["bidId"], bid.get("ipAddress"),
                    bid.get("userAgent"),
                )
        except asyncpg.UniqueViolationError:
            return "duplicate"
        return "persisted" if row else "duplicate"


async def _mark_winner(conn: asyncpg.Connection, auction_id: str, bid_id: str | None) -> None:
    await conn.execute(
        """UPDATE bids SET is_winning = (id IS NOT DISTINCT FROM $2::uuid)
           WHERE auction_id = $1 AND is_winning <> (id IS NOT DISTINCT FROM $2::uuid)""",
        auction_id, bid_id)


async def update_auction(pool: asyncpg.Pool, update: dict[str, Any]) -> bool:
    """Bring the auction's row up to the state after bid number ``totalBids``;
    False (nothing written) if the row already shows a later bid or the
    auction has ended (the finalization wrote the last state)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE auctions
               SET current_bid = $1, highest_bidder_id = $2, winning_bid_id = $3,
                   total_bids = $4, end_time = COALESCE($5, end_time),
                   updated_at = CURRENT_TIMESTAMP
               WHERE id = $6 AND status = 'active' AND total_bids < $4
               RETURNING id""",
            Decimal(update["currentBid"]), update["highestBidderId"], update.get("highestBidId"),
            update["totalBids"],
            parse_time(update["endTime"]) if update.get("endTime") else None,
            update["auctionId"],
        )
        if row is None:
            return False
        await _mark_winner(conn, update["auctionId"], update.get("highestBidId"))
        return True


@dataclass(frozen=True)
class FinalState:
    """An ended auction as Redis holds it."""

    current_bid: str | None
    highest_bidder_id: str | None
    winning_bid_id: str | None
    total_bids: int
    end_ms: int
    ended_ms: int


async def finish_auction(pool: asyncpg.Pool, auction_id: str, final: FinalState) -> bool:
    """Record the end (status 'ended' with Redis' final price, winner and end
    time); False if the row had already ended. Unlike the seed's SQL there is
    no ``end_time <= CURRENT_TIMESTAMP`` guard: Redis' script already decided
    the end by Redis' clock, and PostgreSQL's clock may differ."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE auctions
               SET status = 'ended', current_bid = $1, highest_bidder_id = $2,
                   winning_bid_id = $3, total_bids = $4, end_time = $5, ended_at = $6,
                   updated_at = CURRENT_TIMESTAMP
               WHERE id = $7 AND status = 'active'
               RETURNING id""",
            None if final.current_bid is None else Decimal(final.current_bid),
            final.highest_bidder_id, final.winning_bid_id, final.total_bids,
            _time(final.end_ms), _time(final.ended_ms), auction_id,
        )
        if row is None:
            return False
        await _mark_winner(conn, auction_id, final.winning_bid_id)
        return True
