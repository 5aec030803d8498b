"""The auction's HTTP and WebSocket front (FastAPI).

A bid arrives as a WebSocket message ``{"type": "BID_PLACED", ...}`` (or a
``POST``), Redis' Lua script decides it, and only if it was accepted does the
server enqueue ``persist-bid`` and ``update-auction``, move the auction's
finalization job when the bid extended the end, and publish the bid on the
auction's Redis pub/sub channel. Every server instance subscribes to those
channels and forwards each message to its own watchers, so a bid placed on
one instance reaches the browsers connected to all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from conveyor import JobStateError

from . import db
from .bidding import AuctionStore, BidAccepted, BidRejected, cents, channel, iso, redis_client
from .tasks import (
    AUCTION_FINALIZATION,
    finalize_auction,
    persist_bid,
    queue_metrics,
    update_auction,
)
from .tasks import (
    app as jobs,
)

__all__ = ["AuctionService", "Hub", "create_web_app"]

log = logging.getLogger("examples.auction.web")

_PAGE = """<!doctype html><meta charset="utf-8"><title>Auction</title>
<style>body{font:16px system-ui;margin:2em;max-width:40em}li{margin:.2em 0}</style>
<h1 id="title">Auction</h1><div id="state"></div><ul id="bids"></ul>
<script>
const id = location.pathname.split('/')[2];
const $ = (s) => document.querySelector(s);
if (!id) {
  fetch('/api/auctions').then(r => r.json()).then(list => { $('#state').innerHTML =
    list.map(a => `<p><a href="/auctions/${a.auctionId}">${a.auctionId}</a>
      ${a.currentBid ?? 'no bids'}</p>`).join('') || 'No active auction.'; });
} else {
  const ws = new WebSocket(`ws://${location.host}/ws/auctions/${id}`);
  ws.onmessage = (e) => { const m = JSON.parse(e.data);
    if (m.type === 'BID_ACCEPTED') $('#bids').insertAdjacentHTML('afterbegin',
      `<li>${m.amount} by ${m.bidderId.slice(0, 8)} at ${m.bidTime}</li>`);
    $('#state').textContent = `${m.type}: current bid ${m.amount ?? m.currentBid ?? 'none'}`
      + `, ends ${m.endTime}`; };
}
</script>"""


class CreateAuction(BaseModel):
    """A new auction; amounts are strings with two decimals, as in the seed."""

    title: str = Field(min_length=1, max_length=200)
    startingPrice: str
    minIncrement: str
    durationSeconds: float = Field(gt=0, le=30 * 86400)
    antiSnipeSeconds: float = Field(default=30, ge=0)
    extensionSeconds: float = Field(default=30, ge=0)


class PlaceBid(BaseModel):
    """A bid from a client."""

    bidderId: uuid.UUID
    amount: str


class Hub:
    """Fans the auctions' pub/sub messages out to this instance's WebSockets."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub = redis.pubsub()
        self._watchers: dict[str, set[asyncio.Queue[str | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe, and return once Redis confirmed it (no message is missed after)."""
        await self._subscribe()
        self._task = asyncio.create_task(self._forward(), name="auction-hub")

    async def _subscribe(self) -> None:
        await self._pubsub.psubscribe("auction-events:*")
        while (await self._pubsub.get_message(timeout=5.0) or {}).get("type") != "psubscribe":
            pass

    async def _forward(self) -> None:
        while True:
            try:
                async for message in self._pubsub.listen():
                    self._dispatch(message)
            except RedisConnectionError as exc:
                log.warning("pub/sub connection lost (%s); subscribing again", exc)
            # Messages published while Redis was away are gone (pub/sub keeps
            # none): a watcher that reconnects gets the auction's state anew.
            await asyncio.sleep(1.0)
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = self._redis.pubsub()
            with contextlib.suppress(RedisConnectionError):
                await self._subscribe()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "pmessage":
            auction_id = message["channel"].decode().partition(":")[2]
            data = message["data"].decode()
            for outbox in list(self._watchers.get(auction_id, ())):
                try:
                    outbox.put_nowait(data)
                except asyncio.QueueFull:  # a watcher this far behind is dropped
                    self.leave(auction_id, outbox)
                    outbox.get_nowait()
                    outbox.put_nowait(None)

    def join(self, auction_id: str) -> asyncio.Queue[str | None]:
        """A watcher's outbox of the auction's messages (None: it must close)."""
        outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1000)
        self._watchers.setdefault(auction_id, set()).add(outbox)
        return outbox

    def leave(self, auction_id: str, outbox: asyncio.Queue[str | None]) -> None:
        """Stop forwarding to ``outbox``."""
        watchers = self._watchers.get(auction_id)
        if watchers is not None:
            watchers.discard(outbox)
            if not watchers:
                del self._watchers[auction_id]

    async def close(self) -> None:
        """Unsubscribe and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class AuctionService:
    """Opening auctions and placing bids: Redis decides, then jobs are enqueued."""

    def __init__(self, store: AuctionStore, pool: asyncpg.Pool) -> None:
        self.store = store
        self.pool = pool

    async def create_auction(self, spec: CreateAuction) -> dict[str, Any]:
        """Write the auction's row, open it in Redis, schedule its finalization."""
        for amount in (spec.startingPrice, spec.minIncrement):
            cents(amount)  # a malformed amount is a ValueError before anything is written
        auction_id = str(uuid.uuid4())
        now = await self.store.now_ms()
        end = now + int(spec.durationSeconds * 1000)
        await db.insert_auction(self.pool, auction_id, title=spec.title,
                                starting_price=spec.startingPrice,
                                min_increment=spec.minIncrement, start_ms=now, end_ms=end)
        await self.store.create(auction_id, starting_price=spec.startingPrice,
                                min_increment=spec.minIncrement, end_ms=end,
                                snipe_window_ms=int(spec.antiSnipeSeconds * 1000),
                                extension_ms=int(spec.extensionSeconds * 1000))
        # One finalization job per auction, at its end time; its id lets a bid move it.
        await finalize_auction.with_options(
            job_id=f"finalize-{auction_id}", delay=end - now).enqueue(auctionId=auction_id)
        return {"auctionId": auction_id, "title": spec.title, "endTime": iso(end)}

    async def place_bid(self, auction_id: str, bidder_id: str, amount: str, *,
                        ip_address: str | None = None,
                        user_agent: str | None = None) -> BidAccepted | BidRejected:
        """Let Redis decide; only an accepted bid enqueues work and is broadcast."""
        try:
            decision = await self.store.place_bid(auction_id, bidder_id, amount,
                                                  str(uuid.uuid4()))
        except ValueError as exc:
            return BidRejected("INVALID_AMOUNT", str(exc))
        if isinstance(decision, BidRejected):
            return decision
        bid_time = iso(decision.bid_ms)
        await persist_bid.with_options(job_id=f"bid-{decision.bid_id}").enqueue(
            auctionId=auction_id, bidderId=bidder_id, amount=decision.amount,
            bidTime=bid_time, previousBid=decision.previous_bid, ipAddress=ip_address,
            userAgent=user_agent, bidId=decision.bid_id)
        await update_auction.with_options(
            job_id=f"update-{auction_id}-{decision.total_bids}").enqueue(
            auctionId=auction_id, currentBid=decision.amount, highestBidderId=bidder_id,
            totalBids=decision.total_bids, endTime=iso(decision.end_ms),
            highestBidId=decision.bid_id)
        if decision.extended:
            await self.move_finalization(auction_id, decision.end_ms - decision.bid_ms)
        await self.store.redis.publish(channel(auction_id), orjson.dumps(bid_message(decision)))
        return decision

    async def move_finalization(self, auction_id: str, delay_ms: int) -> int | None:
        """Make the auction's finalization job due at its new end; its new due
        time, or None if it already started (it then reschedules itself)."""
        job = await jobs.queue(AUCTION_FINALIZATION).get_job(f"finalize-{auction_id}")
        if job is None:
            return None
        try:
            return await job.change_delay(max(delay_ms, 0))
        except JobStateError:
            return None


def bid_message(bid: BidAccepted) -> dict[str, Any]:
    """The broadcast of an accepted bid."""
    return {"type": "BID_ACCEPTED", "auctionId": bid.auction_id, "bidId": bid.bid_id,
            "bidderId": bid.bidder_id, "amount": bid.amount, "bidTime": iso(bid.bid_ms),
            "previousBid": bid.previous_bid, "totalBids": bid.total_bids,
            "endTime": iso(bid.end_ms), "extended": bid.extended}


def _rejection(rejected: BidRejected) -> dict[str, Any]:
    return {"code": rejected.code, "message": rejected.message, "minimum": rejected.minimum}


def create_web_app(redis_url: str, database_url: str) -> FastAPI:
    """The auction's FastAPI app on the given Redis and PostgreSQL."""
    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        jobs.connection = redis_url
        redis = redis_client(redis_url)
        pool = await db.connect(database_url)
        hub = Hub(redis)
        await hub.start()
        api.state.service = AuctionService(AuctionStore(redis), pool)
        api.state.hub = hub
        try:
            yield
        finally:
            await hub.close()
            await pool.close()
            await redis.aclose()
            await jobs.close()

    api = FastAPI(title="auction", lifespan=lifespan)

    def service() -> AuctionService:
        return api.state.service  # type: ignore[no-any-return]

    @api.get("/", response_class=HTMLResponse)
    @api.get("/auctions/{auction_id}", response_class=HTMLResponse)
    async def page(auction_id: str | None = None) -> str:
        return _PAGE

    @api.post("/api/auctions", status_code=201)
    async def create(spec: CreateAuction) -> dict[str, Any]:
        try:
            return await service().create_auction(spec)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @api.get("/api/auctions")
    async def active() -> list[dict[str, Any]]:
        store = service().store
        states = [await store.state(i) for i in await store.active_ids()]
        return [s.as_json() for s in states if s is not None]

    @api.get("/api/auctions/{auction_id}")
    async def show(auction_id: str) -> dict[str, Any]:
        state = await service().store.state(auction_id)
        if state is None:
            raise HTTPException(404, "Auction not found")
        return state.as_json()

    @api.post("/api/auctions/{auction_id}/bids", status_code=201)
    async def bid(auction_id: str, body: PlaceBid, request: Request) -> Any:
        decision = await service().place_bid(
            auction_id, str(body.bidderId), body.amount,
            ip_address=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"))
        if isinstance(decision, BidRejected):
            status = 404 if decision.code == "AUCTION_NOT_FOUND" else 409
            return JSONResponse({"accepted": False, **_rejection(decision)}, status)
        return {"accepted": True, **bid_message(decision)}

    @api.get("/api/queues/metrics")
    async def metrics() -> dict[str, dict[str, int]]:
        return await queue_metrics()

    @api.websocket("/ws/auctions/{auction_id}")
    async def watch(ws: WebSocket, auction_id: str) -> None:
        await ws.accept()
        svc, hub = service(), api.state.hub
        outbox = hub.join(auction_id)
        try:
            state = await svc.store.state(auction_id)
            if state is None:
                await ws.close(4404, "Auction not found")
                return
            await ws.send_text(orjson.dumps({"type": "AUCTION_STATE", **state.as_json()})
                               .decode())
            sender = asyncio.create_task(_send_all(ws, outbox))
            try:
                await _receive_bids(ws, svc, auction_id, outbox)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
        finally:
            hub.leave(auction_id, outbox)

    return api


async def _send_all(ws: WebSocket, outbox: asyncio.Queue[str | None]) -> None:
    """The connection's only writer: broadcasts and the replies to its own bids."""
    while (message := await outbox.get()) is not None:
        await ws.send_text(message)
    await ws.close(1013, "too far behind")


async def _receive_bids(ws: WebSocket, svc: AuctionService, auction_id: str,
                        outbox: asyncio.Queue[str | None]) -> None:
    client = ws.client.host if ws.client else None
    agent = ws.headers.get("user-agent")
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive_json()
            if not isinstance(message, dict) or message.get("type") != "BID_PLACED":
                continue
            reply: dict[str, Any] = {"type": "BID_RESULT", "requestId": message.get("requestId")}
            try:
                bidder = str(uuid.UUID(str(message.get("bidderId"))))
            except ValueError:
                outbox.put_nowait(orjson.dumps(
                    {**reply, "accepted": False, "code": "INVALID_BIDDER",
                     "message": "bidderId must be a UUID"}).decode())
                continue
            decision = await svc.place_bid(auction_id, bidder, str(message.get("amount")),
                                           ip_address=client, user_agent=agent)
            if isinstance(decision, BidRejected):
                reply |= {"accepted": False, **_rejection(decision)}
            else:
                reply |= {"accepted": True, "bidId": decision.bid_id,
                          "amount": decision.amount, "totalBids": decision.total_bids}
            await outbox.put(orjson.dumps(reply).decode())
