"""promote_job.lua: one delayed job becomes ready now."""

from __future__ import annotations

from script_support import QueueState, add, prio, take

from conveyor import Queue


async def promote(queue: Queue, job_id: str) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "promote_job",
        [k.delayed, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker, k.events],
        [k.base, job_id, 100],
    ))


async def test_delayed_job_goes_to_the_wait_list(queue: Queue, state: QueueState) -> None:
    await add(queue, "other")
    await add(queue, "j", delay=60_000)
    await state.clear_marker()
    await state.clear_events()

    assert await promote(queue, "j") == 1

    assert await state.delayed() == []
    assert await state.wait() == ["other", "j"]
    assert await state.marker() == {"0": 0.0}
    assert await state.event_names() == [("waiting", "j")]


async def test_prioritized_delayed_job_goes_to_prioritized(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j", delay=60_000, priority=7)
    assert await promote(queue, "j") == 1
    assert await state.prioritized() == [("j", prio(7, 1))]


async def test_missing_job_returns_0(queue: Queue, state: QueueState) -> None:
    assert await promote(queue, "nope") == 0
    assert await state.snapshot() == {}


async def test_job_not_delayed_returns_minus_1_and_changes_nothing(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "w")
    await add(queue, "a")
    await take(queue)  # w is active
    before = await state.snapshot()
    assert await promote(queue, "w") == -1
    assert await promote(queue, "a") == -1
    assert await state.snapshot() == before


async def _scheduler_with_pending(queue: Queue, state: QueueState) -> str:
    """A scheduler "s" whose pending job (made last) is delayed; returns its id."""
    job_id = "sched-s-5000"
    await add(queue, job_id, delay=60_000)
    await state.redis.hset(queue.keys.job(job_id), "sch", "s")
    await state.redis.hset(queue.keys.scheduler("s"),
                           mapping={"pend": job_id, "cur": 5000, "nxt": 6000, "gen": 1})
    await state.redis.zadd(queue.keys.schedulers, {"s": 5000})
    return job_id


async def test_a_schedulers_pending_job_makes_its_scheduler_due_now(
    queue: Queue, state: QueueState
) -> None:
    job_id = await _scheduler_with_pending(queue, state)

    assert await promote(queue, job_id) == 1

    now = await state.now()
    [(_, score)] = await state.zset(queue.keys.schedulers)
    assert now - 1000 < score <= now
    assert int((await state.redis.hget(queue.keys.scheduler("s"), "cur")) or 0) == score
    assert await state.redis.zscore(queue.keys.schedulers_marker, "u") == 0
    assert await state.redis.hget(queue.keys.scheduler("s"), "nxt") == b"6000"


async def test_another_job_of_the_scheduler_leaves_it_alone(
    queue: Queue, state: QueueState
) -> None:
    await _scheduler_with_pending(queue, state)
    await add(queue, "sched-s-1000", delay=60_000)  # an older slot's job, not pending
    await state.redis.hset(queue.keys.job("sched-s-1000"), "sch", "s")

    assert await promote(queue, "sched-s-1000") == 1

    assert await state.zset(queue.keys.schedulers) == [("s", 5000.0)]
