"""Reading a queue: get_job, get_job_state, get_job_counts, get_jobs."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from conveyor import Job, Queue, Worker
from conveyor.job import JobState
from helpers import running, wait_for

ALL_STATES = {"waiting", "active", "delayed", "prioritized", "completed", "failed",
              "waiting-children"}


async def finish_jobs(redis_url: str, queue_name: str, n: int) -> None:
    """Run a worker until ``n`` jobs finished: data {"fail": true} fails, else returns data."""
    done = 0

    async def process(job: Job) -> object:
        if isinstance(job.data, dict) and job.data.get("fail"):
            raise RuntimeError(f"failing {job.id}")
        return job.data

    def count(*_: object) -> None:
        nonlocal done
        done += 1

    worker = Worker(queue_name, process, connection=redis_url)
    worker.on("completed", count)
    worker.on("failed", count)
    async with running(worker):
        await wait_for(lambda: done >= n, message=f"{n} jobs finished")


# -- get_job -------------------------------------------------------------------------


async def test_get_job_missing_is_none(queue: Queue) -> None:
    assert await queue.get_job("nope") is None
    assert await queue.get_job_state("nope") is None


async def test_get_job_reads_a_finished_job(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    ok = await queue.add("ok", {"v": 1})
    bad = await queue.add("bad", {"fail": True})
    await finish_jobs(redis_url, queue_name, 2)

    done = await queue.get_job(ok.id)
    assert done is not None
    assert done.return_value == {"v": 1}
    assert done.attempts_made == 1
    assert done.failed_reason is None
    assert done.processed_on is not None and done.finished_on is not None
    assert done.timestamp <= done.processed_on <= done.finished_on
    assert await done.get_state() == "completed"

    failed = await queue.get_job(bad.id)
    assert failed is not None
    assert failed.failed_reason == f"RuntimeError: failing {bad.id}"
    assert failed.attempts_made == 1
    assert len(failed.stacktrace) == 1 and "RuntimeError" in failed.stacktrace[0]
    assert failed.return_value is None
    assert failed.finished_on is not None


async def test_get_job_accepts_int_id(queue: Queue) -> None:
    job = await queue.add("x", 1)
    found = await queue.get_job(int(job.id))  # type: ignore[arg-type]
    assert found is not None and found.id == job.id
    assert await queue.get_job_state(int(job.id)) == "waiting"  # type: ignore[arg-type]


# -- get_job_state -------------------------------------------------------------------------


async def test_get_job_state_of_every_state(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    ok = await queue.add("ok", "x")
    bad = await queue.add("bad", {"fail": True})
    await finish_jobs(redis_url, queue_name, 2)

    waiting = await queue.add("waiting")
    prioritized = await queue.add("prioritized", priority=2)
    delayed = await queue.add("delayed", delay=60_000)

    assert await queue.get_job_state(ok.id) == "completed"
    assert await queue.get_job_state(bad.id) == "failed"
    assert await queue.get_job_state(waiting.id) == "waiting"
    assert await queue.get_job_state(prioritized.id) == "prioritized"
    assert await queue.get_job_state(delayed.id) == "delayed"
    assert await delayed.get_state() == "delayed"

    release = asyncio.Event()
    started: list[str] = []

    async def hold(job: Job) -> None:
        started.append(job.id)
        await release.wait()

    async with running(Worker(queue_name, hold, connection=redis_url)):
        await wait_for(lambda: started == [waiting.id])
        assert await queue.get_job_state(waiting.id) == "active"
        assert await queue.get_job_counts("active") == {"active": 1}
        release.set()
        await wait_for(lambda: len(started) == 2)  # then the prioritized one
        assert started[1] == prioritized.id
        await wait_for(
            lambda: _is(queue, prioritized.id, "completed"), message="prioritized completed"
        )
    assert await queue.get_job_state(waiting.id) == "completed"
    assert await queue.get_job_state(delayed.id) == "delayed"


async def test_a_job_state_is_the_enum_member_and_still_its_name(queue: Queue) -> None:
    job = await queue.add("x", delay=60_000)
    state = await queue.get_job_state(job.id)
    assert state is JobState.DELAYED
    assert state == "delayed" and f"{state}" == "delayed"
    assert orjson.dumps({"state": state}) == b'{"state":"delayed"}'  # JSON as before
    assert {s.value for s in JobState} == ALL_STATES | {"unknown"}
    counts = await queue.get_job_counts()
    assert all(type(name) is str for name in counts)  # plain names: they key JSON objects
    assert orjson.dumps(counts)


async def _is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


# -- get_job_counts -------------------------------------------------------------------------


async def test_counts_of_an_empty_queue(queue: Queue) -> None:
    counts = await queue.get_job_counts()
    assert set(counts) == ALL_STATES
    assert all(v == 0 for v in counts.values())


async def test_counts_of_every_state(queue: Queue, redis_url: str, queue_name: str) -> None:
    await queue.add_bulk([{"name": "ok"}, {"name": "ok"}, {"name": "bad", "data": {"fail": 1}}])
    await finish_jobs(redis_url, queue_name, 3)
    await queue.add_bulk(
        [{"name": "w"}] * 4 + [{"name": "p", "priority": 3}] * 2 + [{"name": "d", "delay": 60_000}]
    )
    assert await queue.get_job_counts() == {
        "waiting": 4,
        "active": 0,
        "delayed": 1,
        "prioritized": 2,
        "completed": 2,
        "failed": 1,
        "waiting-children": 0,
    }


async def test_counts_of_named_states(queue: Queue) -> None:
    await queue.add("w")
    await queue.add("d", delay=60_000)
    assert await queue.get_job_counts("waiting") == {"waiting": 1}
    counts = await queue.get_job_counts("delayed", "waiting", "failed")
    assert counts == {"delayed": 1, "waiting": 1, "failed": 0}
    assert list(counts) == ["delayed", "waiting", "failed"]


# -- get_jobs --------------------------------------------------------------------------------


def ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


async def test_get_jobs_waiting_order_and_ranges(queue: Queue) -> None:
    a, b, c, d = [await queue.add(n, n) for n in "abcd"]
    # asc: the order jobs will be taken; default: newest first.
    assert ids(await queue.get_jobs("waiting", asc=True)) == [a.id, b.id, c.id, d.id]
    assert ids(await queue.get_jobs("waiting")) == [d.id, c.id, b.id, a.id]
    assert ids(await queue.get_jobs("waiting", 0, 1, asc=True)) == [a.id, b.id]
    assert ids(await queue.get_jobs("waiting", 0, 1)) == [d.id, c.id]
    assert ids(await queue.get_jobs("waiting", 1, 2)) == [c.id, b.id]
    assert ids(await queue.get_jobs("waiting", 1, 2, asc=True)) == [b.id, c.id]
    assert ids(await queue.get_jobs("waiting", 2, asc=True)) == [c.id, d.id]
    assert ids(await queue.get_jobs("waiting", 2)) == [b.id, a.id]
    assert await queue.get_jobs("waiting", 10, 20) == []
    jobs = await queue.get_jobs("waiting", asc=True)
    assert [j.data for j in jobs] == ["a", "b", "c", "d"]
    assert all(isinstance(j, Job) and j.queue is queue for j in jobs)


async def test_get_jobs_prioritized_and_delayed(queue: Queue) -> None:
    p3 = await queue.add("p3", priority=3)
    p1 = await queue.add("p1", priority=1)
    p1b = await queue.add("p1b", priority=1)
    late = await queue.add("late", delay=120_000)
    soon = await queue.add("soon", delay=60_000)
    assert ids(await queue.get_jobs("prioritized", asc=True)) == [p1.id, p1b.id, p3.id]
    assert ids(await queue.get_jobs("prioritized")) == [p3.id, p1b.id, p1.id]
    assert ids(await queue.get_jobs("prioritized", 0, 0, asc=True)) == [p1.id]
    # delayed: by due time.
    assert ids(await queue.get_jobs("delayed", asc=True)) == [soon.id, late.id]
    assert ids(await queue.get_jobs("delayed")) == [late.id, soon.id]


async def test_get_jobs_of_several_states(queue: Queue) -> None:
    w = await queue.add("w")
    p = await queue.add("p", priority=1)
    d = await queue.add("d", delay=60_000)
    jobs = await queue.get_jobs(["waiting", "prioritized", "delayed"])
    assert ids(jobs) == [w.id, p.id, d.id]
    assert ids(await queue.get_jobs(("delayed", "waiting"))) == [d.id, w.id]
    assert await queue.get_jobs([]) == []
    assert await queue.get_jobs("failed") == []


async def test_get_jobs_with_a_state_named_twice_returns_each_job_once(queue: Queue) -> None:
    w = await queue.add("w")
    d = await queue.add("d", delay=60_000)
    assert ids(await queue.get_jobs(["waiting", "waiting"])) == [w.id]
    assert ids(await queue.get_jobs(["waiting", "delayed", "waiting"])) == [w.id, d.id]


async def test_get_jobs_finished(queue: Queue, redis_url: str, queue_name: str) -> None:
    ok = [await queue.add("ok", i) for i in range(3)]
    bad = await queue.add("bad", {"fail": True})
    await finish_jobs(redis_url, queue_name, 4)
    completed = await queue.get_jobs("completed", asc=True)
    assert sorted(ids(completed)) == sorted(ids(ok))
    assert {j.return_value for j in completed} == {0, 1, 2}
    finish_times = [j.finished_on or 0 for j in completed]
    assert finish_times == sorted(finish_times)
    newest_first = await queue.get_jobs("completed")
    assert [j.finished_on or 0 for j in newest_first] == sorted(finish_times, reverse=True)
    assert len(await queue.get_jobs("completed", 0, 1)) == 2
    [failed] = await queue.get_jobs("failed")
    assert failed.id == bad.id and failed.failed_reason is not None


async def test_get_jobs_skips_jobs_removed_meanwhile(
    queue: Queue, redis: aioredis.Redis
) -> None:
    a = await queue.add("a")
    b = await queue.add("b")
    # A job hash deleted behind the queue's back (e.g. between the two reads).
    await redis.delete(queue.keys.job(a.id))
    assert ids(await queue.get_jobs("waiting", asc=True)) == [b.id]
