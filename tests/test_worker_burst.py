"""A worker that stops by itself: ``burst=True`` once its queue has nothing
ready, ``max_jobs=n`` after taking n jobs (conveyor._run_limits)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor import Job, Queue, ValidationError, Worker
from conveyor.app import Conveyor
from helpers import unique_queue_name

pytestmark = pytest.mark.cluster  # on one server and on a Redis Cluster


async def run_until_it_stops(worker: Worker, timeout: float = 30) -> float:
    """Seconds ``worker.run()`` took to return by itself."""
    began = time.monotonic()
    await asyncio.wait_for(worker.run(), timeout)
    return time.monotonic() - began


class Runs:
    """A processor that counts its runs by job id (several jobs at once)."""

    def __init__(self, seconds: float = 0.0, fail_first: bool = False) -> None:
        self.seconds, self.fail_first = seconds, fail_first
        self.by_id: dict[str, int] = {}

    async def __call__(self, job: Job) -> Any:
        self.by_id[job.id] = self.by_id.get(job.id, 0) + 1
        await asyncio.sleep(self.seconds)
        if self.fail_first and self.by_id[job.id] == 1:
            raise RuntimeError("first attempt fails")
        return job.data


async def test_a_burst_worker_runs_every_ready_job_once_then_returns(
    queue: Queue, redis_url: str
) -> None:
    jobs = await queue.add_bulk([{"name": "n", "data": i} for i in range(30)])
    later = await queue.add("later", delay=60_000)
    runs = Runs(seconds=0.01)
    worker = Worker(queue.name, runs, connection=redis_url, concurrency=4, burst=True)
    await run_until_it_stops(worker)
    assert runs.by_id == {job.id: 1 for job in jobs}  # the delayed one did not keep it alive
    assert await queue.get_job_counts("completed", "waiting", "active", "delayed") == {
        "completed": 30, "waiting": 0, "active": 0, "delayed": 1}
    assert await later.get_state() == "delayed"
    assert await queue.get_workers() == []  # it left the registry


async def test_a_burst_worker_on_an_empty_queue_returns_at_once(
    queue: Queue, redis_url: str
) -> None:
    worker = Worker(queue.name, Runs(), connection=redis_url, burst=True)
    assert await run_until_it_stops(worker) < 5


async def test_a_burst_worker_waits_for_a_retry_its_own_report_requeued(
    queue: Queue, redis_url: str
) -> None:
    job = await queue.add("flaky", 7, attempts=2)  # no backoff: straight back to waiting
    runs = Runs(seconds=0.05, fail_first=True)
    worker = Worker(queue.name, runs, connection=redis_url, concurrency=2, burst=True)
    await run_until_it_stops(worker)
    assert runs.by_id == {job.id: 2}
    assert await job.get_state() == "completed"


async def test_a_burst_worker_runs_a_delayed_job_that_became_due(
    queue: Queue, redis_url: str
) -> None:
    job = await queue.add("soon", 1, delay=100)
    await asyncio.sleep(0.2)  # the delay itself: the job is due, not yet moved to waiting
    assert await job.get_state() == "delayed"
    runs = Runs()
    await run_until_it_stops(Worker(queue.name, runs, connection=redis_url, burst=True))
    assert runs.by_id == {job.id: 1}


async def test_max_jobs_takes_that_many_jobs_finishes_them_and_returns(
    queue: Queue, redis_url: str
) -> None:
    jobs = await queue.add_bulk([{"name": "n", "data": i} for i in range(12)])
    runs = Runs(seconds=0.05)
    worker = Worker(queue.name, runs, connection=redis_url, concurrency=3, max_jobs=5)
    await run_until_it_stops(worker)
    assert len(runs.by_id) == 5 and set(runs.by_id.values()) == {1}
    # the first five in queue order, none skipped (three at a time: they start in
    # whatever order their tasks get the loop)
    assert sorted(runs.by_id, key=int) == [job.id for job in jobs[:5]]
    assert await queue.get_job_counts("completed", "waiting", "active") == {
        "completed": 5, "waiting": 7, "active": 0}


async def test_max_jobs_and_burst_together_stop_at_whichever_comes_first(
    queue: Queue, redis_url: str
) -> None:
    await queue.add_bulk([{"name": "n", "data": i} for i in range(3)])
    runs = Runs()
    worker = Worker(queue.name, runs, connection=redis_url, max_jobs=10, burst=True)
    await run_until_it_stops(worker)
    assert len(runs.by_id) == 3


async def test_a_partitioned_queue_shares_max_jobs_across_its_partitions(
    redis_url: str,
) -> None:
    async with Queue(unique_queue_name(), redis_url, partitions=3) as queue:
        await queue.add_bulk([{"name": "n", "data": i} for i in range(20)])
        runs = Runs(seconds=0.02)
        worker = Worker(queue.name, runs, connection=redis_url, concurrency=4, max_jobs=7)
        await run_until_it_stops(worker)
        assert len(runs.by_id) == 7 and set(runs.by_id.values()) == {1}
        assert await queue.get_job_counts("completed", "waiting") == {
            "completed": 7, "waiting": 13}

        burst = Worker(queue.name, runs, connection=redis_url, concurrency=4, burst=True)
        await run_until_it_stops(burst)
        assert len(runs.by_id) == 20 and set(runs.by_id.values()) == {1}


async def test_an_apps_max_jobs_counts_the_jobs_of_all_its_queues(redis_url: str) -> None:
    app = Conveyor(redis_url)
    ran: list[str] = []
    names = unique_queue_name(), unique_queue_name()

    @app.task(queue=names[0])
    async def first(n: int) -> None:
        ran.append(f"first {n}")

    @app.task(queue=names[1])
    async def second(n: int) -> None:
        ran.append(f"second {n}")

    try:
        for n in range(5):
            await first.enqueue(n)
            await second.enqueue(n)
        await asyncio.wait_for(app.run(max_jobs=6, handle_signals=False), 30)
        assert len(ran) == 6
        waiting = [await app.queue(name).get_job_counts("waiting") for name in names]
        assert sum(counts["waiting"] for counts in waiting) == 4

        await asyncio.wait_for(app.run(burst=True, handle_signals=False), 30)
        assert len(ran) == 10 and len(set(ran)) == 10
    finally:
        await app.close()


@pytest.mark.cluster(False)
@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_max_jobs_must_be_a_positive_count(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Worker("q", Runs(), max_jobs=bad)
    assert info.value.field == "max_jobs"


async def test_a_rate_limit_does_not_pass_for_an_empty_queue(
    queue: Queue, redis_url: str
) -> None:
    jobs = await queue.add_bulk([{"name": "n", "data": i} for i in range(6)])
    runs = Runs()
    worker = Worker(queue.name, runs, connection=redis_url, concurrency=2, burst=True,
                    limiter={"max": 2, "duration": 300})
    took = await run_until_it_stops(worker)
    assert runs.by_id == {job.id: 1 for job in jobs}
    assert took >= 0.6  # three windows of two jobs
