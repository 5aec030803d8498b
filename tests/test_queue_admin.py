"""Administering a queue: pause/resume, remove, retry, and retention of finished jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from conveyor import (
    ConveyorError,
    Job,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    Queue,
    Worker,
)
from conveyor.options import DEFAULT_KEEP_COMPLETED, DEFAULT_KEEP_FAILED, Retention
from helpers import command_calls, running, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


class Recorder:
    """A worker's processor: data {"fail": true} raises, anything else is returned.
    Records started ids and finished (completed or failed) ids."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []

    async def __call__(self, job: Job) -> Any:
        self.started.append(job.id)
        if isinstance(job.data, dict) and job.data.get("fail"):
            raise RuntimeError("boom")
        return job.data

    def worker(self, queue_name: str, redis_url: str, **kwargs: Any) -> Worker:
        worker = Worker(queue_name, self, connection=redis_url, **kwargs)
        worker.on("completed", lambda job, _: self.finished.append(job.id))
        worker.on("failed", lambda job, _: self.finished.append(job.id))
        return worker

    async def run_until(self, queue_name: str, redis_url: str, n: int) -> None:
        async with running(self.worker(queue_name, redis_url)):
            await wait_for(lambda: len(self.finished) >= n, message=f"{n} jobs finished")


async def redis_ms(redis: aioredis.Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


# -- pause / resume -------------------------------------------------------------------


async def test_pause_and_resume_flag(queue: Queue, redis: aioredis.Redis) -> None:
    assert await queue.is_paused() is False
    await queue.pause()
    assert await queue.is_paused() is True
    await queue.pause()  # idempotent
    assert await queue.is_paused() is True
    await queue.resume()
    assert await queue.is_paused() is False
    await queue.resume()
    assert await queue.is_paused() is False


async def test_adds_land_while_paused(queue: Queue) -> None:
    await queue.pause()
    w = await queue.add("w")
    p = await queue.add("p", priority=4)
    d = await queue.add("d", delay=60_000)
    assert await queue.get_job_state(w.id) == "waiting"
    assert await queue.get_job_state(p.id) == "prioritized"
    assert await queue.get_job_state(d.id) == "delayed"
    assert await queue.get_job_counts("waiting", "prioritized", "delayed") == {
        "waiting": 1, "prioritized": 1, "delayed": 1,
    }


async def idle_waits(redis: aioredis.Redis) -> int:
    """How many blocking waits for work (BZPOPMIN on the queue's marker) the server has
    run: an idle worker that does one more has looked at the queue once more."""
    return (await command_calls(redis)).get("bzpopmin", 0)


async def test_worker_starts_nothing_while_paused(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    await queue.pause()
    job = await queue.add("x", "v")
    rec = Recorder()
    drained = asyncio.Event()
    worker = rec.worker(queue_name, redis_url, block_timeout=50)
    worker.on("drained", drained.set)
    async with running(worker):
        # The worker looked at the queue (after the add) and found nothing to start.
        await wait_for(drained.is_set, message="worker idle")
        assert rec.started == []
        assert await queue.get_job_state(job.id) == "waiting"
        # Adding to a paused queue while the worker idles does not start it either,
        # however often the worker wakes up and looks again.
        late = await queue.add("late")
        mark = await idle_waits(redis)

        async def looked_again() -> bool:
            return await idle_waits(redis) >= mark + 3

        await wait_for(looked_again, message="worker woke and looked again")
        assert rec.started == []
        assert await queue.get_job_counts("waiting", "active") == {"waiting": 2, "active": 0}

        await queue.resume()
        await wait_for(lambda: len(rec.finished) == 2, message="both ran after resume")
    assert rec.started == [job.id, late.id]
    assert await job.get_state() == "completed"


async def test_resume_wakes_an_idle_worker_at_once(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    """An idle worker blocked on the queue (long block_timeout) starts work on resume."""
    rec = Recorder()
    drained = asyncio.Event()
    worker = rec.worker(queue_name, redis_url, block_timeout=60_000)
    worker.on("drained", drained.set)
    async with running(worker):
        await wait_for(drained.is_set, message="worker idle")
        await queue.pause()
        job = await queue.add("x")
        assert await queue.get_job_state(job.id) == "waiting"
        await queue.resume()
        await wait_for(lambda: rec.finished == [job.id], timeout=5, message="job ran")


async def test_pause_lets_the_running_job_finish_but_starts_no_next(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    release = asyncio.Event()
    started: list[str] = []
    finished: list[str] = []

    async def process(job: Job) -> str:
        started.append(job.id)
        if job.data == "hold":
            await release.wait()
        return "ok"

    drained = asyncio.Event()
    worker = Worker(queue_name, process, connection=redis_url, block_timeout=50)
    worker.on("completed", lambda job, _: finished.append(job.id))
    first = await queue.add("first", "hold")
    async with running(worker):
        await wait_for(lambda: started == [first.id])
        worker.on("drained", drained.set)
        await queue.pause()
        second = await queue.add("second")
        release.set()
        await wait_for(lambda: finished == [first.id], message="running job finished")
        # Reporting the finished job also fetches the next: it found nothing to start.
        await wait_for(drained.is_set, message="worker idle after the job")
        assert started == [first.id]
        assert await queue.get_job_state(second.id) == "waiting"
        await queue.resume()
        await wait_for(lambda: finished == [first.id, second.id])


async def test_pause_is_per_queue(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as paused, Queue(queue_name + "-b", redis_url) as other:
        await paused.pause()
        assert await other.is_paused() is False
        held = await paused.add("held")
        runs = await other.add("runs")
        rec_paused, rec_other = Recorder(), Recorder()
        async with running(rec_paused.worker(paused.name, redis_url, block_timeout=50)), \
                running(rec_other.worker(other.name, redis_url)):
            # Once the other queue's job was processed, the paused one is still waiting.
            await wait_for(lambda: rec_other.finished == [runs.id])
            assert rec_paused.started == []
            assert await paused.get_job_state(held.id) == "waiting"


async def test_pause_and_resume_emit_events(queue: Queue, redis: aioredis.Redis) -> None:
    await queue.pause()
    await queue.resume()
    entries = await redis.xrange(queue.keys.events)
    assert [e[b"event"] for _, e in entries] == [b"paused", b"resumed"]


# -- remove -----------------------------------------------------------------------------------


async def test_remove_a_job_in_each_idle_state(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    done = await queue.add("done")
    bad = await queue.add("bad", {"fail": True})
    await Recorder().run_until(queue_name, redis_url, 2)
    waiting = await queue.add("w")
    prio = await queue.add("p", priority=1)
    delayed = await queue.add("d", delay=60_000)
    await waiting.log("a log line")

    for job in (done, bad, waiting, prio, delayed):
        assert await queue.remove(job.id) is True
        assert await queue.get_job(job.id) is None
        assert await queue.get_job_state(job.id) is None
    assert await redis.exists(queue.keys.logs(waiting.id)) == 0
    counts = await queue.get_job_counts()
    assert all(n == 0 for n in counts.values()), counts
    removed = [e for _, e in await redis.xrange(queue.keys.events) if e[b"event"] == b"removed"]
    assert [e[b"job_id"].decode() for e in removed] == [
        done.id, bad.id, waiting.id, prio.id, delayed.id
    ]


async def test_remove_missing_job(queue: Queue) -> None:
    assert await queue.remove("nope") is False
    job = await queue.add("x")
    assert await queue.remove(job.id) is True
    assert await queue.remove(job.id) is False


async def test_job_remove(queue: Queue) -> None:
    job = await queue.add("x", priority=3)
    await job.remove()
    assert await queue.get_job(job.id) is None
    with pytest.raises(JobNotFoundError):
        await job.refresh()
    assert await job.get_state() is None


async def test_removed_job_is_never_run(queue: Queue, redis_url: str, queue_name: str) -> None:
    gone = await queue.add("gone")
    kept = await queue.add("kept")
    assert await queue.remove(gone.id)
    rec = Recorder()
    await rec.run_until(queue_name, redis_url, 1)
    assert rec.started == [kept.id]


async def test_active_job_cannot_be_removed(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def hold(job: Job) -> str:
        started.append(job.id)
        await release.wait()
        return "finished"

    job = await queue.add("x")
    async with running(Worker(queue_name, hold, connection=redis_url)):
        await wait_for(lambda: started == [job.id])
        with pytest.raises(JobStateError, match="active"):
            await queue.remove(job.id)
        with pytest.raises(JobStateError):
            await job.remove()
        assert isinstance(JobStateError("x"), ConveyorError)
        assert await queue.get_job_state(job.id) == "active"
        release.set()
        assert await job.wait_until_finished(timeout=5) == "finished"
    assert await queue.remove(job.id) is True


# -- retry ------------------------------------------------------------------------------------


async def test_retry_a_failed_job(queue: Queue, redis_url: str, queue_name: str) -> None:
    calls = 0

    async def flaky(job: Job) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first time fails")
        return "second time works"

    job = await queue.add("flaky", attempts=1)
    async with running(Worker(queue_name, flaky, connection=redis_url)):
        with pytest.raises(JobFailedError) as info:
            await job.wait_until_finished(timeout=5)
        assert await job.get_state() == "failed"
        assert info.value.failed_reason == "ValueError: first time fails"

        await job.retry()
        assert await job.wait_until_finished(timeout=5) == "second time works"

    stored = await queue.get_job(job.id)
    assert stored is not None
    assert await stored.get_state() == "completed"
    assert stored.return_value == "second time works"
    assert stored.failed_reason is None
    assert stored.attempts_made == 2
    assert await queue.get_job_counts("failed", "completed") == {"failed": 0, "completed": 1}


async def test_retry_with_reset_attempts(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("bad", {"fail": True}, attempts=2)
    rec = Recorder()
    await rec.run_until(queue_name, redis_url, 2)  # two failed attempts
    await job.refresh()
    assert job.attempts_made == 2
    assert await job.get_state() == "failed"

    await queue.retry_job(job.id, reset_attempts=True)
    assert await job.get_state() == "waiting"
    await job.refresh()
    assert job.attempts_made == 0
    assert job.attempts_started == 0
    assert job.failed_reason is None and job.finished_on is None


async def test_retry_a_completed_job_runs_it_again(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("again", "v")
    rec = Recorder()
    await rec.run_until(queue_name, redis_url, 1)
    await job.retry()
    assert await job.get_state() == "waiting"
    rec2 = Recorder()
    await rec2.run_until(queue_name, redis_url, 1)
    assert rec2.started == [job.id]


async def test_retry_keeps_the_priority(queue: Queue, redis_url: str, queue_name: str) -> None:
    job = await queue.add("bad", {"fail": True}, priority=5)
    await Recorder().run_until(queue_name, redis_url, 1)
    await job.retry()
    assert await job.get_state() == "prioritized"


async def test_retry_refused_for_unfinished_or_missing_jobs(queue: Queue) -> None:
    job = await queue.add("waiting")
    with pytest.raises(JobStateError, match="waiting"):
        await job.retry()
    delayed = await queue.add("later", delay=60_000)
    with pytest.raises(JobStateError, match="delayed"):
        await queue.retry_job(delayed.id)
    with pytest.raises(JobNotFoundError) as info:
        await queue.retry_job("nope")
    assert isinstance(info.value, KeyError)
    assert info.value.job_id == "nope"
    assert await job.get_state() == "waiting"


# -- retention of finished jobs ---------------------------------------------------------------


async def test_default_retention_is_bounded(queue: Queue, redis: aioredis.Redis) -> None:
    assert DEFAULT_KEEP_COMPLETED == 1_000
    assert DEFAULT_KEEP_FAILED == 10_000
    job = await queue.add("x")
    assert job.opts.remove_on_complete == Retention(1_000)
    assert job.opts.remove_on_fail == Retention(10_000)
    # Defaults are not stored with each job (smaller jobs); reading one back
    # restores them.
    assert orjson.loads(await redis.hget(queue.keys.job(job.id), "opts") or b"") == {}
    reread = await queue.get_job(job.id)
    assert reread is not None
    assert reread.opts.remove_on_complete == Retention(1_000)


async def test_default_retention_keeps_finished_jobs(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    jobs = await queue.add_bulk([{"name": "ok"}] * 3 + [{"name": "bad", "data": {"fail": 1}}] * 2)
    await Recorder().run_until(queue_name, redis_url, 5)
    assert await queue.get_job_counts("completed", "failed") == {"completed": 3, "failed": 2}
    for job in jobs:
        assert await queue.get_job(job.id) is not None


async def test_remove_on_complete_true_removes_at_once(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("x", {"v": 1}, remove_on_complete=True)
    await job.log("line")
    await Recorder().run_until(queue_name, redis_url, 1)
    assert await queue.get_job(job.id) is None
    assert await redis.exists(queue.keys.job(job.id), queue.keys.logs(job.id)) == 0
    assert await queue.get_job_counts("completed", "active") == {"completed": 0, "active": 0}
    events = [e for _, e in await redis.xrange(queue.keys.events)]
    completed = [e for e in events if e[b"event"] == b"completed"]
    assert completed and orjson.loads(completed[0][b"return_value"]) == {"v": 1}


async def test_remove_on_fail_true_removes_at_once(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("x", {"fail": True}, remove_on_fail=True, attempts=2)
    rec = Recorder()
    await rec.run_until(queue_name, redis_url, 2)
    assert rec.started == [job.id, job.id]  # retried first, removed only when failed for good
    assert await queue.get_job(job.id) is None
    assert await queue.get_job_counts("failed") == {"failed": 0}


async def test_remove_on_complete_count_keeps_newest(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    jobs = await queue.add_bulk([{"name": "x", "data": i, "remove_on_complete": 2}
                                 for i in range(5)])
    rec = Recorder()
    await rec.run_until(queue_name, redis_url, 5)
    assert rec.started == [j.id for j in jobs]
    assert await queue.get_job_counts("completed") == {"completed": 2}
    kept = {j.id for j in await queue.get_jobs("completed")}
    assert kept == {jobs[3].id, jobs[4].id}
    for job in jobs[:3]:
        assert await queue.get_job(job.id) is None


async def test_remove_on_fail_count_keeps_newest(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    jobs = await queue.add_bulk([{"name": "x", "data": {"fail": i}, "remove_on_fail": 1}
                                 for i in range(1, 4)])
    await Recorder().run_until(queue_name, redis_url, 3)
    assert [j.id for j in await queue.get_jobs("failed")] == [jobs[2].id]
    assert await queue.get_job(jobs[0].id) is None


async def test_remove_on_complete_age_and_count(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    jobs = await queue.add_bulk([{"name": "x", "remove_on_complete": {"age": 3600, "count": 1}}
                                 for _ in range(3)])
    assert jobs[0].opts.remove_on_complete == Retention(1, 3_600_000)
    await Recorder().run_until(queue_name, redis_url, 3)
    assert [j.id for j in await queue.get_jobs("completed")] == [jobs[2].id]


async def test_remove_on_complete_age_removes_older_jobs(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    old = await queue.add("old")
    await Recorder().run_until(queue_name, redis_url, 1)
    await old.refresh()
    assert old.finished_on is not None
    finished_on = old.finished_on

    async def old_enough() -> bool:
        return await redis_ms(redis) > finished_on + 250

    await wait_for(old_enough, message="first job is older than the age limit")
    new = await queue.add("new", remove_on_complete={"age": 0.25})
    assert new.opts.remove_on_complete == Retention(None, 250)
    stored = await queue.get_job(new.id)
    assert stored is not None and stored.opts.remove_on_complete == Retention(None, 250)
    await Recorder().run_until(queue_name, redis_url, 1)
    # The old job aged out; the one just finished is younger than 0.25 s and stays.
    assert [j.id for j in await queue.get_jobs("completed")] == [new.id]
    assert await queue.get_job(old.id) is None


async def test_remove_on_complete_zero_is_like_true(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    job = await queue.add("x", remove_on_complete=0)
    await Recorder().run_until(queue_name, redis_url, 1)
    assert await queue.get_job(job.id) is None
