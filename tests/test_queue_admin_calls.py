"""Queue administration in bulk: clean, drain, obliterate, retry_jobs, promote_jobs;
job.promote / change_delay / change_priority; the dead-letter set."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

import conveyor.sync
from conveyor import Job, JobNotFoundError, JobStateError, Queue, QueueEvents, ValidationError
from conveyor.keys import delayed_due
from helpers import StartWorker, queue_state_is, wait_for


async def redis_ms(redis: aioredis.Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


async def echo(job: Job) -> Any:
    return job.data


async def fail_first_attempt(job: Job) -> Any:
    if job.attempts_made == 0:
        raise RuntimeError(f"first attempt of {job.id}")
    return "second time lucky"


async def queue_keys(redis: aioredis.Redis, queue: Queue) -> list[str]:
    """Every key of the queue (read one by one: no pattern to get wrong)."""
    return sorted(
        key for key in [k.decode() async for k in redis.scan_iter(count=1000)]
        if key.startswith(queue.keys.base)
    )


async def counts_are(queue: Queue, **expected: int) -> bool:
    counts = await queue.get_job_counts(*expected)
    return counts == expected


# -- retry_jobs and clean over many jobs ----------------------------------------------


async def test_retry_jobs_moves_2500_failed_jobs_and_a_worker_completes_them(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.add_bulk([{"name": "flaky", "data": i} for i in range(2500)])
    start_worker(fail_first_attempt, concurrency=50)
    await wait_for(lambda: counts_are(queue, failed=2500), timeout=60)

    assert await queue.retry_jobs("failed") == 2500

    await wait_for(lambda: counts_are(queue, completed=1000, failed=0), timeout=60)
    [job] = await queue.get_jobs("completed", 0, 0)
    assert job.return_value == "second time lucky"
    assert job.attempts_made == 2
    assert await queue.retry_jobs("failed") == 0


async def test_retry_jobs_in_small_batches_does_not_retry_a_job_twice(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def always_fails(job: Job) -> Any:
        raise RuntimeError("still broken")

    await queue.add_bulk([{"name": "broken"} for _ in range(30)])
    start_worker(always_fails, concurrency=10)
    await wait_for(lambda: counts_are(queue, failed=30))
    # The worker fails the retried jobs again while the call is still going:
    # only jobs that had failed before it started are moved.
    assert await queue.retry_jobs("failed", count=3) == 30
    await wait_for(lambda: counts_are(queue, failed=30))
    for job in await queue.get_dead_letter():
        assert job.attempts_made == 2


async def test_retry_jobs_completed_with_reset_attempts(
    queue: Queue, start_worker: StartWorker
) -> None:
    jobs = await queue.add_bulk([{"name": "n", "data": i} for i in range(5)])
    runs: list[str] = []

    async def count_runs(job: Job) -> Any:
        runs.append(job.id)
        return job.attempts_made

    start_worker(count_runs)
    for job in jobs:
        await job.wait_until_finished(timeout=10)
    assert await queue.retry_jobs("completed", reset_attempts=True) == 5
    await wait_for(lambda: len(runs) == 10)
    await wait_for(lambda: counts_are(queue, completed=5))
    for job in jobs:
        await job.refresh()
        assert job.attempts_made == 1  # reset to 0, then one more run


async def test_clean_completed_keeps_jobs_younger_than_the_grace(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    start_worker(echo, concurrency=5)
    old = await queue.add_bulk([{"name": "old", "data": i} for i in range(3)])
    for job in old:
        await job.wait_until_finished(timeout=10)
    [newest_old] = await queue.get_jobs("completed", 0, 0)
    assert newest_old.finished_on is not None
    gap_end = newest_old.finished_on + 1_000
    await wait_for(lambda: redis_ms_at_least(redis, gap_end), timeout=5)
    young = await queue.add_bulk([{"name": "young", "data": i} for i in range(2)])
    for job in young:
        await job.wait_until_finished(timeout=10)

    # Old jobs are over a second old, young ones much younger than that.
    grace = timedelta(milliseconds=await redis_ms(redis) - newest_old.finished_on)
    removed = await queue.clean(grace, 0, "completed")

    assert sorted(removed) == sorted(j.id for j in old)
    assert sorted(j.id for j in await queue.get_jobs("completed")) == sorted(j.id for j in young)
    for job in old:
        assert await queue.get_job(job.id) is None


async def redis_ms_at_least(redis: aioredis.Redis, ms: int) -> bool:
    return await redis_ms(redis) >= ms


async def test_clean_with_limit_removes_the_oldest_first(
    queue: Queue, start_worker: StartWorker
) -> None:
    start_worker(echo)
    jobs = [await queue.add("j", i) for i in range(5)]
    for job in jobs:
        await job.wait_until_finished(timeout=10)  # one at a time: finish times ascend
    removed = await queue.clean(0, 2, "completed")
    assert removed == [jobs[0].id, jobs[1].id]
    assert await queue.get_job_counts("completed") == {"completed": 3}


async def test_clean_removes_2500_waiting_jobs_in_batches_and_emits_removed(
    queue: Queue, redis: aioredis.Redis
) -> None:
    added = await queue.add_bulk([{"name": "w", "data": i} for i in range(2501)])
    events_before = await redis.xrevrange(queue.keys.events, count=1)

    removed = await queue.clean(0, 2500, "waiting")

    # With a limit, the jobs that would run last go first: the head one stays.
    assert sorted(removed) == sorted(j.id for j in added[1:])
    assert [j.id for j in await queue.get_jobs("waiting")] == [added[0].id]
    seen: set[str] = set()
    async with QueueEvents(queue.name, queue.client, last_id=events_before[0][0].decode()) as ev:
        async for event in ev:
            assert event["event"] == "removed"
            assert event["prev"] == "waiting"
            seen.add(event["job_id"])
            if len(seen) == 2500:
                break
    assert seen == set(removed)


async def test_clean_active_leaves_a_job_its_worker_holds(
    queue: Queue, start_worker: StartWorker
) -> None:
    gate = asyncio.Event()

    async def held(job: Job) -> Any:
        await gate.wait()
        return "done"

    job = await queue.add("held")
    start_worker(held)
    await wait_for(lambda: queue_state_is(queue, job.id, "active"))
    assert await queue.clean(0, 0, "active") == []
    gate.set()
    assert await job.wait_until_finished(timeout=10) == "done"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((-1,), "grace_ms"),
        ((1.5,), "grace_ms"),
        ((0, -1), "limit"),
        ((0, "10"), "limit"),
        ((0, 0, "paused"), "state"),
        ((0, 0, "waiting-children"), "state"),
    ],
)
async def test_clean_refuses_bad_arguments(queue: Queue, args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.clean(*args)
    assert info.value.field == field


# -- drain ------------------------------------------------------------------------


async def test_drain_removes_ready_jobs_and_delayed_only_when_asked(
    queue: Queue, start_worker: StartWorker
) -> None:
    gate = asyncio.Event()

    async def held(job: Job) -> Any:
        await gate.wait()
        return job.data

    done = await queue.add("done", 1)
    start_worker(held)
    gate.set()
    await done.wait_until_finished(timeout=10)
    gate.clear()
    running = await queue.add("running", 2)
    await wait_for(lambda: queue_state_is(queue, running.id, "active"))
    await queue.pause()  # the worker takes nothing more
    await queue.add_bulk([{"name": "w", "data": i} for i in range(1500)])
    await queue.add("p", priority=3)
    delayed = await queue.add("d", delay=60_000)

    assert await queue.drain() == 1501
    assert await queue.get_job_counts("waiting", "prioritized", "delayed", "active",
                                      "completed") == {
        "waiting": 0, "prioritized": 0, "delayed": 1, "active": 1, "completed": 1}
    assert await queue.drain(delayed=True) == 1
    assert await queue.get_job(delayed.id) is None

    gate.set()
    assert await running.wait_until_finished(timeout=10) == 2


async def test_drain_refuses_a_non_bool(queue: Queue) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.drain("yes")  # type: ignore[arg-type]
    assert info.value.field == "delayed"


# -- obliterate ----------------------------------------------------------------------


async def test_obliterate_refuses_while_a_job_is_active_and_changes_nothing(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    gate = asyncio.Event()

    async def held(job: Job) -> Any:
        await gate.wait()
        return "finished"

    job = await queue.add("held")
    waiting = await queue.add("next")
    worker = start_worker(held)
    await wait_for(lambda: queue_state_is(queue, job.id, "active"))

    with pytest.raises(JobStateError):
        await queue.obliterate()

    assert await queue.is_paused() is False
    assert await waiting.get_state() == "waiting"
    gate.set()
    assert await job.wait_until_finished(timeout=10) == "finished"
    assert await waiting.wait_until_finished(timeout=10) == "finished"
    await worker.close()

    await queue.obliterate()
    assert await queue_keys(redis, queue) == []


async def test_obliterate_force_deletes_a_running_job_whose_worker_then_records_nothing(
    queue: Queue, start_worker: StartWorker
) -> None:
    gate = asyncio.Event()
    finished: list[str] = []

    async def held(job: Job) -> Any:
        await gate.wait()
        finished.append(job.id)
        return "late"

    job = await queue.add("held")
    worker = start_worker(held)
    await wait_for(lambda: queue_state_is(queue, job.id, "active"))

    await queue.obliterate(force=True)
    gate.set()
    await wait_for(lambda: finished)
    await worker.close()

    assert await queue.get_job(job.id) is None
    assert set((await queue.get_job_counts()).values()) == {0}


async def test_obliterate_deletes_every_key_of_a_big_queue_and_no_other_queue(
    redis_url: str, redis: aioredis.Redis
) -> None:
    # "q[1]" as a glob would match "q1": the pattern must be escaped.
    async with Queue("q[1]", redis_url) as doomed, Queue("q1", redis_url) as other:
        await other.add("keep me")
        jobs = await doomed.add_bulk([{"name": "n", "data": i} for i in range(2500)])
        await doomed.add("later", delay=60_000)
        await doomed.add("important", priority=1)
        await doomed.add("dedup", deduplication={"id": "k"})
        await jobs[0].log("a log line")
        await doomed.upsert_job_scheduler("every-minute", every=60_000)
        assert len(await queue_keys(redis, doomed)) > 2500

        await doomed.obliterate()

        assert await queue_keys(redis, doomed) == []
        assert await other.get_job_counts("waiting") == {"waiting": 1}
        # The name is free again: a new queue, not paused.
        job = await doomed.add("fresh")
        assert await job.get_state() == "waiting"
        assert await doomed.is_paused() is False


# -- promote, change_delay, change_priority ---------------------------------------------


async def test_promote_jobs_runs_every_delayed_job_now(
    queue: Queue, start_worker: StartWorker
) -> None:
    jobs = await queue.add_bulk([{"name": "later", "data": i, "delay": 600_000} for i in range(5)])
    start_worker(echo, block_timeout=60_000)
    assert await queue.promote_jobs(count=2) == 5
    assert [await job.wait_until_finished(timeout=10) for job in jobs] == [0, 1, 2, 3, 4]
    assert await queue.promote_jobs() == 0


async def test_job_promote_runs_a_delayed_job_now(queue: Queue, start_worker: StartWorker) -> None:
    job = await queue.add("later", "now please", delay=600_000)
    other = await queue.add("still later", delay=600_000)
    start_worker(echo, block_timeout=60_000)
    await job.promote()
    assert await job.wait_until_finished(timeout=10) == "now please"
    assert await other.get_state() == "delayed"

    with pytest.raises(JobStateError, match="completed"):
        await job.promote()
    await other.remove()
    with pytest.raises(JobNotFoundError):
        await other.promote()


async def test_change_delay_makes_a_delayed_job_due_sooner(
    queue: Queue, start_worker: StartWorker, redis: aioredis.Redis
) -> None:
    job = await queue.add("later", "soon", delay=600_000)
    start_worker(echo, block_timeout=60_000)
    before = await redis_ms(redis)
    due = await job.change_delay(timedelta(milliseconds=200))
    assert due >= before + 200
    assert await job.wait_until_finished(timeout=10) == "soon"
    await job.refresh()
    assert job.processed_on is not None and job.processed_on >= due


async def test_change_delay_can_postpone_and_refuses_jobs_not_delayed(
    queue: Queue, redis: aioredis.Redis
) -> None:
    job = await queue.add("later", delay=1_000)
    due = await job.change_delay(3_600_000)
    score = await redis.zscore(queue.keys.delayed, job.id)
    assert score is not None and delayed_due(score) == due
    assert await job.get_state() == "delayed"

    ready = await queue.add("ready")
    with pytest.raises(JobStateError, match="waiting"):
        await ready.change_delay(10)
    with pytest.raises(ValidationError) as info:
        await job.change_delay(-5)
    assert info.value.field == "delay"


async def test_change_priority_reorders_waiting_jobs(
    queue: Queue, start_worker: StartWorker
) -> None:
    await queue.pause()
    await queue.add("a", priority=5)
    low_b = await queue.add("b", priority=5)
    plain = await queue.add("c")
    await low_b.change_priority(1)
    await plain.change_priority(9)
    order: list[str] = []

    async def record(job: Job) -> Any:
        order.append(job.name)

    start_worker(record)
    await queue.resume()
    await wait_for(lambda: len(order) == 3)
    assert order == ["b", "a", "c"]
    stored = await queue.get_job(low_b.id)
    assert stored is not None and stored.priority == 1 and low_b.priority == 1


async def test_change_priority_to_none_with_lifo_goes_first(queue: Queue) -> None:
    await queue.pause()
    first = await queue.add("first")
    urgent = await queue.add("urgent", priority=100)
    await urgent.change_priority(0, lifo=True)
    assert [j.id for j in await queue.get_jobs("waiting", asc=True)] == [urgent.id, first.id]
    assert await queue.get_job_counts("prioritized") == {"prioritized": 0}


@pytest.mark.parametrize("priority", [-1, 2_097_153, 1.0, True, "1"])
async def test_change_priority_refuses_a_bad_priority(queue: Queue, priority: Any) -> None:
    job = await queue.add("j")
    with pytest.raises(ValidationError) as info:
        await job.change_priority(priority)
    assert info.value.field == "priority"


async def test_change_priority_of_a_removed_job(queue: Queue) -> None:
    job = await queue.add("j")
    await job.remove()
    with pytest.raises(JobNotFoundError):
        await job.change_priority(3)


# -- the dead-letter set ------------------------------------------------------------------


async def test_dead_letter_lists_retries_and_cleans_failed_jobs(
    queue: Queue, start_worker: StartWorker
) -> None:
    async def broken(job: Job) -> Any:
        if job.data.get("fixed"):
            return "fixed"
        raise ValueError(f"bad input {job.data['n']}")

    jobs = []
    for n in range(3):
        jobs.append(await queue.add("parse", {"n": n}, attempts=2))
    start_worker(broken)
    await wait_for(lambda: counts_are(queue, failed=3))

    dead = await queue.get_dead_letter()
    assert [j.id for j in dead] == [j.id for j in reversed(jobs)]  # newest first
    assert dead[0].failed_reason == "ValueError: bad input 2"
    assert dead[0].attempts_made == 2
    assert len(dead[0].stacktrace) == 2 and "bad input 2" in dead[0].stacktrace[-1]
    assert [j.id for j in await queue.get_dead_letter(1, 1)] == [jobs[1].id]
    assert await queue.get_dead_letter_count() == 3

    await jobs[0].update_data({"n": 0, "fixed": True})
    await dead[-1].retry(reset_attempts=True)
    assert await jobs[0].wait_until_finished(timeout=10) == "fixed"
    assert await queue.get_dead_letter_count() == 2

    removed = await queue.clean(0, 0, "failed")
    assert sorted(removed) == sorted([jobs[1].id, jobs[2].id])
    assert await queue.get_dead_letter() == []
    assert await queue.get_dead_letter_count() == 0


async def test_get_dead_letter_refuses_bad_bounds(queue: Queue) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.get_dead_letter("0")  # type: ignore[arg-type]
    assert info.value.field == "start"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda q: q.retry_jobs("waiting"), "state"),
        (lambda q: q.retry_jobs("failed", 0), "count"),
        (lambda q: q.promote_jobs(0), "count"),
        (lambda q: q.obliterate(force=1), "force"),
    ],
)
async def test_bulk_calls_refuse_bad_arguments(queue: Queue, call: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await call(queue)
    assert info.value.field == field


# -- conveyor.sync ---------------------------------------------------------------------------


def test_sync_twins(redis_url: str, queue_name: str) -> None:
    with conveyor.sync.Queue(queue_name, redis_url) as q:
        later = q.add("later", delay=600_000)
        other = q.add("other", delay=600_000)
        later.change_priority(2)
        assert later.change_delay(700_000) > 0
        later.promote()
        assert later.get_state() == "prioritized"
        assert q.promote_jobs() == 1
        assert other.get_state() == "waiting"
        assert q.drain() == 2
        assert q.clean(0, 0, "completed") == []
        assert q.retry_jobs() == 0
        assert q.get_dead_letter() == []
        assert q.get_dead_letter_count() == 0
        assert q.get_workers() == []
        q.obliterate()
        assert q.get_job_counts("waiting") == {"waiting": 0}
