"""Queue.add / add_bulk: what comes back, ids, idempotent job ids, defaults,
bulk atomicity, and the order in which a worker takes the jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

import conveyor
from conveyor import Job, JobOptions, Queue, ValidationError, Worker
from conveyor.keys import delayed_due
from helpers import running, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def processing_order(redis_url: str, queue_name: str, expected: int) -> list[str]:
    """Run one worker (concurrency 1) until ``expected`` jobs ran; their ids in run order."""
    seen: list[str] = []

    async def process(job: Job) -> None:
        seen.append(job.id)

    async with running(Worker(queue_name, process, connection=redis_url, concurrency=1)):
        await wait_for(lambda: len(seen) >= expected, message=f"{expected} jobs processed")
    assert len(seen) == expected
    return seen


# -- what add returns ------------------------------------------------------------


async def test_add_returns_the_job(queue: Queue, redis: aioredis.Redis) -> None:
    secs, micros = await redis.time()
    before = secs * 1000 + micros // 1000
    job = await queue.add("send-welcome", {"to": "ada@example.com", "n": [1, 2]}, attempts=3)

    assert isinstance(job, Job)
    assert isinstance(job.id, str) and job.id
    assert job.name == "send-welcome"
    assert job.data == {"to": "ada@example.com", "n": [1, 2]}
    assert isinstance(job.opts, JobOptions)
    assert job.opts.attempts == 3
    assert job.queue is queue
    # Redis clock, in ms.
    assert before <= job.timestamp <= before + 5_000

    stored = await queue.get_job(job.id)
    assert stored is not None
    assert (stored.id, stored.name, stored.data) == (job.id, job.name, job.data)
    assert stored.timestamp == job.timestamp
    assert stored.opts == job.opts
    assert await queue.get_job_counts("waiting") == {"waiting": 1}


async def test_add_without_data_stores_null(queue: Queue) -> None:
    job = await queue.add("tick")
    assert job.data is None
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.data is None


async def test_data_round_trips_through_json(queue: Queue) -> None:
    data = {"text": "héllo ✓", "float": 1.5, "nested": {"list": [None, True, 3]}}
    job = await queue.add("x", data)
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.data == data


async def test_generated_ids_are_unique_and_increasing(queue: Queue) -> None:
    jobs = [await queue.add("x", i) for i in range(20)]
    ids = [int(job.id) for job in jobs]
    assert len(set(ids)) == 20
    assert ids == sorted(ids)
    bulk = await queue.add_bulk([{"name": "y"} for _ in range(5)])
    bulk_ids = [int(job.id) for job in bulk]
    assert bulk_ids == sorted(bulk_ids)
    assert bulk_ids[0] > ids[-1]


async def test_generated_ids_skip_ids_taken_by_custom_ids(queue: Queue) -> None:
    custom = await queue.add("custom", "mine", job_id="2")
    first = await queue.add("gen", "a")
    second = await queue.add("gen", "b")
    assert custom.id == "2"
    assert first.id == "1"
    assert second.id == "3"
    stored = await queue.get_job("2")
    assert stored is not None and stored.data == "mine"


async def test_int_job_id_is_accepted_as_string(queue: Queue) -> None:
    job = await queue.add("x", job_id=42)  # type: ignore[arg-type]
    assert job.id == "42"
    assert await queue.get_job("42") is not None


# -- job ids given twice -------------------------------------------------------------


async def test_an_empty_job_id_means_generate_one(queue: Queue) -> None:
    first = await queue.add("a", 1, job_id="")
    second = await queue.add("b", 2, job_id="")
    [bulk] = await queue.add_bulk([{"name": "c", "data": 3, "job_id": ""}])
    assert len({first.id, second.id, bulk.id}) == 3
    assert all(job.id for job in (first, second, bulk))
    assert first.opts.job_id is None
    assert await queue.get_job_counts("waiting") == {"waiting": 3}


async def test_same_job_id_twice_returns_the_first_job(
    queue: Queue, redis: aioredis.Redis
) -> None:
    first = await queue.add("charge", {"amount": 10}, job_id="order-1")
    counts = await queue.get_job_counts()
    events = await redis.xlen(queue.keys.events)

    again = await queue.add("charge-again", {"amount": 99}, job_id="order-1", priority=5)

    assert again.id == "order-1"
    assert again.name == "charge"
    assert again.data == {"amount": 10}
    assert again.timestamp == first.timestamp
    assert again.opts.priority == 0
    assert await queue.get_job_counts() == counts
    assert await redis.xlen(queue.keys.events) == events + 1  # "duplicated", no "added"
    assert [j.id for j in await queue.get_jobs("waiting")] == ["order-1"]


async def test_same_job_id_in_bulk_returns_existing_job(queue: Queue) -> None:
    await queue.add("a", 1, job_id="dup")
    jobs = await queue.add_bulk(
        [{"name": "b", "data": 2, "job_id": "dup"}, {"name": "c", "data": 3}]
    )
    assert jobs[0].id == "dup"
    assert jobs[0].data == 1 and jobs[0].name == "a"
    assert jobs[1].data == 3
    assert (await queue.get_job_counts("waiting"))["waiting"] == 2


async def test_job_id_can_be_reused_after_the_job_is_removed(queue: Queue) -> None:
    await queue.add("a", 1, job_id="k")
    assert await queue.remove("k") is True
    job = await queue.add("b", 2, job_id="k")
    assert job.data == 2
    stored = await queue.get_job("k")
    assert stored is not None and stored.name == "b"


# -- add_bulk --------------------------------------------------------------------------


async def test_add_bulk_adds_all(queue: Queue) -> None:
    specs: list[dict[str, Any]] = [
        {"name": "plain", "data": {"i": 0}},
        {"name": "prio", "data": {"i": 1}, "priority": 3},
        {"name": "later", "data": {"i": 2}, "delay": 60_000},
        {"name": "custom", "data": {"i": 3}, "job_id": "c-1", "attempts": 2},
    ]
    jobs = await queue.add_bulk(specs)
    assert [j.name for j in jobs] == ["plain", "prio", "later", "custom"]
    assert [j.data for j in jobs] == [s["data"] for s in specs]
    assert jobs[3].id == "c-1" and jobs[3].opts.attempts == 2
    assert all(j.timestamp > 0 for j in jobs)
    counts = await queue.get_job_counts()
    assert counts["waiting"] == 2
    assert counts["prioritized"] == 1
    assert counts["delayed"] == 1
    assert await queue.get_job_state(jobs[1].id) == "prioritized"
    assert await queue.get_job_state(jobs[2].id) == "delayed"


async def test_add_bulk_of_nothing(queue: Queue, redis: aioredis.Redis) -> None:
    assert await queue.add_bulk([]) == []
    assert await redis.keys("*") == []


async def test_add_bulk_larger_than_one_script_call(queue: Queue, redis: aioredis.Redis) -> None:
    # 2,500 jobs go to Redis as three script calls in one MULTI.
    specs: list[dict[str, Any]] = [{"name": "n", "data": i} for i in range(2_500)]
    specs[1_200]["job_id"] = "custom"
    specs[2_400]["job_id"] = "custom"  # the same id again, in another chunk
    jobs = await queue.add_bulk(specs)

    assert len(jobs) == 2_500
    assert jobs[1_200].id == jobs[2_400].id == "custom"
    assert jobs[2_400].data == 1_200  # the job that exists, not a new one
    waiting = [i.decode() for i in await redis.lrange(queue.keys.wait, 0, -1)]
    assert waiting == [j.id for j in jobs[:2_400]] + [j.id for j in jobs[2_401:]]
    assert (await queue.get_job_counts("waiting"))["waiting"] == 2_499


async def test_add_bulk_accepts_any_iterable(queue: Queue) -> None:
    jobs = await queue.add_bulk({"name": f"n{i}"} for i in range(3))
    assert [j.name for j in jobs] == ["n0", "n1", "n2"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"name": "x", "priority": -1}, "jobs[2].priority"),
        ({"name": "x", "data": {1, 2}}, "jobs[2].data"),
        ({"name": "x", "attempts": 0}, "jobs[2].attempts"),
        ({"name": "x", "backoff": {"type": "linear"}}, "jobs[2].backoff.type"),
        ({"name": "x", "colour": "red"}, "jobs[2].colour"),
        ({"data": 1}, "jobs[2]"),
        ("not a dict", "jobs[2]"),
        ({"name": 7}, "jobs[2].name"),
    ],
)
async def test_add_bulk_is_all_or_nothing(
    queue: Queue, redis: aioredis.Redis, bad: Any, field: str
) -> None:
    specs = [{"name": "ok", "data": 1}, {"name": "ok", "data": 2, "job_id": "fine"}, bad,
             {"name": "ok", "data": 4}]
    with pytest.raises(ValidationError) as info:
        await queue.add_bulk(specs)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert await redis.keys("*") == []
    assert await queue.get_job_counts() == dict.fromkeys(
        ("waiting", "prioritized", "delayed", "active", "completed", "failed",
         "waiting-children"), 0,
    )


async def test_add_bulk_after_earlier_jobs_writes_nothing_on_error(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await queue.add("before")
    keys = sorted(await redis.keys("*"))
    events = await redis.xlen(queue.keys.events)
    with pytest.raises(ValidationError):
        await queue.add_bulk([{"name": "a"}, {"name": "b", "delay": -1}])
    assert sorted(await redis.keys("*")) == keys
    assert await redis.xlen(queue.keys.events) == events
    assert (await queue.get_job_counts("waiting"))["waiting"] == 1


# -- default_job_options ---------------------------------------------------------------


async def test_default_job_options_apply(redis_url: str, queue_name: str) -> None:
    defaults = {"attempts": 4, "backoff": {"type": "exponential", "delay": 100},
                "remove_on_complete": 5, "timeout": timedelta(seconds=2)}
    async with Queue(queue_name, redis_url, default_job_options=defaults) as queue:
        job = await queue.add("x")
        assert job.opts.attempts == 4
        assert job.opts.backoff is not None and job.opts.backoff.type == "exponential"
        assert job.opts.backoff.delay == 100
        assert job.opts.remove_on_complete.count == 5
        assert job.opts.timeout == 2_000
        stored = await queue.get_job(job.id)
        assert stored is not None and stored.opts == job.opts
        [bulk] = await queue.add_bulk([{"name": "y"}])
        assert bulk.opts.attempts == 4


async def test_default_job_options_can_be_overridden(redis_url: str, queue_name: str) -> None:
    defaults = {"attempts": 4, "priority": 7, "delay": 60_000, "lifo": True}
    async with Queue(queue_name, redis_url, default_job_options=defaults) as queue:
        job = await queue.add("x", attempts=2, priority=3, delay=30_000)
        assert (job.opts.attempts, job.opts.priority, job.opts.delay) == (2, 3, 30_000)
        [bulk] = await queue.add_bulk([{"name": "y", "attempts": 9}])
        assert bulk.opts.attempts == 9 and bulk.opts.priority == 7


async def test_default_job_options_can_be_overridden_back_to_builtin_defaults(
    redis_url: str, queue_name: str
) -> None:
    """Passing the built-in default explicitly (priority=0, attempts=1, ...) still wins."""
    defaults = {"attempts": 4, "priority": 7, "delay": 60_000, "lifo": True, "timeout": 5_000}
    async with Queue(queue_name, redis_url, default_job_options=defaults) as queue:
        job = await queue.add("x", attempts=1, priority=0, delay=0, lifo=False, timeout=None)
        assert job.opts.timeout is None
        assert job.opts.attempts == 1
        assert job.opts.priority == 0
        assert job.opts.delay == 0
        assert job.opts.lifo is False
        assert await queue.get_job_state(job.id) == "waiting"
        [bulk] = await queue.add_bulk([{"name": "y", "priority": 0, "delay": 0}])
        assert await queue.get_job_state(bulk.id) == "waiting"


async def test_bad_default_job_options_are_refused_at_construction(
    redis_url: str, queue_name: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Queue(queue_name, redis_url, default_job_options={"attempts": 0})
    assert info.value.field == "attempts"


# -- ordering ------------------------------------------------------------------------------


async def test_plain_jobs_run_fifo(queue: Queue, redis_url: str, queue_name: str) -> None:
    ids = [(await queue.add("x", i)).id for i in range(5)]
    assert [j.id for j in await queue.get_jobs("waiting", asc=True)] == ids
    assert await processing_order(redis_url, queue_name, 5) == ids


async def test_lifo_job_goes_first(queue: Queue, redis_url: str, queue_name: str) -> None:
    a = await queue.add("a")
    b = await queue.add("b")
    c = await queue.add("c", lifo=True)
    d = await queue.add("d")
    expected = [c.id, a.id, b.id, d.id]
    assert [j.id for j in await queue.get_jobs("waiting", asc=True)] == expected
    assert await processing_order(redis_url, queue_name, 4) == expected


async def test_lower_priority_number_runs_first(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    p5 = await queue.add("p5", priority=5)
    p1 = await queue.add("p1", priority=1)
    p3 = await queue.add("p3", priority=3)
    expected = [p1.id, p3.id, p5.id]
    assert [j.id for j in await queue.get_jobs("prioritized", asc=True)] == expected
    assert await processing_order(redis_url, queue_name, 3) == expected


async def test_fifo_within_a_priority(queue: Queue, redis_url: str, queue_name: str) -> None:
    jobs = [await queue.add(f"j{i}", priority=2 if i % 2 else 4) for i in range(6)]
    prio2 = [j.id for j in jobs if j.opts.priority == 2]
    prio4 = [j.id for j in jobs if j.opts.priority == 4]
    expected = prio2 + prio4
    assert [j.id for j in await queue.get_jobs("prioritized", asc=True)] == expected
    assert await processing_order(redis_url, queue_name, 6) == expected


async def test_max_priority_runs_last(queue: Queue, redis_url: str, queue_name: str) -> None:
    top = await queue.add("max", priority=conveyor.options.MAX_PRIORITY)
    low = await queue.add("low", priority=1)
    assert await processing_order(redis_url, queue_name, 2) == [low.id, top.id]


async def test_jobs_without_priority_run_before_prioritized(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    p1 = await queue.add("p1", priority=1)
    plain = await queue.add("plain")
    p2 = await queue.add("p2", priority=2)
    plain2 = await queue.add("plain2")
    assert await processing_order(redis_url, queue_name, 4) == [plain.id, plain2.id, p1.id, p2.id]


async def test_jobs_added_to_a_running_worker_run(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    seen: list[str] = []

    async def process(job: Job) -> None:
        seen.append(job.id)

    async with running(Worker(queue_name, process, connection=redis_url)):
        ids = [(await queue.add("x", i)).id for i in range(3)]
        await wait_for(lambda: len(seen) == 3)
    assert seen == ids


# -- delay ---------------------------------------------------------------------------------


async def test_delayed_job_runs_after_its_delay(
    queue: Queue, redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    seen: list[Job] = []

    async def process(job: Job) -> str:
        seen.append(job)
        return "done"

    async with running(Worker(queue_name, process, connection=redis_url)):
        job = await queue.add("later", {"k": 1}, delay=200)
        assert job.opts.delay == 200 and job.delay == 200
        # The worker is running but the job is not due: still delayed right after add
        # (unless this machine is so slow that the delay is already over).
        state = await queue.get_job_state(job.id)
        secs, micros = await redis.time()
        assert state == "delayed" or secs * 1000 + micros // 1000 >= job.timestamp + 200
        await wait_for(lambda: seen, message="delayed job ran")
        assert await job.wait_until_finished(timeout=5) == "done"

    assert seen[0].processed_on is not None
    assert seen[0].processed_on >= job.timestamp + 200
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.processed_on is not None
    assert stored.processed_on >= stored.timestamp + 200


async def test_delayed_job_is_delayed_until_due(queue: Queue, redis: aioredis.Redis) -> None:
    job = await queue.add("later", delay=timedelta(minutes=5))
    assert job.opts.delay == 300_000
    assert await queue.get_job_state(job.id) == "delayed"
    assert await queue.get_job_counts("delayed", "waiting") == {"delayed": 1, "waiting": 0}
    score = await redis.zscore(queue.keys.delayed, job.id)
    assert score is not None and delayed_due(score) == job.timestamp + 300_000


async def test_delayed_job_does_not_start_early_with_an_idle_worker(
    queue: Queue, redis_url: str, queue_name: str
) -> None:
    seen: list[str] = []
    drained = 0

    async def process(job: Job) -> None:
        seen.append(job.id)

    def on_drained() -> None:
        nonlocal drained
        drained += 1

    worker = Worker(queue_name, process, connection=redis_url, block_timeout=100)
    worker.on("drained", on_drained)
    async with running(worker):
        await wait_for(lambda: drained == 1, message="worker idle")
        job = await queue.add("later", delay=60_000)
        now = await queue.add("now")
        await wait_for(lambda: seen == [now.id])
        # Idle again after running `now`: it looked and the delayed job was not due.
        await wait_for(lambda: drained == 2, message="worker looked for more work")
        assert seen == [now.id]
        assert await queue.get_job_state(job.id) == "delayed"


async def test_returned_job_options_match_stored_json(
    queue: Queue, redis: aioredis.Redis
) -> None:
    job = await queue.add("x", priority=9, attempts=2, backoff=500, timeout=1_000, job_id="j")
    raw = await redis.hget(queue.keys.job("j"), "opts")
    assert raw is not None
    assert orjson.loads(raw) == job.opts.to_json()
    assert job.opts.backoff is not None
    assert (job.opts.backoff.type, job.opts.backoff.delay) == ("fixed", 500)
