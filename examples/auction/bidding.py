"""The live auction in Redis: the only place a bid is decided.

``place_bid.lua`` accepts or rejects a bid atomically (auction active, amount
at least the current bid plus the increment, bidder not already leading,
anti-sniping); ``finalize_auction.lua`` ends an auction once and refuses a
second run. Amounts travel as strings with two decimals ("7500.00") and are
integer cents inside Redis, so no float ever rounds a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "ACTIVE_INDEX",
    "AuctionState",
    "AuctionStore",
    "BidAccepted",
    "BidRejected",
    "Finalization",
    "auction_key",
    "cents",
    "channel",
    "iso",
    "money",
    "redis_client",
]

ACTIVE_INDEX = "auctions:active"
_LUA = Path(__file__).parent / "lua"


def redis_client(url: str, max_connections: int = 50) -> Redis:
    """A client whose callers wait for a free connection (a burst of bids
    larger than the pool queues up instead of failing with "Too many
    connections") and that retries a call on a dropped connection (a bid
    retried this way is answered as the first time: see place_bid.lua)."""
    return Redis.from_pool(BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=30,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError]))


def auction_key(auction_id: str) -> str:
    """The Redis hash of one auction."""
    return f"auction:{auction_id}"


def channel(auction_id: str) -> str:
    """The pub/sub channel an auction's events are published on."""
    return f"auction-events:{auction_id}"


def cents(amount: str | Decimal) -> int:
    """``"7500.00"`` -> 750000; ValueError for anything but a positive amount
    with at most two decimals."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01"),
                                                                     ROUND_DOWN):
        raise ValueError(f"amount must be positive with at most two decimals: {amount!r}")
    return int(value * 100)


def money(amount_cents: int) -> str:
    """750000 -> ``"7500.00"``."""
    return f"{amount_cents // 100}.{amount_cents % 100:02d}"


def iso(ms: int) -> str:
    """Epoch ms -> ``"2026-01-28T12:00:00.000Z"`` (the seed's bidTime format)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class BidAccepted:
    """What Redis decided for an accepted bid."""

    bid_id: str
    auction_id: str
    bidder_id: str
    amount: str
    bid_ms: int
    previous_bid: str | None
    total_bids: int
    end_ms: int
    extended: bool


@dataclass(frozen=True)
class BidRejected:
    """Why Redis refused a bid; nothing was written and nothing is enqueued."""

    code: str
    message: str
    minimum: str | None = None


_REJECTIONS = {-1: "AUCTION_NOT_FOUND", -2: "AUCTION_NOT_ACTIVE", -3: "BID_TOO_LOW",
               -4: "ALREADY_HIGHEST_BIDDER"}


@dataclass(frozen=True)
class AuctionState:
    """An auction as Redis holds it now."""

    auction_id: str
    status: str
    current_bid: str | None
    highest_bidder_id: str | None
    highest_bid_id: str | None
    total_bids: int
    end_ms: int
    min_next_bid: str
    extensions: int
    ended_ms: int | None

    def as_json(self) -> dict[str, Any]:
        """The camelCase shape the HTTP and WebSocket clients see."""
        return {
            "auctionId": self.auction_id, "status": self.status, "currentBid": self.current_bid,
            "highestBidderId": self.highest_bidder_id, "highestBidId": self.highest_bid_id,
            "totalBids": self.total_bids, "endTime": iso(self.end_ms),
            "minNextBid": self.min_next_bid, "extensions": self.extensions,
        }


@dataclass(frozen=True)
class Finalization:
    """What ``finalize_auction.lua`` said: ``ended`` now, ``already`` ended,
    ``not_yet`` (a bid extended it: ``remaining_ms`` left) or ``missing``."""

    outcome: str
    remaining_ms: int = 0


class AuctionStore:
    """The auctions in one Redis: create, bid, read, finalize."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._place = redis.register_script((_LUA / "place_bid.lua").read_text())
        self._finalize = redis.register_script((_LUA / "finalize_auction.lua").read_text())

    async def now_ms(self) -> int:
        """Redis' clock, the one every script uses."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def create(self, auction_id: str, *, starting_price: str, min_increment: str,
                     end_ms: int, snipe_window_ms: int, extension_ms: int) -> None:
        """Open an auction for bids until ``end_ms``."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(auction_key(auction_id), mapping={
                "status": "active", "starting_cents": cents(starting_price),
                "increment_cents": cents(min_increment), "total_bids": 0, "end_ms": end_ms,
                "snipe_window_ms": snipe_window_ms, "extension_ms": extension_ms,
                "extensions": 0,
            })
            pipe.zadd(ACTIVE_INDEX, {auction_id: end_ms})
            await pipe.execute()

    async def place_bid(self, auction_id: str, bidder_id: str, amount: str,
                        bid_id: str) -> BidAccepted | BidRejected:
        """Let Redis decide the bid (``ValueError`` for a malformed amount)."""
        amount_cents = cents(amount)
        reply = await self._place(keys=[auction_key(auction_id), ACTIVE_INDEX],
                                  args=[auction_id, bidder_id, amount_cents, bid_id])
        code = int(reply[0])
        if code < 0:
            minimum = money(int(reply[2])) if len(reply) > 2 else None
            return BidRejected(_REJECTIONS[code], _text(reply[1]), minimum)
        previous = _text(reply[2])
        return BidAccepted(
            bid_id=bid_id, auction_id=auction_id, bidder_id=bidder_id,
            amount=money(amount_cents), bid_ms=int(reply[1]),
            previous_bid=money(int(previous)) if previous else None,
            total_bids=int(reply[3]), end_ms=int(reply[4]), extended=bool(int(reply[5])),
        )

    async def finalize(self, auction_id: str) -> Finalization:
        """Run ``finalize_auction.lua`` once."""
        reply = await self._finalize(keys=[auction_key(auction_id), ACTIVE_INDEX],
                                     args=[auction_id])
        code = int(reply[0])
        if code == 1:
            return Finalization("ended")
        if code == -2:
            return Finalization("not_yet", int(reply[2]))
        return Finalization("already" if code == -3 else "missing")

    async def state(self, auction_id: str) -> AuctionState | None:
        """The auction's current state, or None if Redis has no such auction."""
        raw = await self.redis.hgetall(auction_key(auction_id))
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        total = int(f["total_bids"])
        current = int(f["current_cents"]) if f.get("current_cents") else None
        minimum = int(f["starting_cents"]) if current is None else (
            current + int(f["increment_cents"]))
        return AuctionState(
            auction_id=auction_id, status=f["status"],
            current_bid=None if current is None else money(current),
            highest_bidder_id=f.get("highest_bidder"), highest_bid_id=f.get("highest_bid_id"),
            total_bids=total, end_ms=int(f["end_ms"]), min_next_bid=money(minimum),
            extensions=int(f.get("extensions", 0)),
            ended_ms=int(f["ended_ms"]) if f.get("ended_ms") else None,
        )

    async def active_ids(self) -> list[str]:
        """Auctions still taking bids, soonest end first."""
        return [_text(x) for x in await self.redis.zrange(ACTIVE_INDEX, 0, -1)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
