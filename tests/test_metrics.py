"""Per-minute counts and wait/processing percentiles, as a dashboard reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from conveyor import Job, Queue, UnrecoverableError, ValidationError
from conveyor.metrics import KEPT_MINUTES, MINUTE_MS, Percentiles
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def test_counts_completed_and_failed_jobs_of_this_minute(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def process(job: Job) -> int:
        if job.data % 4 == 0:
            raise UnrecoverableError("no")
        return 1

    await queue.add_bulk([{"name": "n", "data": i} for i in range(40)])
    start_worker(process, concurrency=10)

    async def all_finished() -> bool:
        counts = await queue.get_job_counts("completed", "failed")
        return counts["completed"] + counts["failed"] == 40

    await wait_for(all_finished)
    completed = await queue.get_metrics("completed")
    failed = await queue.get_metrics("failed")
    assert completed.total == 30
    assert failed.total == 10
    assert len(completed.counts) == 60  # the last hour, one point per minute
    assert completed.points[-1][0] <= datetime.now(UTC) < completed.points[-1][0] + timedelta(
        minutes=1, seconds=5
    )


async def test_a_retried_attempt_is_not_counted_as_failed(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def process(job: Job) -> str:
        if job.attempts_made == 0:
            raise RuntimeError("first try fails")
        return "ok"

    job = await queue.add("flaky", attempts=2)
    start_worker(process)
    assert await job.wait_until_finished(timeout=10) == "ok"
    assert (await queue.get_metrics("completed")).total == 1
    assert (await queue.get_metrics("failed")).total == 0


async def test_processing_and_wait_percentiles(queue: Queue, start_worker: StartWorker) -> None:
    async def process(job: Job) -> None:
        await asyncio.sleep(0.08)

    await queue.add_bulk([{"name": "slow"} for _ in range(20)])
    start_worker(process, concurrency=20)
    await wait_for(lambda: _count(queue, "completed", 20))
    timings = await queue.get_timings(minutes=5)
    assert timings.processing.count == 20
    assert timings.processing.p50 is not None
    # At least the 80 ms sleep (less a bucket's width), at most the longest time a
    # job's hash says it was active (start to report): a loaded machine stretches
    # both, so there is no fixed upper bound.
    jobs = await queue.get_jobs(["completed"], 0, 19)
    active = [j.finished_on - j.processed_on for j in jobs
              if j.finished_on is not None and j.processed_on is not None]
    assert len(active) == 20
    assert 80 * 0.8 <= timings.processing.p50 <= max(active) * 1.1 + 2
    assert timings.wait.count == 20  # first attempts: their wait is measured
    assert timings.wait.p99 is not None and timings.wait.p99 < 5_000


async def _count(queue: Queue, state: str, n: int) -> bool:
    return (await queue.get_job_counts(state))[state] == n


async def test_wait_time_starts_when_a_delayed_job_is_due(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(lambda job: None)
    job = await queue.add("later", delay=300)
    await job.wait_until_finished(timeout=10)
    timings = await queue.get_timings(1)
    assert timings.wait.count == 1
    assert timings.wait.p50 is not None and timings.wait.p50 < 300  # not the 300 ms delay


async def test_an_empty_queue_reads_zeros(queue: Queue) -> None:
    series = await queue.get_metrics("failed")
    assert series.total == 0 and set(series.counts) == {0}
    timings = await queue.get_timings()
    assert timings.wait == Percentiles(0, None, None, None)


async def test_a_range_of_minutes(queue: Queue, redis: aioredis.Redis) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    minute = int(now.timestamp() * 1000) // MINUTE_MS
    await redis.hset(queue.keys.metrics("completed"), mapping={minute - 2: 5, minute: 7})
    series = await queue.get_metrics("completed", now - timedelta(minutes=3), now)
    assert series.counts == [0, 5, 0, 7]
    assert series.start == now - timedelta(minutes=3)
    assert series.per_second(1) == pytest.approx(7 / 60)


async def test_counts_older_than_two_weeks_are_dropped_when_a_minute_starts(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    now_minute = int((await redis.time())[0]) // 60
    key = queue.keys.metrics("completed")
    old = {str(now_minute - KEPT_MINUTES - i): 1 for i in range(10)}
    recent = {str(now_minute - i): 1 for i in range(1, KEPT_MINUTES - 5)}
    await redis.hset(key, mapping={**old, **recent})
    assert await redis.hlen(key) > KEPT_MINUTES
    start_worker(lambda job: None)
    await (await queue.add("x")).wait_until_finished(timeout=10)
    fields = {int(f) for f in await redis.hkeys(key)}
    assert min(fields) > now_minute - KEPT_MINUTES  # every two-week-old minute is gone
    assert await redis.hlen(key) <= KEPT_MINUTES


async def test_the_times_histogram_of_a_minute_expires(
    queue: Queue, redis: aioredis.Redis, start_worker: StartWorker
) -> None:
    start_worker(lambda job: None)
    await (await queue.add("x")).wait_until_finished(timeout=10)
    [key] = [k async for k in redis.scan_iter(match=queue.keys.base + "metrics:times:*")]
    assert 0 < await redis.pttl(key) <= 3 * 3600 * 1000


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda q: q.get_metrics("done"), "kind"),
        (lambda q: q.get_metrics("completed", datetime(2026, 1, 1)), "start"),
        (lambda q: q.get_metrics("completed", 5, 1), "start"),
        (lambda q: q.get_timings(0), "minutes"),
        (lambda q: q.get_timings(10_000), "minutes"),
    ],
)
async def test_bad_arguments_name_the_field(
    queue: Queue, call: Callable[[Queue], Awaitable[object]], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        await call(queue)
    assert err.value.field == field
