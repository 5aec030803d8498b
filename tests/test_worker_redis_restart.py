"""Worker: riding out a Redis restart or crash.

The private server runs with ``appendfsync always``, so every acknowledged
write survives ``kill()``. The server is driven from a thread so the event
loop (and the worker) keeps running while it is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from conveyor import Job, Queue, Worker
from helpers import wait_for
from redis_server import RedisServer

LOST = "lost connection to Redis"
BACK = "connection to Redis is back"


@pytest.fixture
def worker_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    return caplog


def count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(
        1 for r in caplog.records if r.name == "conveyor.worker" and text in r.getMessage()
    )


class Spy:
    """Counts calls and failures of one of the worker's script calls."""

    def __init__(self, worker: Worker, name: str) -> None:
        self.calls = self.failures = 0
        real = getattr(worker.queue.scripts, name)

        async def spy(*args: Any) -> Any:
            self.calls += 1
            try:
                return await real(*args)
            except Exception:
                self.failures += 1
                raise

        setattr(worker.queue.scripts, name, spy)


async def echo(job: Job) -> Any:
    return job.data


async def test_worker_survives_a_graceful_restart(
    redis_server: RedisServer, queue: Queue, redis_url: str,
    worker_log: pytest.LogCaptureFixture,
) -> None:
    drained = asyncio.Event()
    worker = Worker(queue.name, echo, connection=redis_url, block_timeout=1000)
    worker.on("drained", drained.set)
    task = asyncio.create_task(worker.run())
    try:
        before = await queue.add("before", 1)
        assert await before.wait_until_finished(timeout=10) == 1
        await wait_for(drained.is_set)  # idle, blocked on the marker

        await asyncio.to_thread(redis_server.restart)
        after = await queue.add("after", 2)
        assert await after.wait_until_finished(timeout=15) == 2
        assert not task.done()
    finally:
        await worker.close()
        await task
    # A restart may be too quick for the worker to notice at all; never more than once.
    assert count(worker_log, LOST) <= 1
    assert count(worker_log, LOST) == count(worker_log, BACK)


async def test_worker_reconnects_after_a_crash_and_logs_the_outage_once(
    redis_server: RedisServer, queue: Queue, redis_url: str,
    worker_log: pytest.LogCaptureFixture,
) -> None:
    errors: list[BaseException] = []
    drained = asyncio.Event()
    worker = Worker(queue.name, echo, connection=redis_url, block_timeout=1000)
    worker.on("error", errors.append)
    worker.on("drained", drained.set)
    fetches = Spy(worker, "move_to_active")
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(drained.is_set)
        await asyncio.to_thread(redis_server.kill)
        await wait_for(lambda: count(worker_log, LOST) == 1, message="the outage is noticed")
        # Keep the server down until the worker has retried several times.
        await wait_for(lambda: fetches.failures >= 3, timeout=20, message="retries")
        await asyncio.to_thread(redis_server.start)

        job = await queue.add("after-crash", {"x": 1})
        assert await job.wait_until_finished(timeout=15) == {"x": 1}
        assert not task.done()
    finally:
        await worker.close()
        await task
    assert count(worker_log, LOST) == 1  # once per outage, not once per failed retry
    assert count(worker_log, BACK) == 1
    [error] = errors  # the 'error' event fires once per outage too
    assert isinstance(error, RedisConnectionError | OSError)


async def test_jobs_survive_a_crash_while_the_worker_is_busy(
    redis_server: RedisServer, queue: Queue, redis_url: str,
    worker_log: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    runs: list[str] = []

    async def gated(job: Job) -> str:
        runs.append(job.name)
        if job.name == "running":
            await gate.wait()
        return job.name

    worker = Worker(queue.name, gated, connection=redis_url)
    task = asyncio.create_task(worker.run())
    try:
        running = await queue.add("running")
        await wait_for(lambda: runs == ["running"])
        waiting = await queue.add("waiting")  # acknowledged, so on disk (appendfsync always)
        assert await waiting.get_state() == "waiting"

        await asyncio.to_thread(redis_server.kill)
        gate.set()  # the result cannot be reported while Redis is down
        await wait_for(lambda: count(worker_log, LOST) == 1, message="the outage is noticed")
        await asyncio.to_thread(redis_server.start)

        assert await running.wait_until_finished(timeout=15) == "running"
        assert await waiting.wait_until_finished(timeout=15) == "waiting"
    finally:
        await worker.close()
        await task
    assert runs == ["running", "waiting"]  # each ran once: nothing lost or repeated
    await running.refresh()
    assert running.attempts_made == 1
    assert await queue.get_job_counts("completed", "waiting", "active") == {
        "completed": 2, "waiting": 0, "active": 0,
    }  # fmt: skip
    assert count(worker_log, LOST) == 1
    assert count(worker_log, BACK) == 1


async def test_worker_started_while_redis_is_down_waits_for_it(
    redis_server: RedisServer, queue: Queue, redis_url: str,
    worker_log: pytest.LogCaptureFixture,
) -> None:
    job = await queue.add("queued-before-the-crash", "payload")
    await asyncio.to_thread(redis_server.kill)
    worker = Worker(queue.name, echo, connection=redis_url)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: count(worker_log, LOST) == 1)
        await asyncio.to_thread(redis_server.start)
        assert await job.wait_until_finished(timeout=15) == "payload"
    finally:
        await worker.close()
        await task
    assert count(worker_log, LOST) == 1
