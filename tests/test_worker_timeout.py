"""Worker: the per-job ``timeout`` option."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conveyor import Job, JobFailedError, JobTimeoutError, Queue, SyncJob
from helpers import StartWorker, wait_for


async def test_timeout_fails_the_job_and_cancels_the_coroutine(
    queue: Queue, start_worker: StartWorker
) -> None:
    outcome: list[str] = []
    errors: list[BaseException] = []

    async def sleepy(job: Job) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        finally:
            outcome.append("finally")
        return "woke up"

    worker = start_worker(sleepy)
    worker.on("failed", lambda job, error: errors.append(error))
    job = await queue.add("sleepy", timeout=100)
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=10)
    assert info.value.failed_reason == f"JobTimeoutError: job {job.id} timed out after 100 ms"
    assert outcome == ["cancelled", "finally"]  # the coroutine really was cancelled
    await wait_for(lambda: errors)
    assert isinstance(errors[0], JobTimeoutError)
    assert isinstance(errors[0], TimeoutError)
    await job.refresh()
    assert await job.get_state() == "failed"
    assert job.attempts_made == 1
    assert job.stacktrace and "JobTimeoutError" in job.stacktrace[0]


async def test_timed_out_job_is_retried_while_attempts_remain(
    queue: Queue, start_worker: StartWorker
) -> None:
    cancelled: list[int] = []

    async def slow_then_fast(job: Job) -> str:
        if job.attempts_made == 0:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(job.attempts_made)
                raise
        return f"done on attempt {job.attempts_made + 1}"

    start_worker(slow_then_fast)
    job = await queue.add("retry-after-timeout", timeout=100, attempts=2)
    assert await job.wait_until_finished(timeout=10) == "done on attempt 2"
    assert cancelled == [0]
    await job.refresh()
    assert job.attempts_made == 2
    assert len(job.stacktrace) == 1 and "timed out after 100 ms" in job.stacktrace[0]


async def test_job_within_its_timeout_completes(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def quick(job: Job) -> int:
        await asyncio.sleep(0)
        return 1

    start_worker(quick)
    job = await queue.add("quick", timeout=10_000)
    assert await job.wait_until_finished(timeout=10) == 1


async def test_timeout_of_a_sync_processor_fails_the_job(
    queue: Queue, start_worker: StartWorker
) -> None:
    """A thread cannot be cancelled, but the job still fails on time."""
    release = threading.Event()

    def stuck(job: SyncJob) -> str:
        release.wait(30)
        return "late"

    start_worker(stuck)
    try:
        job = await queue.add("stuck", timeout=100)
        with pytest.raises(JobFailedError, match="timed out after 100 ms"):
            await job.wait_until_finished(timeout=10)
    finally:
        release.set()
    await job.refresh()
    assert job.return_value is None  # the thread's late result is discarded
    assert await job.get_state() == "failed"
