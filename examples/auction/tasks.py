"""The auction's background jobs: persistence and processing only, never a bid's decision.

Three queues, each with the seed's options:

- ``bid-persistence``: ``persist-bid`` writes an accepted bid to PostgreSQL
  (3 attempts, exponential 2 s; idempotent by bid id; a duplicate counts as
  success). Workers: concurrency 5, at most 100 jobs a second.
- ``auction-update``: ``update-auction`` syncs the auction's row from Redis'
  state after a bid (3 attempts, exponential 2 s; conditional). Concurrency 3.
- ``auction-finalization``: ``finalize-auction`` ends an auction at its end
  time, one job per auction (job id ``finalize-<auction>``), moved when a bid
  extends the end (5 attempts, exponential 5 s). Concurrency 2.

The server enqueues only after Redis accepted a bid (see ``web.py``). Workers
run with ``python -m examples.auction.worker``: the per-queue concurrency,
limiter and event logging live in :func:`build_workers`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg
import orjson

from conveyor import Job, UnrecoverableError, Worker
from conveyor.app import Conveyor, TaskOptions, current_job

from . import db
from .bidding import AuctionStore, channel, redis_client

__all__ = [
    "QUEUES",
    "WORKER_OPTIONS",
    "app",
    "build_workers",
    "finalize_auction",
    "job_options",
    "persist_bid",
    "queue_metrics",
    "resources",
    "update_auction",
]

log = logging.getLogger("examples.auction")
T = TypeVar("T")

BID_PERSISTENCE = "bid-persistence"
AUCTION_UPDATE = "auction-update"
AUCTION_FINALIZATION = "auction-finalization"
QUEUES = (BID_PERSISTENCE, AUCTION_UPDATE, AUCTION_FINALIZATION)

#: Conveyor() reads $CONVEYOR_REDIS_URL, so the server, `conveyor worker` and
#: the tests share this module unchanged.
app = Conveyor()



def job_options(attempts: int, backoff_ms: int) -> TaskOptions:
    """The seed's queue options: attempts, exponential backoff, and retention
    (completed jobs kept an hour, the newest 100; failed ones a day, 500)."""
    return {
        "attempts": attempts, "backoff": {"type": "exponential", "delay": backoff_ms},
        "remove_on_complete": {"count": 100, "age": 3600},
        "remove_on_fail": {"count": 500, "age": 86400},
    }

#: Worker options per queue. The lock and stall settings are short so that the
#: jobs of a worker killed with SIGKILL run again within ~2 s (the default of
#: 30 s suits a production deployment); every job is idempotent, so a job that
#: a slow worker lost and another one ran twice is harmless.
_RECOVERY: dict[str, Any] = {"lock_duration": 2_000, "stalled_interval": 1_000,
                             "max_stalled_count": 3}
WORKER_OPTIONS: dict[str, dict[str, Any]] = {
    BID_PERSISTENCE: {"concurrency": 5, "limiter": {"max": 100, "duration": 1000}, **_RECOVERY},
    AUCTION_UPDATE: {"concurrency": 3, **_RECOVERY},
    AUCTION_FINALIZATION: {"concurrency": 2, **_RECOVERY},
}


class Resources:
    """This process's PostgreSQL pool and Redis client, opened on first use
    (a worker process, the web server and a test each get their own)."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._store: AuctionStore | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool of ``$DATABASE_URL``."""
        async with self._lock:
            if self._pool is None:
                self._pool = await db.connect(os.environ["DATABASE_URL"])
            return self._pool

    def store(self) -> AuctionStore:
        """The auctions in the Redis of ``$CONVEYOR_REDIS_URL``."""
        if self._store is None:
            url = os.environ.get("CONVEYOR_REDIS_URL", "redis://localhost:6379/0")
            self._store = AuctionStore(redis_client(url))
        return self._store

    async def close(self) -> None:
        """Close what was opened."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._store is not None:
            await self._store.redis.aclose()
            self._store = None


resources = Resources()


async def _permanent(call: Awaitable[T]) -> T:
    """Run a write; bad data is a permanent error (no retries, the job fails),
    anything else (a lost connection, a lock timeout) is retried with backoff."""
    try:
        return await call
    except (LookupError, ValueError, KeyError, asyncpg.DataError,
            asyncpg.IntegrityConstraintViolationError) as exc:
        raise UnrecoverableError(f"{type(exc).__name__}: {exc}") from exc


# The parameters are the seed's job data as is (camelCase), so a producer in
# any language, the REST API or `conveyor enqueue` makes the same jobs.


@app.task(queue=BID_PERSISTENCE, name="persist-bid", **job_options(3, 2000))
async def persist_bid(
    auctionId: str, bidderId: str, amount: str, bidTime: str, previousBid: str | None = None,
    ipAddress: str | None = None, userAgent: str | None = None, bidId: str | None = None,
) -> dict[str, str]:
    """Persist an accepted bid once: ``persisted``, ``already_persisted`` or ``duplicate``."""
    if bidId is None:  # the seed's bidId is optional: derive a stable one for retries
        bidId = str(uuid.uuid5(uuid.NAMESPACE_URL,
                               f"bid:{auctionId}:{bidderId}:{amount}:{bidTime}"))
    bid = {"auctionId": auctionId, "bidderId": bidderId, "amount": amount, "bidTime": bidTime,
           "previousBid": previousBid, "ipAddress": ipAddress, "userAgent": userAgent,
           "bidId": bidId}
    status = await _permanent(db.persist_bid(await resources.pool(), bid))
    return {"status": status, "bidId": bidId}


@app.task(queue=AUCTION_UPDATE, name="update-auction", **job_options(3, 2000))
async def update_auction(
    auctionId: str, currentBid: str, highestBidderId: str, totalBids: int,
    endTime: str | None = None, highestBidId: str | None = None,
) -> dict[str, str]:
    """Sync the auction's row to Redis' state after bid number ``totalBids``:
    ``updated``, or ``stale`` when the row already shows a later state."""
    update = {"auctionId": auctionId, "currentBid": currentBid,
              "highestBidderId": highestBidderId, "totalBids": totalBids, "endTime": endTime,
              "highestBidId": highestBidId}
    changed = await _permanent(db.update_auction(await resources.pool(), update))
    return {"status": "updated" if changed else "stale"}


@app.task(queue=AUCTION_FINALIZATION, name="finalize-auction",
          **job_options(5, 5000))
async def finalize_auction(auctionId: str) -> dict[str, Any]:
    """End the auction: ``finalize_auction.lua`` ends it in Redis (once), then
    its final state goes to PostgreSQL and watchers hear ``AUCTION_ENDED``.

    A run after the script succeeded (a retry after a crash) finds it
    ``already`` finalized and still writes PostgreSQL, which ignores a second
    end. A run before the end (a bid extended it as the job started) moves
    the job to the new end time."""
    store = resources.store()
    result = await store.finalize(auctionId)
    if result.outcome == "missing":
        raise UnrecoverableError(f"auction {auctionId} not found in Redis")
    if result.outcome == "not_yet":
        await current_job().move_to_delayed(result.remaining_ms)
        return {"status": "rescheduled"}
    state = await store.state(auctionId)
    if state is None or state.ended_ms is None:  # only if someone deleted or rewrote it
        raise UnrecoverableError(f"auction {auctionId}: no final state in Redis")
    final = db.FinalState(state.current_bid, state.highest_bidder_id, state.highest_bid_id,
                          state.total_bids, state.end_ms, state.ended_ms)
    recorded = await db.finish_auction(await resources.pool(), auctionId, final)
    if recorded:  # the run that ended it tells the watchers (notifications: the seed's future)
        await store.redis.publish(channel(auctionId), orjson.dumps(
            {"type": "AUCTION_ENDED", **state.as_json()}))
    return {"status": "finalized" if result.outcome == "ended" else "already_finalized",
            "recorded": recorded, "finalPrice": state.current_bid,
            "winnerId": state.highest_bidder_id}


def build_workers(*, handle_signals: bool = True) -> list[Worker]:
    """One worker per queue with the seed's worker options, its events logged
    as the seed's ``worker.on(...)`` handlers do. With ``handle_signals`` the
    first SIGTERM/SIGINT lets running jobs finish and stops them all."""
    workers = []
    for queue in QUEUES:
        worker = app.worker(queue, handle_signals=handle_signals, **WORKER_OPTIONS[queue])
        worker.on("completed", _completed)
        worker.on("failed", _failed)
        worker.on("error", _error)
        workers.append(worker)
    return workers


def _completed(job: Job, result: Any) -> None:
    log.info("Job %s completed: %s", job.id, result)


def _failed(job: Job, error: BaseException) -> None:
    log.error("Job %s failed: %s", job.id, error)


def _error(error: BaseException) -> None:
    log.error("Worker error: %s", error)


async def queue_metrics() -> dict[str, dict[str, int]]:
    """The seed's monitoring numbers per queue: waiting, active, completed, failed."""
    out = {}
    for name in QUEUES:
        counts = await app.queue(name).get_job_counts("waiting", "active", "completed",
                                                     "failed")
        out[name] = {state: counts.get(state, 0)
                     for state in ("waiting", "active", "completed", "failed")}
    return out
