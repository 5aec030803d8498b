"""Rate limits and the global concurrency cap, across several workers at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor import Job, Queue, RateLimitError, ValidationError, Worker
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("completed"))["completed"] == n


async def test_a_limiter_of_10_per_second_over_three_workers(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.add_bulk([{"name": "call-api", "data": i} for i in range(35)])
    for _ in range(3):
        start_worker(lambda job: None, concurrency=10, limiter={"max": 10, "duration": 1000})
    await wait_for(lambda: _completed(queue, 35), timeout=15)
    jobs = await queue.get_jobs("completed")
    starts = sorted(job.processed_on or 0 for job in jobs)  # Redis' clock
    assert len(starts) == 35
    # No window of one second holds more than 10 starts...
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 1000, (i, starts[i], starts[i + 10])
    # ...and the limit is used, not avoided: 35 jobs take barely more than 3 s.
    assert starts[-1] - starts[0] < 4_500


async def test_global_concurrency_caps_active_jobs_across_workers(
    queue: Queue, start_worker: StartWorker
) -> None:
    running = 0
    most = 0

    async def process(job: Job) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1

    await queue.set_global_concurrency(3)
    assert await queue.get_global_concurrency() == 3
    await queue.add_bulk([{"name": "n"} for _ in range(30)])
    start_worker(process, concurrency=10)
    start_worker(process, concurrency=10)
    await wait_for(lambda: _completed(queue, 30), timeout=15)
    assert most == 3


async def test_lifting_the_cap_wakes_idle_workers(
    queue: Queue, start_worker: StartWorker
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def process(job: Job) -> None:
        started.append(job.id)
        if job.name == "long":
            await release.wait()

    await queue.set_global_concurrency(1)
    long_job = await queue.add("long")
    # A long block timeout: only a wake-up marker can start the second job soon.
    start_worker(process, concurrency=5, block_timeout=60_000)
    start_worker(process, concurrency=5, block_timeout=60_000)
    await wait_for(lambda: started == [long_job.id])
    short = await queue.add("short")
    await wait_for(lambda: _state(queue, short.id, "waiting"))
    await queue.set_global_concurrency(None)
    await wait_for(lambda: short.id in started, timeout=3)
    release.set()


async def _state(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


async def test_a_finishing_job_under_the_cap_lets_the_next_one_start(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.set_global_concurrency(1)
    await queue.add_bulk([{"name": "n"} for _ in range(5)])

    async def process(job: Job) -> None:
        await asyncio.sleep(0.01)

    start_worker(process, concurrency=5, block_timeout=60_000)
    start_worker(process, concurrency=5, block_timeout=60_000)
    await wait_for(lambda: _completed(queue, 5), timeout=5)


async def test_rate_limit_error_hands_the_job_back_without_an_attempt(
    queue: Queue, start_worker: StartWorker
) -> None:
    calls: list[tuple[str, float]] = []

    async def process(job: Job) -> str:
        calls.append((job.id, time.monotonic()))
        if len(calls) == 1:
            raise RateLimitError(600)
        return "done"

    first = await queue.add("api")
    start_worker(process, concurrency=5)
    assert await first.wait_until_finished(timeout=10) == "done"
    await first.refresh()
    assert first.attempts_made == 1  # the rate-limited run did not use an attempt
    assert first.attempts_started == 2
    assert [job_id for job_id, _ in calls] == [first.id, first.id]
    assert calls[1][1] - calls[0][1] >= 0.55  # the queue backed off


async def test_a_rate_limited_prioritized_job_runs_again_before_the_rest_of_its_priority(
    queue: Queue, start_worker: StartWorker
) -> None:
    ran: list[str] = []

    async def process(job: Job) -> None:
        ran.append(job.name)
        if ran == ["first"]:
            raise RateLimitError(50)

    await queue.add_bulk([{"name": name, "priority": 2} for name in ("first", "second", "third")])
    start_worker(process, concurrency=1)
    await wait_for(lambda: _completed(queue, 3), timeout=10)
    assert ran == ["first", "first", "second", "third"]


async def test_a_rate_limit_stops_every_worker_of_the_queue(
    queue: Queue, start_worker: StartWorker
) -> None:
    starts: list[float] = []
    limited_at: list[float] = []
    worker: Worker | None = None

    async def process(job: Job) -> None:
        if job.name == "trigger":
            assert worker is not None
            await worker.rate_limit(700)
            limited_at.append(time.monotonic())
        else:
            starts.append(time.monotonic())

    worker = start_worker(process)
    start_worker(process, concurrency=5)
    trigger = await queue.add("trigger")
    await trigger.wait_until_finished(timeout=5)
    await queue.add_bulk([{"name": "other"} for _ in range(4)])
    await wait_for(lambda: len(starts) == 4, timeout=5)
    assert min(starts) - limited_at[0] >= 0.6


async def test_queue_rate_limit_from_a_producer(queue: Queue, start_worker: StartWorker) -> None:
    started = asyncio.Event()

    async def process(job: Job) -> None:
        started.set()

    start_worker(process)
    await queue.rate_limit(500)
    begin = time.monotonic()
    await queue.add("x")
    await asyncio.wait_for(started.wait(), 5)
    assert time.monotonic() - begin >= 0.4


@pytest.mark.parametrize(
    ("limiter", "field"),
    [
        ({"max": 0, "duration": 1000}, "limiter.max"),
        ({"max": "10"}, "limiter.max"),
        ({"max": 5, "duration": 0}, "limiter.duration"),
        ({"max": 5, "per": 1000}, "limiter"),
        ([5, 1000], "limiter"),
    ],
)
def test_a_bad_limiter_names_the_field(limiter: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Worker("q", lambda job: None, limiter=limiter)
    assert err.value.field == field


async def test_a_bad_cap_names_the_field(queue: Queue) -> None:
    with pytest.raises(ValidationError) as err:
        await queue.set_global_concurrency(-1)
    assert err.value.field == "n"
