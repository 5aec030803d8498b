"""End-to-end tests of the auction example: real Redis, PostgreSQL, worker
processes (killed with SIGKILL mid-flight), the FastAPI front over HTTP and
WebSockets, and conveyor's dashboard in a browser. Nothing is mocked.

No schedule of this seed fires on a clock: each auction's finalization job is
a delayed job due at the auction's end, so the tests open auctions that last a
few seconds and wait for them to end (no waiting on a real-world time of day).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect

from conveyor import Queue
from conveyor.embedded import free_port
from conveyor.inspection import Inspector
from conveyor.web.app import create_app
from examples.auction import db
from examples.auction.bidding import AuctionStore, BidAccepted, iso, redis_client
from examples.auction.tasks import (
    AUCTION_FINALIZATION,
    AUCTION_UPDATE,
    BID_PERSISTENCE,
    QUEUES,
    finalize_auction,
    persist_bid,
)
from examples.auction.tasks import app as jobs
from examples.auction.web import create_web_app
from examples.auction.worker import worker_process
from examples.support import Services, WorkerProcess, dashboard_screenshot, serve_app, wait_until

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


@dataclass
class Running:
    """The auction application, started for one test."""

    services: Services
    base: str
    http: httpx.AsyncClient
    pool: asyncpg.Pool
    store: AuctionStore
    worker: WorkerProcess
    log: Path
    queues: dict[str, Queue] = field(default_factory=dict)

    def ws_url(self, auction_id: str) -> str:
        return self.base.replace("http://", "ws://") + f"/ws/auctions/{auction_id}"

    async def open_auction(self, **spec: Any) -> str:
        body = {"title": "lot", "startingPrice": "100.00", "minIncrement": "5.00", **spec}
        response = await self.http.post("/api/auctions", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["auctionId"])

    async def bid(self, auction_id: str, bidder: str, amount: str) -> httpx.Response:
        return await self.http.post(f"/api/auctions/{auction_id}/bids",
                                    json={"bidderId": bidder, "amount": amount})

    def kill_and_restart_worker(self) -> None:
        """SIGKILL the worker process (its jobs in flight stall) and start another."""
        self.worker.kill()
        self.worker = worker_process(self.services.env(), log=self.log).start()

    async def counts(self, queue: str) -> dict[str, int]:
        return await self.queues[queue].get_job_counts()

    async def idle(self, *queues: str) -> bool:
        for name in queues:
            counts = await self.counts(name)
            if any(counts.get(s, 0) for s in ("waiting", "active", "delayed", "prioritized")):
                return False
        return True


@asynccontextmanager
async def running(services: Callable[..., Services], tmp_path: Path) -> AsyncIterator[Running]:
    """Services, schema, one worker process and the front on a free port; all
    stopped again whatever happens (the worker by SIGTERM: it must exit 0)."""
    svc = services()
    jobs.connection = svc.redis_url  # the test's own enqueues (the front sets it too)
    async with contextlib.AsyncExitStack() as stack:
        pool = await db.connect(svc.database_url)
        stack.push_async_callback(pool.close)
        await db.apply_schema(pool)
        stack.push_async_callback(jobs.close)
        store = AuctionStore(redis_client(svc.redis_url))
        stack.push_async_callback(store.redis.aclose)
        queues = {name: Queue(name, svc.redis_url) for name in QUEUES}
        for queue in queues.values():
            stack.push_async_callback(queue.close)
        port = free_port()
        server, task = await serve_app(create_web_app(svc.redis_url, svc.database_url), port)

        async def stop_server() -> None:
            server.should_exit = True
            await task
        stack.push_async_callback(stop_server)
        log = tmp_path / "worker.log"
        run = Running(svc, f"http://127.0.0.1:{port}", await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)), pool, store,
            worker_process(svc.env(), log=log).start(), log, queues)
        try:
            yield run
        except BaseException:
            run.worker.stop()
            raise
        assert run.worker.stop() == 0


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


# -- 200 concurrent bidders ---------------------------------------------------------


@dataclass
class Watcher:
    """A browser watching one auction: every message its WebSocket received."""

    auction_id: str
    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)

    async def read(self) -> None:
        async for raw in self.ws:
            self.messages.append(json.loads(raw))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


async def _bidder(run: Running, auction_id: str, tries: int, seed: int,
                  accepted: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> None:
    """One bidder: bids a little above the price it last saw, ``tries`` times."""
    rng = random.Random(seed)
    bidder = str(uuid.uuid4())
    async with connect(run.ws_url(auction_id), user_agent_header="bidder-test/1.0") as ws:
        state = json.loads(await ws.recv())
        assert state["type"] == "AUCTION_STATE"
        minimum = Decimal(state["minNextBid"])
        for n in range(tries):
            amount = minimum + Decimal(5) * rng.randint(0, 6)
            await ws.send(json.dumps({"type": "BID_PLACED", "requestId": n,
                                      "bidderId": bidder, "amount": f"{amount:.2f}"}))
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "BID_ACCEPTED":
                    minimum = max(minimum, Decimal(message["amount"]) + 5)
                elif message["type"] == "BID_RESULT" and message["requestId"] == n:
                    break
            if message["accepted"]:
                accepted.append({"bidId": message["bidId"], "auctionId": auction_id,
                                 "bidderId": bidder, "amount": message["amount"],
                                 "totalBids": message["totalBids"]})
            else:
                rejected.append(message)
                if message.get("minimum"):
                    minimum = max(minimum, Decimal(message["minimum"]))


async def test_example_auction_200_concurrent_bidders_leave_exact_state(
    services: Callable[..., Services], tmp_path: Path,
) -> None:
    """200 bidders over 4 auctions bid through WebSockets at once (8 bids
    each, most of them refused as too low by the time they arrive); the worker
    process is killed (SIGKILL) with jobs in flight and replaced. Afterwards
    PostgreSQL holds exactly the accepted bids, each auction's price, winner,
    bid count and end equal Redis', each auction ended once, watchers saw every
    accepted bid over pub/sub, and rejected bids enqueued nothing. The
    finalization jobs fire at the auctions' real end times (auctions of 7 s):
    no schedule is triggered by hand."""
    async with running(services, tmp_path) as run:
        ids = [await run.open_auction(title=f"lot {i}", durationSeconds=7,
                                      antiSnipeSeconds=1, extensionSeconds=1)
               for i in range(4)]
        watchers = []
        for auction_id in ids:
            watcher = Watcher(auction_id, await connect(run.ws_url(auction_id)))
            watchers.append(watcher)
        readers = [asyncio.create_task(w.read()) for w in watchers]
        await wait_until(lambda: all(w.messages for w in watchers), what="watchers connected")

        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        orphaned: list[int] = []

        async def kill_in_flight() -> None:
            """Once bids are being persisted, hold inserts into ``bids`` back (a
            table lock) so that jobs are surely running, and SIGKILL the worker."""
            async def in_flight() -> bool:
                return (await run.counts(BID_PERSISTENCE)).get("active", 0) > 0

            async def persisted() -> bool:
                return bool(await run.pool.fetchval("SELECT count(*) FROM bids") >= 10)
            await wait_until(persisted, timeout=30, what="bids persisted")
            async with run.pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE bids IN SHARE MODE")
                await wait_until(in_flight, timeout=30, interval=0.005, what="jobs in flight")
                run.worker.kill()
                # No worker runs now: jobs still active were the dead worker's.
                counts = [await run.counts(q) for q in (BID_PERSISTENCE, AUCTION_UPDATE)]
                orphaned.append(sum(c.get("active", 0) for c in counts))
            run.worker = worker_process(run.services.env(), log=run.log).start()

        await asyncio.gather(
            kill_in_flight(),
            *(_bidder(run, ids[i % 4], 8, i, accepted, rejected) for i in range(200)),
        )
        assert orphaned[0] > 0
        assert len(accepted) > 100 and len(rejected) > 100  # past the retention of 100
        assert {r["code"] for r in rejected} >= {"BID_TOO_LOW"}

        async def settled() -> bool:
            ended = await run.pool.fetchval(
                "SELECT count(*) FROM auctions WHERE status = 'ended'")
            return ended == 4 and await run.idle(*QUEUES)
        await wait_until(settled, timeout=40, what="auctions ended and jobs done")

        # Exactly the accepted bids, each once.
        rows = await run.pool.fetch("SELECT * FROM bids")
        assert sorted((str(r["id"]), str(r["auction_id"]), str(r["bidder_id"]),
                       f"{r['amount']:.2f}") for r in rows) == sorted(
            (a["bidId"], a["auctionId"], a["bidderId"], a["amount"]) for a in accepted)
        assert {r["user_agent"] for r in rows} == {"bidder-test/1.0"}
        assert {str(r["ip_address"]) for r in rows} == {"127.0.0.1"}

        for auction_id in ids:
            state = await run.store.state(auction_id)
            assert state is not None and state.status == "ended"
            row = await run.pool.fetchrow("SELECT * FROM auctions WHERE id = $1", auction_id)
            mine = sorted((a for a in accepted if a["auctionId"] == auction_id),
                          key=lambda a: a["totalBids"])
            assert [a["totalBids"] for a in mine] == list(range(1, len(mine) + 1))
            last = mine[-1]
            assert (f"{row['current_bid']:.2f}", str(row["highest_bidder_id"]),
                    str(row["winning_bid_id"]), row["total_bids"]) == (
                state.current_bid, state.highest_bidder_id, state.highest_bid_id,
                state.total_bids)
            assert (state.current_bid, state.highest_bidder_id, state.total_bids) == (
                last["amount"], last["bidderId"], len(mine))
            assert row["status"] == "ended" and _ms(row["end_time"]) == state.end_ms
            assert _ms(row["ended_at"]) == state.ended_ms
            winners = await run.pool.fetch(
                "SELECT id FROM bids WHERE auction_id = $1 AND is_winning", auction_id)
            assert [str(w["id"]) for w in winners] == [state.highest_bid_id]
            finalization = await run.queues[AUCTION_FINALIZATION].get_job(
                f"finalize-{auction_id}")
            assert finalization is not None and finalization.return_value is not None
            assert finalization.return_value["status"] == "finalized"

        # Watchers heard every accepted bid of their auction and its end, once.
        await wait_until(lambda: all(w.of("AUCTION_ENDED") for w in watchers),
                         what="AUCTION_ENDED broadcasts")
        for watcher in watchers:
            heard = [m["bidId"] for m in watcher.of("BID_ACCEPTED")]
            assert sorted(heard) == sorted(
                a["bidId"] for a in accepted if a["auctionId"] == watcher.auction_id)
            assert len(watcher.of("AUCTION_ENDED")) == 1
            await watcher.ws.close()
        await asyncio.gather(*readers)

        # Rejected bids enqueued nothing: one job per accepted bid, each completed once.
        for queue in (BID_PERSISTENCE, AUCTION_UPDATE):
            completed = await run.queues[queue].get_metrics("completed")
            failed = await run.queues[queue].get_metrics("failed")
            assert (completed.total, failed.total) == (len(accepted), 0)

        # The seed's options, as the jobs and the live workers carry them.
        seed = {BID_PERSISTENCE: (3, 2000, 5), AUCTION_UPDATE: (3, 2000, 3),
                AUCTION_FINALIZATION: (5, 5000, 2)}
        for queue, (attempts, delay, concurrency) in seed.items():
            [job] = await run.queues[queue].get_jobs(["completed"], 0, 0)
            assert job.opts.backoff is not None
            assert (job.opts.attempts, job.opts.backoff.type, job.opts.backoff.delay) == (
                attempts, "exponential", delay)
            keep, drop = job.opts.remove_on_complete, job.opts.remove_on_fail
            assert (keep.count, keep.age_ms, drop.count, drop.age_ms) == (
                100, 3_600_000, 500, 86_400_000)
            workers = await run.queues[queue].get_workers()
            assert [w.concurrency for w in workers if w.pid == run.worker.pid] == [concurrency]

        # The seed's monitoring numbers; retention keeps the newest 100 completed.
        metrics = (await run.http.get("/api/queues/metrics")).json()
        assert metrics[BID_PERSISTENCE] == {"waiting": 0, "active": 0, "completed": 100,
                                            "failed": 0}
        assert metrics[AUCTION_FINALIZATION]["completed"] == 4
        # The worker logs an event just after it recorded the job's outcome.
        await wait_until(lambda: "completed: {'status': 'finalized'" in run.log.read_text(),
                         what="the completed events logged")
        assert "completed: {'status': 'persisted'" in run.log.read_text()

        await _screenshot(run, tmp_path)


async def _screenshot(run: Running, tmp_path: Path) -> None:
    """The queues in conveyor's dashboard; with CONVEYOR_UPDATE_SCREENSHOTS=1
    also kept as the README's picture."""
    port = free_port()
    server, task = await serve_app(create_app(run.services.redis_url, queues=list(QUEUES)),
                                   port)
    try:
        png = tmp_path / "dashboard.png"
        await asyncio.to_thread(dashboard_screenshot, f"http://127.0.0.1:{port}/", png,
                                wait_for=f"text={AUCTION_FINALIZATION}")
        assert png.stat().st_size > 10_000
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            names = {q["name"] for q in (await client.get("/api/v1/queues")).json()["data"]}
        assert names >= set(QUEUES)
        if os.environ.get("CONVEYOR_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(png, HERE / "dashboard.png")
    finally:
        server.should_exit = True
        await task


# -- the rules, anti-sniping, retries and re-runs -----------------------------------


async def _finished(queue: Queue, job_id: str) -> Any:
    """The job once it completed or failed."""
    async def done() -> bool:
        return await queue.get_job_state(job_id) in ("completed", "failed")
    await wait_until(done, timeout=20, what=f"job {job_id} finished")
    return await queue.get_job(job_id)


async def test_example_auction_bid_rules_snipes_retries_and_reruns(
    services: Callable[..., Services], tmp_path: Path,
) -> None:
    """Redis' script refuses bids that are too low, malformed, from the leader
    or for an unknown auction, and a refused bid enqueues nothing; a bid in the
    last seconds extends the auction and moves its finalization job; a bid's
    jobs that hit a locked row fail, are logged and retried with backoff, and
    survive the SIGKILL of their worker in flight; re-running a persisted bid,
    a duplicate under another id, a finalization of an ended auction change
    nothing; bad data fails at once."""
    async with running(services, tmp_path) as run:
        x, y = str(uuid.uuid4()), str(uuid.uuid4())
        persistence = run.queues[BID_PERSISTENCE]

        # The rules of place_bid.lua.
        a = await run.open_auction(durationSeconds=3, antiSnipeSeconds=0)
        low = await run.bid(a, x, "99.00")
        assert (low.status_code, low.json()["code"], low.json()["minimum"]) == (
            409, "BID_TOO_LOW", "100.00")
        odd = await run.bid(a, x, "100.001")
        assert (odd.status_code, odd.json()["code"]) == (409, "INVALID_AMOUNT")
        first = await run.bid(a, x, "100.00")
        assert first.status_code == 201 and first.json()["previousBid"] is None
        under = await run.bid(a, y, "104.99")
        assert (under.json()["code"], under.json()["minimum"]) == ("BID_TOO_LOW", "105.00")
        again = await run.bid(a, x, "110.00")
        assert (again.status_code, again.json()["code"]) == (409, "ALREADY_HIGHEST_BIDDER")
        bad_price = await run.http.post("/api/auctions", json={
            "title": "lot", "startingPrice": "1.005", "minIncrement": "5.00",
            "durationSeconds": 3})
        assert bad_price.status_code == 422
        # A client retrying a call whose reply it lost gets the same answer, once.
        replay = await run.store.place_bid(a, x, "100.00", first.json()["bidId"])
        assert isinstance(replay, BidAccepted) and replay.total_bids == 1
        assert iso(replay.bid_ms) == first.json()["bidTime"]
        lost = await run.bid(str(uuid.uuid4()), x, "100.00")
        assert (lost.status_code, lost.json()["code"]) == (404, "AUCTION_NOT_FOUND")
        assert sum((await persistence.get_job_counts()).values()) == 1  # the accepted bid's

        # Anti-sniping: this auction is always within its window; a bid extends it
        # and moves its finalization job to the new end.
        s = await run.open_auction(durationSeconds=2, antiSnipeSeconds=60, extensionSeconds=4)
        opened = await run.store.state(s)
        snipe = (await run.bid(s, x, "100.00")).json()
        assert snipe["extended"] is True
        extended = await run.store.state(s)
        assert opened is not None and extended is not None
        assert extended.end_ms > opened.end_ms and extended.extensions == 1
        async with Inspector(run.services.redis_url) as inspector:
            page = await inspector.jobs(AUCTION_FINALIZATION, "delayed", count=100)
        due = {job.id: job.due for job in page.jobs}[f"finalize-{s}"]
        assert due is not None and due >= extended.end_ms

        async def persisted(n: int) -> bool:
            return bool(await run.pool.fetchval("SELECT count(*) FROM bids") == n)
        await wait_until(lambda: persisted(2), what="the first bids persisted")

        # A locked row: the bid's jobs wait on it while their worker is killed,
        # run again on the new worker, fail (logged), and succeed on retry.
        t = await run.open_auction(durationSeconds=8, antiSnipeSeconds=0)
        blocker = await asyncpg.connect(run.services.database_url)
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("SELECT 1 FROM auctions WHERE id = $1 FOR UPDATE", t)
        bid_t = (await run.bid(t, y, "100.00")).json()["bidId"]
        job_id = f"bid-{bid_t}"

        async def active() -> bool:
            return await persistence.get_job_state(job_id) == "active"
        await wait_until(active, interval=0.01, what="persist-bid waiting on the row")
        run.worker.kill()
        assert await persistence.get_job_state(job_id) == "active"  # the dead worker's
        run.worker = worker_process(run.services.env(), log=run.log).start()

        async def failed_once() -> bool:
            job = await persistence.get_job(job_id)
            return job is not None and job.attempts_made >= 1
        await wait_until(failed_once, timeout=20, what="a failed attempt")
        await locked.rollback()
        await blocker.close()
        retried = await _finished(persistence, job_id)
        assert retried.return_value == {"status": "persisted", "bidId": bid_t}
        assert (retried.attempts_made, retried.stalled_count) == (2, 1)
        updated = await _finished(run.queues[AUCTION_UPDATE], f"update-{t}-1")
        assert updated.return_value == {"status": "updated"}
        assert f"Job {job_id} failed: " in run.log.read_text()
        assert "lock timeout" in run.log.read_text()

        # Re-runs change nothing: a persisted bid, the same bid under another id.
        bid_a = first.json()["bidId"]
        await persistence.retry_job(f"bid-{bid_a}")
        rerun = await _finished(persistence, f"bid-{bid_a}")
        assert rerun.return_value["status"] == "already_persisted"
        await persist_bid.with_options(job_id="same-bid-new-id").enqueue(
            auctionId=a, bidderId=x, amount="100.00", bidTime=first.json()["bidTime"],
            bidId=str(uuid.uuid4()))
        duplicate = await _finished(persistence, "same-bid-new-id")
        assert duplicate.return_value["status"] == "duplicate"
        # Bad data is a permanent error: failed at once, no retries.
        await persist_bid.with_options(job_id="no-such-auction").enqueue(
            auctionId=str(uuid.uuid4()), bidderId=x, amount="100.00",
            bidTime=first.json()["bidTime"])
        bad = await _finished(persistence, "no-such-auction")
        assert (await bad.get_state(), bad.attempts_made) == ("failed", 1)
        assert "does not exist" in bad.failed_reason

        # Every auction ends once, with Redis' final state; a second finalization
        # is refused by the script and leaves PostgreSQL as it was.
        async def all_ended() -> bool:
            ended = await run.pool.fetchval(
                "SELECT count(*) FROM auctions WHERE status = 'ended'")
            return ended == 3 and await run.idle(*QUEUES)
        await wait_until(all_ended, timeout=30, what="auctions ended")
        ended_at = await run.pool.fetchval("SELECT ended_at FROM auctions WHERE id = $1", a)
        await finalize_auction.with_options(job_id="finalize-again").enqueue(auctionId=a)
        second = await _finished(run.queues[AUCTION_FINALIZATION], "finalize-again")
        assert second.return_value["status"] == "already_finalized"
        assert second.return_value["recorded"] is False
        assert await run.pool.fetchval(
            "SELECT ended_at FROM auctions WHERE id = $1", a) == ended_at
        for auction_id, bidder in ((a, x), (s, x), (t, y)):
            state = await run.store.state(auction_id)
            row = await run.pool.fetchrow("SELECT * FROM auctions WHERE id = $1", auction_id)
            assert state is not None and state.highest_bidder_id == bidder
            assert (str(row["highest_bidder_id"]), f"{row['current_bid']:.2f}",
                    _ms(row["end_time"]), row["total_bids"]) == (
                bidder, "100.00", state.end_ms, 1)
        s_row = await run.pool.fetchrow("SELECT * FROM auctions WHERE id = $1", s)
        assert _ms(s_row["end_time"]) == extended.end_ms <= _ms(s_row["ended_at"])
        bids = await run.pool.fetch("SELECT id, is_winning FROM bids ORDER BY bid_time")
        assert [(str(b["id"]), b["is_winning"]) for b in bids] == [
            (bid_a, True), (snipe["bidId"], True), (bid_t, True)]

        # Redis crashes (SIGKILL) and comes back with its AOF: the workers' `error`
        # event is logged, and they carry on.
        await asyncio.to_thread(run.services.redis.kill)
        await wait_until(lambda: "Worker error: " in run.log.read_text(), timeout=15,
                         what="a worker error logged")
        await asyncio.to_thread(run.services.redis.start)
        late = await run.open_auction(durationSeconds=60, antiSnipeSeconds=0)
        watcher = Watcher(late, await connect(run.ws_url(late)))
        reader = asyncio.create_task(watcher.read())
        await wait_until(lambda: bool(watcher.messages), what="watcher connected")
        # The front subscribes again once Redis is back (pub/sub keeps nothing).
        async def subscribed() -> bool:
            return bool(await run.store.redis.pubsub_numpat())
        await wait_until(subscribed, timeout=15, what="the front subscribed again")
        late_bid = (await run.bid(late, x, "100.00")).json()["bidId"]
        await wait_until(lambda: bool(watcher.of("BID_ACCEPTED")), timeout=15,
                         what="a broadcast after the outage")
        assert watcher.of("BID_ACCEPTED")[0]["bidId"] == late_bid
        await watcher.ws.close()
        await reader
        await wait_until(lambda: persisted(4), what="a bid persisted after the outage")
        assert await run.pool.fetchval("SELECT 1 FROM bids WHERE id = $1", late_bid)


# -- the one command ------------------------------------------------------------------


async def test_example_auction_command_serves_and_stops(database_url: str) -> None:
    """`python -m examples.auction --seconds N --workers 2` starts everything
    (two worker processes, as the seed's horizontal scaling), prints its URLs,
    serves the front (two demo auctions) and exits 0 by itself, its workers
    stopped by SIGTERM with exit code 0."""
    env = {**os.environ, "DATABASE_URL": database_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.auction", "--seconds", "3", "--port", "0",
        "--workers", "2",
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "Ctrl-C stops.":
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, "".join(lines)
            lines.append(line.decode().rstrip())
        urls = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines
                if ": " in line}
        assert urls["dashboard"].startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            auctions = (await client.get(urls["auction app"] + "api/auctions")).json()
            assert len(auctions) == 2
            page = await client.get(urls["auction app"] + f"auctions/{auctions[0]['auctionId']}")
            assert "new WebSocket" in page.text
            assert (await client.get(urls["dashboard"])).status_code == 200
        rest = (await proc.stdout.read()).decode()
        assert await proc.wait() == 0, rest
        assert "stopped (workers exited with [0, 0])" in rest
    finally:
        if proc.returncode is None:  # failed half-way: SIGTERM stops its workers too
            proc.terminate()
            await proc.wait()
