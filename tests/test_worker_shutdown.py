"""Worker: graceful and forced shutdown with ``close()``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, SyncJob, Worker
from helpers import queue_state_is, wait_for


async def wait_list(redis: aioredis.Redis, queue: Queue) -> list[str]:
    return [i.decode() for i in await redis.lrange(queue.keys.wait, 0, -1)]


async def test_close_lets_a_running_job_finish(
    queue: Queue, redis_url: str, redis: aioredis.Redis
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def gated(job: Job) -> str:
        started.set()
        await gate.wait()
        return "finished"

    worker = Worker(queue.name, gated, connection=redis_url)
    task = asyncio.create_task(worker.run())
    job = await queue.add("long")
    await wait_for(started.is_set)

    closing = asyncio.create_task(worker.close())
    await asyncio.sleep(0)  # let close() begin: from here no job is taken
    later = await queue.add("added-while-closing")
    assert not closing.done() and not task.done()
    assert await job.get_state() == "active"
    gate.set()
    await closing
    assert await task is None  # run() returns cleanly

    assert await job.get_state() == "completed"
    await job.refresh()
    assert job.return_value == "finished" and job.attempts_made == 1
    assert await later.get_state() == "waiting"  # a closing worker takes nothing new
    assert await wait_list(redis, queue) == [later.id]


async def test_close_with_timeout_hands_an_endless_job_back_to_the_head(
    queue: Queue, redis_url: str, redis: aioredis.Redis
) -> None:
    outcome: list[str] = []

    async def endless(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    worker = Worker(queue.name, endless, connection=redis_url)
    task = asyncio.create_task(worker.run())
    job = await queue.add("endless", attempts=3)
    # (get_job_counts returns {"active": 0} before the job starts: truthy, so no use here)
    await wait_for(lambda: queue_state_is(queue, job.id, "active"), message="job active")
    other = await queue.add("queued-behind")

    await worker.close(timeout=0.2)
    assert await task is None
    assert outcome == ["cancelled"]
    assert await job.get_state() == "waiting"
    assert await wait_list(redis, queue) == [job.id, other.id]  # back at the head
    await job.refresh()
    assert job.attempts_made == 0  # no attempt counted
    assert job.failed_reason is None and job.stacktrace == []
    assert job.token is None
    assert await queue.get_job_counts("failed", "active") == {"failed": 0, "active": 0}

    async def quick(job: Job) -> str:
        return f"{job.name} done"

    second = Worker(queue.name, quick, connection=redis_url)
    task = asyncio.create_task(second.run())
    try:
        assert await job.wait_until_finished(timeout=10) == "endless done"
        assert await other.wait_until_finished(timeout=10) == "queued-behind done"
    finally:
        await second.close()
        await task
    await job.refresh()
    assert job.attempts_made == 1


async def test_close_with_timeout_hands_back_a_stuck_sync_job(
    queue: Queue, redis_url: str
) -> None:
    started = threading.Event()
    release = threading.Event()

    def stuck(job: SyncJob) -> str:
        started.set()
        release.wait(30)
        return "late"

    worker = Worker(queue.name, stuck, connection=redis_url)
    task = asyncio.create_task(worker.run())
    try:
        job = await queue.add("stuck")
        await wait_for(started.is_set)
        await worker.close(timeout=0.2)
        await task
    finally:
        release.set()
    assert await job.get_state() == "waiting"
    await job.refresh()
    assert job.attempts_made == 0 and job.return_value is None


async def test_close_waits_for_all_running_jobs(queue: Queue, redis_url: str) -> None:
    gate = asyncio.Event()
    running: set[str] = set()

    async def gated(job: Job) -> str:
        running.add(job.id)
        await gate.wait()
        return job.id

    worker = Worker(queue.name, gated, connection=redis_url, concurrency=3)
    task = asyncio.create_task(worker.run())
    jobs = await queue.add_bulk([{"name": "g"} for _ in range(3)])
    await wait_for(lambda: len(running) == 3)
    closing = asyncio.create_task(worker.close())
    await asyncio.sleep(0)
    assert not closing.done()
    gate.set()
    await closing
    await task
    assert [await j.get_state() for j in jobs] == ["completed"] * 3


@pytest.mark.timeout(15)
async def test_close_on_an_idle_worker_returns_promptly(queue: Queue, redis_url: str) -> None:
    drained = asyncio.Event()

    async def proc(job: Job) -> None:
        return None

    # A block far longer than the test's time limit: close() must not wait it out.
    worker = Worker(queue.name, proc, connection=redis_url, block_timeout=60_000)
    worker.on("drained", drained.set)
    task = asyncio.create_task(worker.run())
    await wait_for(drained.is_set)
    await worker.close()
    assert task.done()
    assert await task is None


async def test_close_before_run_and_close_twice(queue: Queue, redis_url: str) -> None:
    async def proc(job: Job) -> None:
        return None

    never_run = Worker(queue.name, proc, connection=redis_url)
    await never_run.close()

    worker = Worker(queue.name, proc, connection=redis_url)
    task = asyncio.create_task(worker.run())
    await worker.close()  # run() may not even have started yet
    await worker.close()
    assert await task is None

    done: list[Any] = []
    worker = Worker(queue.name, proc, connection=redis_url)
    worker.on("completed", lambda job, result: done.append(job.id))
    task = asyncio.create_task(worker.run())
    job = await queue.add("one")
    await wait_for(lambda: done)
    await asyncio.gather(worker.close(), worker.close())
    assert await task is None
    assert done == [job.id]


@pytest.mark.timeout(20)
async def test_close_timeout_covers_jobs_from_a_fetch_in_flight(
    queue: Queue, redis_url: str, redis: aioredis.Redis
) -> None:
    """A job taken by a fetch that was already on its way when close(timeout) began
    is handed back at the timeout too, instead of holding close() forever."""
    fetching = asyncio.Event()
    let_fetch_return = asyncio.Event()

    async def endless(job: Job) -> None:
        await asyncio.Event().wait()

    job = await queue.add("endless")
    worker = Worker(queue.name, endless, connection=redis_url)
    real_fetch = worker.queue.scripts.move_to_active

    async def held_fetch(*args: Any) -> Any:
        fetching.set()
        await let_fetch_return.wait()
        return await real_fetch(*args)

    worker.queue.scripts.move_to_active = held_fetch  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    await wait_for(fetching.is_set)
    closing = asyncio.create_task(worker.close(timeout=0.2))
    await asyncio.sleep(0)  # close() has begun: nothing is running yet
    let_fetch_return.set()
    await asyncio.wait_for(closing, 10)
    assert await task is None
    assert await job.get_state() == "waiting"
    await job.refresh()
    assert job.attempts_made == 0


@pytest.mark.timeout(20)
async def test_close_returns_even_if_a_redis_call_swallows_the_cancel(
    queue: Queue, redis_url: str
) -> None:
    """Python 3.11's asyncio.wait_for (inside redis-py) can eat a cancel that lands
    just as a reply arrives; the worker must still stop instead of sleeping on."""
    checking = asyncio.Event()
    swallowed: list[bool] = []

    async def proc(job: Job) -> None:
        return None

    worker = Worker(queue.name, proc, connection=redis_url, stalled_interval=600_000)

    async def check_that_eats_cancel(*args: Any) -> Any:
        checking.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append(True)  # return as if the reply had won the race
        return []

    worker.queue.scripts.move_stalled_jobs = check_that_eats_cancel  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    await wait_for(checking.is_set)
    await asyncio.wait_for(worker.close(), 10)
    assert await task is None
    assert swallowed == [True]


async def test_a_cancelled_error_raised_by_the_processor_is_a_failure_not_a_handback(
    queue: Queue, redis_url: str
) -> None:
    async def cancels_inside(job: Job) -> None:
        inner = asyncio.create_task(asyncio.sleep(10))
        inner.cancel()
        await inner  # re-raises CancelledError in the processor: not a shutdown

    worker = Worker(queue.name, cancels_inside, connection=redis_url)
    task = asyncio.create_task(worker.run())
    job = await queue.add("x")
    await wait_for(lambda: job.get_state(), message="job leaves waiting")
    await wait_for(lambda: _state_is(job, "failed"))
    await worker.close()
    await task
    await job.refresh()
    assert job.attempts_made == 1
    assert job.failed_reason is not None and "CancelledError" in job.failed_reason


async def _state_is(job: Job, state: str) -> bool:
    return await job.get_state() == state
