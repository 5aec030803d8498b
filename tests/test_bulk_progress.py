"""Queue.retry_jobs and Queue.clean report progress: ``progress=`` is called
with the running count after each batch (the inspector's progress bars)."""

from __future__ import annotations

from typing import Any

import conveyor.sync
from conveyor import Job, Queue
from helpers import StartWorker, wait_for


async def always_fails(job: Job) -> Any:
    raise RuntimeError("still broken")


async def failed_count_is(queue: Queue, n: int) -> bool:
    return (await queue.get_job_counts("failed"))["failed"] == n


async def test_retry_jobs_reports_the_running_count_after_each_batch(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.add_bulk([{"name": "broken"} for _ in range(25)])
    worker = start_worker(always_fails, concurrency=25)
    await wait_for(lambda: failed_count_is(queue, 25))
    await worker.close()
    seen: list[int] = []
    assert await queue.retry_jobs("failed", count=10, progress=seen.append) == 25
    assert seen == [10, 20, 25]


async def test_clean_reports_the_running_count_after_each_batch(queue: Queue) -> None:
    await queue.add_bulk([{"name": "idle"} for _ in range(2500)])
    seen: list[int] = []
    assert len(await queue.clean(0, 0, "waiting", progress=seen.append)) == 2500
    assert seen == [1000, 2000, 2500]
    seen.clear()
    assert await queue.clean(0, 0, "waiting", progress=seen.append) == []
    assert seen == [0]


def test_the_sync_twins_report_progress_too(redis_url: str, queue_name: str) -> None:
    with conveyor.sync.Queue(queue_name, redis_url) as q:
        q.add_bulk([{"name": "idle"} for _ in range(1200)])
        seen: list[int] = []
        assert len(q.clean(0, 1100, "waiting", progress=seen.append)) == 1100
        assert seen == [1000, 1100]
        seen.clear()
        assert q.retry_jobs("failed", progress=seen.append) == 0
        assert seen == [0]
