"""After Redis goes away, a worker tries again after pauses that grow
exponentially up to a cap, each drawn at random below its ceiling (full
jitter), so a fleet that lost Redis together does not come back in lockstep
(conveyor._reconnect). Each test stops a private redis-server of its own and
reads the pauses from the worker's debug log, checking them against the time
that really passed between attempts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.backoff import FullJitterBackoff

from conveyor import Job, Queue, Worker
from conveyor._reconnect import RECONNECT_BASE_S, Reconnect
from helpers import unique_queue_name, wait_for
from redis_server import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


@pytest.fixture
async def queue(server: RedisServer) -> AsyncIterator[Queue]:
    async with Queue(unique_queue_name(), server.url) as q:
        yield q


class Pauses(logging.Handler):
    """The pauses each worker logged: worker id -> [(when logged, seconds)]."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_worker: dict[str, list[tuple[float, float]]] = {}
        self.back: list[str] = []  # ids of the workers that logged Redis was back

    def emit(self, record: logging.LogRecord) -> None:
        args: Any = record.args
        if "connection to Redis is back" in record.msg:
            self.back.append(args[0])
        if "Redis unreachable; attempt" in record.msg:
            who, _, seconds = args
            if who.startswith("worker "):
                self.by_worker.setdefault(who.removeprefix("worker "), []).append(
                    (time.monotonic(), seconds))

    def at_least(self, workers: list[Worker], n: int) -> bool:
        return all(len(self.by_worker.get(w.id, [])) >= n for w in workers)


@pytest.fixture
def pauses() -> Iterator[Pauses]:
    handler = Pauses()
    logger = logging.getLogger("conveyor.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def echo(job: Job) -> Any:
    return job.data


async def outage(
    server: RedisServer, queue: Queue, pauses: Pauses, workers: list[Worker], n: int
) -> None:
    """Run ``workers`` until idle, stop Redis until each paused ``n`` times, start
    it again and check that they all take a job then."""
    drained = [asyncio.Event() for _ in workers]
    for worker, event in zip(workers, drained, strict=True):
        worker.on("drained", event.set)
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        await wait_for(lambda: all(event.is_set() for event in drained), timeout=20)
        await asyncio.to_thread(server.kill)
        await wait_for(lambda: pauses.at_least(workers, n), timeout=60,
                       message=f"{n} pauses of each worker")
        await asyncio.to_thread(server.start)
        jobs = [await queue.add("after", i) for i in range(len(workers) * 3)]
        for i, job in enumerate(jobs):
            assert await job.wait_until_finished(timeout=20) == i
        assert not any(task.done() for task in tasks)
        # Every one is back, whether or not it took one of the jobs.
        await wait_for(lambda: sorted(pauses.back) == sorted(w.id for w in workers))
    finally:
        await asyncio.gather(*(worker.close() for worker in workers))
        await asyncio.gather(*tasks)


def check_waited(logged: list[tuple[float, float]]) -> None:
    """Each pause was slept: the next attempt's pause came no sooner."""
    for (when, seconds), (next_when, _) in itertools.pairwise(logged):
        assert next_when - when >= seconds - 0.005


async def test_a_fleet_reconnects_at_spread_times_not_in_lockstep(
    server: RedisServer, queue: Queue, pauses: Pauses
) -> None:
    workers = [Worker(queue.name, echo, connection=server.url, block_timeout=1000)
               for _ in range(4)]
    await outage(server, queue, pauses, workers, 6)
    logged = [pauses.by_worker[w.id][:6] for w in workers]
    for k in range(6):
        kth = [seconds for worker_pauses in logged for _, seconds in worker_pauses[k:k + 1]]
        assert len(set(kth)) == len(workers), f"pause {k + 1} of each worker: {kth}"
        ceiling = RECONNECT_BASE_S * 2**k  # grows: 0.05, 0.1, 0.2, ... seconds
        assert all(0 <= seconds <= ceiling for seconds in kth), (k, kth)
    for worker_pauses in logged:
        check_waited(worker_pauses)


async def test_pauses_stop_growing_at_the_cap_and_stay_spread(
    server: RedisServer, queue: Queue, pauses: Pauses
) -> None:
    cap = 0.3
    worker = Worker(queue.name, echo, connection=server.url, block_timeout=1000,
                    reconnect_backoff=FullJitterBackoff(cap=cap, base=0.05))
    await outage(server, queue, pauses, [worker], 14)
    seconds = [s for _, s in pauses.by_worker[worker.id]]
    assert max(seconds) <= cap
    capped = seconds[4:14]  # ceilings 0.8 s and up without the cap
    assert len(set(capped)) == len(capped)  # drawn anew each time, not the cap each time
    assert min(capped) < cap * 0.9
    check_waited(pauses.by_worker[worker.id])


async def test_a_long_outage_pauses_without_overflow() -> None:
    reconnect = Reconnect(FullJitterBackoff(cap=0.01, base=0.05))
    reconnect.failures = 10_000
    began = time.monotonic()
    await reconnect.pause("test")
    assert reconnect.failures == 10_001
    assert time.monotonic() - began < 1
