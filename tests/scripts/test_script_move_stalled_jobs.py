"""move_stalled_jobs.lua: lapsed locks are requeued at the head of the wait list or
failed past max_stalled; the stalled-check guard limits runs to one per interval."""

from __future__ import annotations

import json

from script_support import QueueState, add, finish, outcome, prio_head, s, take, token_parts

from conveyor import FlowProducer, Queue
from helpers import wait_for


async def _check(queue: Queue, max_stalled: int = 1, keep: str = "-1:-1") -> list[list[str]]:
    return s(await queue.scripts.move_stalled_jobs(60_000, max_stalled, keep))


async def _unguard(queue: Queue, state: QueueState) -> None:
    await state.redis.delete(queue.keys.stalled_check)


async def test_nothing_stalled_while_locks_are_held(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await take(queue, lock_ms=60_000)
    await state.clear_events()
    before = await state.active()

    assert await _check(queue) == [[], []]
    assert await state.active() == before
    assert await state.events() == []


async def test_stalled_job_is_requeued_at_wait_head(queue: Queue, state: QueueState) -> None:
    await add(queue, "s")
    await add(queue, "other")
    [(_, fields)] = await take(queue, lock_ms=1)
    await state.lapse_locks()
    await state.clear_marker()
    await state.clear_events()

    assert await _check(queue) == [["s"], []]

    assert await state.active() == []
    assert await state.wait() == ["s", "other"]
    job = await state.job("s")
    assert await state.locks() == {}  # the lost worker's token is gone
    assert job["stc"] == "1"
    assert "atm" not in job  # no attempt made
    assert await state.marker() == {"0": 0.0}
    assert await state.events() == [{"event": "stalled", "job_id": "s", "stalled_count": "1"}]

    # the worker that lost the job can no longer finish it
    statuses, _, _ = await finish(queue, outcome("s", fields["tok"], "c", "1"))
    assert statuses == [0]
    assert await state.wait() == ["s", "other"]


async def test_guard_makes_second_call_within_interval_a_noop(
    queue: Queue, state: QueueState
) -> None:
    await add(queue)
    assert await _check(queue) == [[], []]
    ttl = await state.redis.pttl(queue.keys.stalled_check)
    assert 0 < ttl <= 60_000

    await take(queue, lock_ms=1)
    await state.lapse_locks()
    before = await state.snapshot()

    assert await _check(queue) == []
    assert await state.snapshot() == before


async def test_guard_expires_after_interval(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert s(await queue.scripts.move_stalled_jobs(1, 1, "-1:-1")) == [["1"], []]

    async def guard_gone() -> bool:
        return not await state.redis.exists(queue.keys.stalled_check)

    await wait_for(guard_gone, timeout=5, interval=0.002)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert s(await queue.scripts.move_stalled_jobs(1, 1, "-1:-1")) == [[], ["1"]]


async def test_fails_after_max_stalled(queue: Queue, state: QueueState) -> None:
    await add(queue, "s", attempts=5)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert await _check(queue, max_stalled=1) == [["s"], []]

    await _unguard(queue, state)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    await state.clear_events()
    before = await state.now()

    assert await _check(queue, max_stalled=1) == [[], ["s"]]

    job = await state.job("s")
    fon = int(job["fon"])
    assert fon >= before
    assert await state.failed() == [("s", fon)]
    assert await state.active() == []
    assert await state.wait() == []
    assert job["stc"] == "2"
    assert job["atm"] == "1"
    assert await state.locks() == {}
    reason = "job stalled more than max_stalled_count (1) times"
    assert job["fr"] == reason
    assert await state.events() == [
        {"event": "stalled", "job_id": "s", "stalled_count": "2"},
        {"event": "failed", "job_id": "s", "failed_reason": reason, "attempts_made": "1"},
    ]


async def test_each_stalled_attempt_is_added_to_the_jobs_history(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "s", attempts=5)
    starts = []
    for _ in range(2):
        await _unguard(queue, state)
        [(_, fields)] = await take(queue, lock_ms=1)
        starts.append(token_parts(fields["tok"])[3])
        await state.lapse_locks()
        detected = await state.now()
        await _check(queue, max_stalled=1)

    history = json.loads((await state.job("s"))["ath"])
    requeued, failed = history
    assert requeued[:2] == [1, starts[0]] and requeued[3:] == [
        "its worker stopped renewing the lock", "stalled"]
    assert failed[:2] == [1, starts[1]] and failed[2] >= detected
    assert failed[3] == "job stalled more than max_stalled_count (1) times"
    assert len(failed) == 4  # a failed attempt has no outcome field


async def test_max_stalled_zero_fails_on_first_stall(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert await _check(queue, max_stalled=0) == [[], ["1"]]
    assert await state.zids(queue.keys.failed) == ["1"]


async def test_failed_retention_applies(queue: Queue, state: QueueState) -> None:
    for job_id in ("a", "b", "c"):
        await add(queue, job_id)
    await take(queue, 3, lock_ms=1)
    await queue.scripts.add_log("a", "x", 0)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0, keep="2:-1") == [[], ["a", "b", "c"]]

    assert await state.zids(queue.keys.failed) == ["b", "c"]
    assert not await state.exists("a")
    assert await state.logs("a") == []


async def test_failed_retention_zero_deletes(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert await _check(queue, max_stalled=0, keep="0:-1") == [[], ["1"]]
    assert await state.failed() == []
    assert not await state.exists("1")


async def test_stalled_prioritized_job_goes_back_to_prioritized(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "p", priority=2)
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert await _check(queue) == [["p"], []]
    assert await state.prioritized() == [("p", prio_head(2, 2))]
    assert await state.wait() == []


async def test_requeue_on_paused_queue_leaves_no_marker(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await take(queue, lock_ms=1)
    await queue.scripts.set_paused(True)
    await state.lapse_locks()
    await state.clear_marker()
    assert await _check(queue) == [["1"], []]
    assert await state.wait() == ["1"]
    assert await state.marker() == {}


async def test_only_lapsed_locks_are_taken(queue: Queue, state: QueueState) -> None:
    await add(queue, "held")
    await add(queue, "lapsed")
    await take(queue, lock_ms=60_000)
    await take(queue, lock_ms=1)
    await state.redis.zadd(queue.keys.active, {"ghost": 1})  # no job hash
    await state.wait_until(int(dict(await state.active())["lapsed"]) + 1)

    assert await _check(queue) == [["lapsed"], []]
    assert await state.zids(queue.keys.active) == ["held"]
    assert await state.wait() == ["lapsed"]


async def test_a_job_failed_by_stalling_goes_to_its_dead_letter_queue(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "s", opts=b'{"dead_letter_queue":"graveyard"}', data=b'{"n":1}')
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    await queue.scripts.move_stalled_jobs(1000, 0, "-1:-1")
    other = queue.keys.base.replace("{" + queue.name + "}", "{graveyard}")
    assert await state.redis.lrange(other + "wait", 0, -1) == [b"1"]
    forwarded = await state.redis.hgetall(other + "job:1")
    assert forwarded[b"data"] == b'{"n":1}'
    assert b'"queue":"' + queue.name.encode() + b'"' in forwarded[b"dlq"]
    await state.redis.delete(*await state.redis.keys(other + "*"))


async def test_stalled_prioritized_job_goes_back_to_the_head_of_its_priority(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "a", priority=2)
    await add(queue, "b", priority=2)
    await take(queue, lock_ms=1)  # a
    await add(queue, "urgent", priority=1)
    await state.lapse_locks()
    assert await _check(queue) == [["a"], []]
    assert await state.zids(queue.keys.prioritized) == ["urgent", "a", "b"]


async def test_a_job_failed_by_stalling_with_remove_on_fail_true_is_deleted(
    queue: Queue, state: QueueState
) -> None:
    await queue.add("job", job_id="s", remove_on_fail=True)
    await queue.scripts.add_log("s", "x", 0)
    await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0, keep="-1:-1") == [[], ["s"]]

    assert await state.failed() == []
    assert not await state.exists("s")
    assert await state.logs("s") == []


async def test_a_job_failed_by_stalling_keeps_its_own_count_of_failed_jobs(
    queue: Queue, state: QueueState
) -> None:
    await state.redis.zadd(queue.keys.failed, {"old1": 1, "old2": 2})
    await queue.add("job", job_id="s", remove_on_fail=1)
    await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0, keep="-1:-1") == [[], ["s"]]

    assert await state.zids(queue.keys.failed) == ["s"]


async def test_a_job_failed_by_stalling_keeps_failed_jobs_by_its_own_age(
    queue: Queue, state: QueueState
) -> None:
    now = await state.now()
    await state.redis.zadd(queue.keys.failed, {"old": now - 60_000, "young": now - 1000})
    await queue.add("job", job_id="s", remove_on_fail={"age": 30})
    await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0, keep="-1:-1") == [[], ["s"]]

    assert await state.zids(queue.keys.failed) == ["young", "s"]


async def test_a_job_failed_by_stalling_without_its_own_retention_uses_the_default(
    queue: Queue, state: QueueState
) -> None:
    await state.redis.zadd(queue.keys.failed, {"old": 1})
    await add(queue, "own", opts=b'{"remove_on_fail":{"count":5,"age":null}}')
    await add(queue, "plain")
    await take(queue, 2, lock_ms=1)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0, keep="1:-1") == [[], ["own", "plain"]]

    # the default keeps the newest one; the job's own count (5) trims nothing more
    assert len(await state.zids(queue.keys.failed)) == 1


async def test_a_stalled_job_whose_key_is_no_longer_a_hash_fails_alone(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "bad")
    await add(queue, "good", priority=3)
    await take(queue, 2, lock_ms=1)
    await state.redis.delete(queue.keys.job("bad"))
    await state.redis.set(queue.keys.job("bad"), "not a hash")
    await state.redis.hset(queue.keys.job("good"), "prio", "urgent")
    await state.lapse_locks()

    assert await _check(queue) == [["good"], ["bad"]]

    assert await state.wait() == ["good"]  # a priority that is not a number counts as 0
    assert await state.zids(queue.keys.failed) == ["bad"]


async def test_a_job_failed_by_stalling_lets_go_of_its_deduplication_key(
    queue: Queue, state: QueueState
) -> None:
    job = await queue.add("job", deduplication={"id": "k"}, remove_on_fail=True)
    await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0) == [[], [job.id]]

    assert await queue.get_deduplication_job_id("k") is None
    assert (await queue.add("job", deduplication={"id": "k"})).id != job.id


async def test_a_flow_child_deleted_as_it_fails_by_stalling_no_longer_holds_its_parent(
    queue: Queue, state: QueueState
) -> None:
    async with FlowProducer(queue.client) as flow:
        await flow.add({
            "name": "parent", "queue_name": queue.name, "opts": {"job_id": "p"},
            "children": [{"name": "c", "queue_name": queue.name,
                          "opts": {"job_id": "c", "remove_on_fail": True}}],
        })
    await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await _check(queue, max_stalled=0) == [[], ["c"]]

    assert not await state.exists("c")
    assert await state.wait() == ["p"]  # released: its only child is gone
