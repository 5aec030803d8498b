"""Job: progress, logs, refresh, and wait_until_finished."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import (
    ConveyorError,
    Job,
    JobFailedError,
    JobNotFoundError,
    Queue,
    ValidationError,
    WaitTimeoutError,
    Worker,
)
from helpers import running, wait_for


async def echo_or_fail(job: Job) -> Any:
    if isinstance(job.data, dict) and "fail" in job.data:
        raise RuntimeError(job.data["fail"])
    return job.data


async def blocked_in_xread(redis: aioredis.Redis) -> bool:
    """True once some client waits in XREAD (a waiter listening to the event stream)."""
    return any(c.get("cmd") == "xread" for c in await redis.client_list())


# -- fields -----------------------------------------------------------------------------


async def test_job_fields_seen_by_the_processor(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    seen: list[dict[str, Any]] = []

    async def process(job: Job) -> None:
        seen.append({name: getattr(job, name) for name in (
            "id", "name", "data", "timestamp", "opts", "priority", "attempts_made",
            "attempts_started", "processed_on", "finished_on", "queue")})
        seen[-1]["repr"] = repr(job)

    added = await queue.add("resize", {"w": 10}, attempts=3, priority=2)
    async with running(Worker(queue_name, process, connection=redis_url)):
        await wait_for(lambda: seen)
    job = seen[0]
    assert (job["id"], job["name"], job["data"]) == (added.id, "resize", {"w": 10})
    assert job["timestamp"] == added.timestamp
    assert job["opts"] == added.opts and job["priority"] == 2
    assert job["queue"].name == queue_name
    assert job["attempts_made"] == 0  # counted when the attempt finishes
    assert job["attempts_started"] == 1
    assert job["processed_on"] is not None and job["processed_on"] >= job["timestamp"]
    assert job["finished_on"] is None
    assert job["repr"] == f"<Job {queue_name}:{added.id} 'resize'>"


async def test_refresh_rereads_the_job(queue: Queue, redis_url: str, queue_name: str) -> None:
    job = await queue.add("x", [1, 2])
    assert job.return_value is None and job.finished_on is None
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        await job.wait_until_finished(timeout=5)
    assert await job.refresh() is job
    assert job.return_value == [1, 2]
    assert job.attempts_made == 1
    assert job.finished_on is not None
    await job.remove()
    with pytest.raises(JobNotFoundError) as info:
        await job.refresh()
    assert info.value.job_id == job.id and info.value.queue == queue_name


# -- progress ------------------------------------------------------------------------------


async def test_update_progress_from_the_producer(queue: Queue) -> None:
    job = await queue.add("x")
    assert job.progress is None
    await job.update_progress(10)
    assert job.progress == 10
    await job.update_progress(42.5)
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.progress == 42.5
    await job.update_progress({"step": "download", "pct": 80})
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.progress == {"step": "download", "pct": 80}


@pytest.mark.parametrize("bad", [True, "50%", None, [1, 2], {"when": object()}])
async def test_bad_progress_is_refused(
    queue: Queue, redis: aioredis.Redis, bad: Any
) -> None:
    job = await queue.add("x")
    events = await redis.xlen(queue.keys.events)
    with pytest.raises(ValidationError) as info:
        await job.update_progress(bad)
    assert info.value.field == "progress"
    assert await redis.xlen(queue.keys.events) == events
    assert (await job.refresh()).progress is None


async def test_update_progress_of_a_removed_job(queue: Queue) -> None:
    job = await queue.add("x")
    await job.remove()
    with pytest.raises(JobNotFoundError):
        await job.update_progress(1)


async def test_update_progress_inside_the_processor(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    reported: list[tuple[str, Any]] = []

    async def process(job: Job) -> str:
        await job.update_progress(25)
        await job.update_progress({"done": 3, "of": 4})
        return "ok"

    worker = Worker(queue_name, process, connection=redis_url)
    worker.on("progress", lambda job, progress: reported.append((job.id, progress)))
    job = await queue.add("x")
    async with running(worker):
        assert await job.wait_until_finished(timeout=5) == "ok"
    assert reported == [(job.id, 25), (job.id, {"done": 3, "of": 4})]
    await job.refresh()
    assert job.progress == {"done": 3, "of": 4}


# -- logs ----------------------------------------------------------------------------------


async def test_log_and_get_logs(queue: Queue) -> None:
    job = await queue.add("x")
    assert await job.get_logs() == []
    assert await job.log("first") == 1
    assert await job.log("second ✓") == 2
    assert await job.log("third") == 3
    assert await job.get_logs() == ["first", "second ✓", "third"]
    assert await job.get_logs(1) == ["second ✓", "third"]
    assert await job.get_logs(0, 0) == ["first"]
    assert await job.get_logs(-1) == ["third"]


async def test_logs_keep_the_newest_lines(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url, keep_logs=3) as queue:
        job = await queue.add("x")
        counts = [await job.log(f"line {i}") for i in range(5)]
        assert counts == [1, 2, 3, 3, 3]
        assert await job.get_logs() == ["line 2", "line 3", "line 4"]


async def test_log_refuses_non_strings_and_missing_jobs(queue: Queue) -> None:
    job = await queue.add("x")
    with pytest.raises(ValidationError) as info:
        await job.log(42)  # type: ignore[arg-type]
    assert info.value.field == "line"
    await job.remove()
    with pytest.raises(JobNotFoundError):
        await job.log("too late")
    assert await job.get_logs() == []


async def test_logs_written_by_the_processor(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    async def process(job: Job) -> None:
        await job.log(f"processing {job.data}")
        await job.log("done")

    job = await queue.add("x", "img.png")
    async with running(Worker(queue_name, process, connection=redis_url)):
        await job.wait_until_finished(timeout=5)
    assert await job.get_logs() == ["processing img.png", "done"]


# -- wait_until_finished -----------------------------------------------------------------------


async def test_wait_until_finished_returns_the_value(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        job = await queue.add("x", {"answer": 42})
        assert await job.wait_until_finished(timeout=5) == {"answer": 42}
        # Finished already: returns at once, again.
        assert await job.wait_until_finished(timeout=5) == {"answer": 42}
        none = await queue.add("y")
        assert await none.wait_until_finished() is None


async def test_wait_until_finished_raises_on_failure(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("x", {"fail": "card declined"}, attempts=2)
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        with pytest.raises(JobFailedError) as info:
            await job.wait_until_finished(timeout=5)
    err = info.value
    assert isinstance(err, ConveyorError)
    assert err.job_id == job.id
    assert err.failed_reason == "RuntimeError: card declined"
    assert "card declined" in str(err)
    assert len(err.stacktrace) == 2  # one per attempt
    assert all("RuntimeError: card declined" in s for s in err.stacktrace)


async def test_wait_until_finished_waits_through_retries(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    calls = 0

    async def flaky(job: Job) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"attempt {calls}")
        return "third time lucky"

    job = await queue.add("x", attempts=3)
    async with running(Worker(queue_name, flaky, connection=redis_url)):
        assert await job.wait_until_finished(timeout=5) == "third time lucky"
    assert calls == 3


async def test_wait_until_finished_times_out(queue: Queue) -> None:
    job = await queue.add("x")
    with pytest.raises(WaitTimeoutError) as info:
        await job.wait_until_finished(timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, ConveyorError)
    assert await job.get_state() == "waiting"


async def test_wait_until_finished_of_a_missing_job(queue: Queue) -> None:
    job = await queue.add("x")
    await job.remove()
    with pytest.raises(JobNotFoundError):
        await job.wait_until_finished(timeout=1)


async def test_wait_until_finished_with_remove_on_complete(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    """Waiting from before the job runs: the hash is gone at the end, the event remains."""
    job = await queue.add("x", {"v": 1}, remove_on_complete=True)
    waiter = asyncio.create_task(job.wait_until_finished(timeout=10))
    await wait_for(lambda: blocked_in_xread(redis), message="waiter listening")
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        assert await waiter == {"v": 1}
    assert await queue.get_job(job.id) is None


async def test_wait_until_finished_after_remove_on_complete_already_removed_it(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    """The usual race: a fast worker finished (and deleted) the job before the wait began."""
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        job = await queue.add("x", {"v": 2}, remove_on_complete=True)
        await wait_for(lambda: _gone(queue, job.id), message="job finished and removed")
        assert await job.wait_until_finished(timeout=5) == {"v": 2}


async def test_wait_until_finished_with_remove_on_fail(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("x", {"fail": "nope"}, remove_on_fail=True)
    waiter = asyncio.create_task(job.wait_until_finished(timeout=10))
    await wait_for(lambda: blocked_in_xread(redis), message="waiter listening")
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        with pytest.raises(JobFailedError) as info:
            await waiter
    assert info.value.failed_reason == "RuntimeError: nope"

    late = await queue.add("y", {"fail": "again"}, remove_on_fail=True)
    async with running(Worker(queue_name, echo_or_fail, connection=redis_url)):
        await wait_for(lambda: _gone(queue, late.id), message="job failed and removed")
    with pytest.raises(JobFailedError, match="again"):
        await late.wait_until_finished(timeout=5)


async def test_wait_until_finished_of_a_job_removed_by_hand(queue: Queue) -> None:
    """A 'removed' job is not mistaken for an earlier completion of the same id."""
    job = await queue.add("x", job_id="same")
    await queue.remove("same")
    with pytest.raises(JobNotFoundError):
        await job.wait_until_finished(timeout=1)


async def _gone(queue: Queue, job_id: str) -> bool:
    return await queue.get_job(job_id) is None


async def test_cancelling_wait_until_finished_stops_it(queue: Queue) -> None:
    job = await queue.add("never-runs")
    for i in range(8):
        waiter = asyncio.create_task(job.wait_until_finished())
        await queue.add(f"noise-{i}")  # an event the waiter reads while it runs
        await asyncio.sleep(0)
        await job.update_progress(i)
        waiter.cancel()
        done, _ = await asyncio.wait([waiter], timeout=5)
        assert done, f"waiter ignored cancel() in round {i}"
        assert waiter.cancelled()


async def test_wait_until_finished_under_asyncio_timeout(queue: Queue) -> None:
    job = await queue.add("never-runs")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await job.wait_until_finished()
