"""Cancelling jobs from anywhere, and step jobs that step out and come back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import Job, JobNotFoundError, JobStateError, Queue
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def _state(queue: Queue, job_id: str) -> str | None:
    return await queue.get_job_state(job_id)


async def test_a_cancelled_running_job_stops_within_a_second(
    queue: Queue, start_worker: StartWorker
) -> None:
    started = asyncio.Event()
    seen: list[Any] = []

    async def process(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append(job.cancel_reason)
            raise

    job = await queue.add("export", attempts=3)
    start_worker(process)
    await asyncio.wait_for(started.wait(), 5)
    begin = time.monotonic()
    assert await queue.cancel(job.id, "user pressed stop") is True
    await wait_for(lambda: _is(queue, job.id, "failed"), timeout=5)
    assert time.monotonic() - begin < 1.0
    assert seen == ["user pressed stop"]
    await job.refresh()
    assert job.failed_reason == "cancelled: user pressed stop"
    assert job.attempts_made == 1  # failed for good: 3 attempts allowed, none retried


async def _is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


async def test_the_processor_tells_a_cancel_from_a_timeout(
    queue: Queue, start_worker: StartWorker
) -> None:
    verdicts: dict[str, bool] = {}

    async def process(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            verdicts[job.name] = job.is_cancelled
            raise

    timed = await queue.add("timed", timeout=200)
    cancelled = await queue.add("cancelled")
    start_worker(process, concurrency=2)
    await wait_for(lambda: _is(queue, cancelled.id, "active"))
    await queue.cancel(cancelled.id)
    await wait_for(lambda: _is(queue, timed.id, "failed"), timeout=5)
    await wait_for(lambda: _is(queue, cancelled.id, "failed"), timeout=5)
    assert verdicts == {"timed": False, "cancelled": True}


async def test_waiting_and_delayed_jobs_are_just_removed(queue: Queue) -> None:
    waiting = await queue.add("a")
    delayed = await queue.add("b", delay=60_000)
    prioritized = await queue.add("c", priority=3)
    for job in (waiting, delayed, prioritized):
        assert await queue.cancel(job.id) is True
        assert await queue.get_job(job.id) is None
    assert await queue.get_job_counts("waiting", "delayed", "prioritized") == {
        "waiting": 0, "delayed": 0, "prioritized": 0,
    }


async def test_cancelling_a_finished_or_missing_job(
    queue: Queue, start_worker: StartWorker
) -> None:
    job = await queue.add("a")
    start_worker(lambda j: 1)
    await job.wait_until_finished(timeout=5)
    assert await queue.cancel(job.id) is False
    with pytest.raises(JobNotFoundError):
        await queue.cancel("nope")


async def test_a_missed_cancel_message_is_caught_by_the_lock_renewal(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    async def process(job: Job) -> None:
        await asyncio.sleep(60)

    job = await queue.add("a")
    start_worker(process, lock_duration=1000)
    await wait_for(lambda: _is(queue, job.id, "active"))
    await redis.hset(queue.keys.cancels, job.id, "marked while nobody listened")
    await wait_for(lambda: _is(queue, job.id, "failed"), timeout=3)
    await job.refresh()
    assert job.failed_reason == "cancelled: marked while nobody listened"
    assert await redis.hlen(queue.keys.cancels) == 0  # cleaned up when the job failed


async def test_a_step_job_comes_back_with_its_state(
    queue: Queue, start_worker: StartWorker
) -> None:
    steps: list[int] = []

    async def process(job: Job) -> str | None:
        step = job.data["step"]
        steps.append(step)
        if step < 3:
            await job.update_data({"step": step + 1})
            await job.move_to_delayed(50)
            return None
        return "done"

    job = await queue.add("onboarding", {"step": 1}, attempts=1)
    start_worker(process)
    assert await job.wait_until_finished(timeout=10) == "done"
    await job.refresh()
    assert steps == [1, 2, 3]
    assert job.data == {"step": 3}
    assert job.attempts_made == 1  # stepping out used no attempt
    assert job.attempts_started == 3


async def test_a_stepped_out_job_waits_in_delayed(queue: Queue, start_worker: StartWorker) -> None:
    async def process(job: Job) -> None:
        await job.move_to_delayed(60_000)

    job = await queue.add("later")
    start_worker(process)
    await wait_for(lambda: _is(queue, job.id, "delayed"))
    assert (await queue.get_job_counts("active"))["active"] == 0


async def test_move_to_delayed_outside_a_worker_is_refused(queue: Queue) -> None:
    job = await queue.add("a")
    with pytest.raises(JobStateError):
        await job.move_to_delayed(1000)


async def test_update_data_of_a_removed_job(queue: Queue) -> None:
    job = await queue.add("a", 1)
    await job.update_data(2)
    assert (await job.refresh()).data == 2
    await job.remove()
    with pytest.raises(JobNotFoundError):
        await job.update_data(3)
