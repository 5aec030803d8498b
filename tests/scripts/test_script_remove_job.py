"""remove_job.lua: deletes a job and its logs from any state, except a locked active job."""

from __future__ import annotations

import pytest
from script_support import QueueState, add, finish, outcome, take

from conveyor import Queue


async def _remove(queue: Queue, job_id: str) -> int:
    """The script's raw reply (Scripts.remove_job raises for a refusal)."""
    k = queue.keys
    return int(await queue.scripts.call(
        "remove_job",
        [k.wait, k.prioritized, k.delayed, k.active, k.completed, k.failed, k.events,
         k.state_key("waiting-children")],
        [k.base, job_id, queue.scripts.maxlen, 1],
    ))


async def test_missing_job_returns_0(queue: Queue, state: QueueState) -> None:
    await add(queue, "other")
    before = await state.snapshot()
    assert await queue.scripts.remove_job("nope") == 0
    assert await state.snapshot() == before


async def _place(queue: Queue, where: str) -> None:
    """Put job "j" in state ``where`` (with "other" waiting alongside)."""
    await add(
        queue,
        "j",
        delay=60_000 if where == "delayed" else 0,
        priority=1 if where == "prioritized" else 0,
    )
    if where in ("completed", "failed"):
        [(_, fields)] = await take(queue)
        kind = "c" if where == "completed" else "f"
        await finish(queue, outcome("j", fields["tok"], kind, "v", "t", -1))
    await add(queue, "other")


@pytest.mark.parametrize("where", ["waiting", "prioritized", "delayed", "completed", "failed"])
async def test_removes_job_and_logs_from_any_state(
    queue: Queue, state: QueueState, where: str
) -> None:
    await _place(queue, where)
    await queue.scripts.add_log("j", "a line", 0)
    await state.clear_events()

    assert await queue.scripts.remove_job("j") == 1

    assert not await state.exists("j")
    assert await state.logs("j") == []
    assert await state.wait() == ["other"]
    for key in (
        queue.keys.prioritized,
        queue.keys.delayed,
        queue.keys.active,
        queue.keys.completed,
        queue.keys.failed,
    ):
        assert await state.zset(key) == []
    assert await state.events() == [{"event": "removed", "job_id": "j"}]
    assert await state.exists("other")


async def test_removes_every_copy_from_the_wait_list(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await state.redis.rpush(queue.keys.wait, "x", "j")
    assert await queue.scripts.remove_job("j") == 1
    assert await state.wait() == ["x"]


async def test_refuses_locked_active_job(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await take(queue, lock_ms=60_000)
    await queue.scripts.add_log("j", "line", 0)
    before = await state.snapshot()

    assert await _remove(queue, "j") == -1

    assert await state.snapshot() == before


async def test_removes_active_job_whose_lock_lapsed(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await queue.scripts.remove_job("j") == 1

    assert await state.active() == []
    assert not await state.exists("j")


async def test_lets_go_of_the_deduplication_key_the_job_holds(
    queue: Queue, state: QueueState
) -> None:
    opts = b'{"deduplication":{"id":"k","ttl":60000}}'
    await queue.scripts.add_job("j", "job", b"1", opts, 0, 0, False, 1, "60000:0:0:k")
    await state.redis.set(queue.keys.deduplication("other"), "j")  # not the job's own key

    assert await queue.scripts.remove_job("j") == 1

    assert await state.redis.exists(queue.keys.deduplication("k")) == 0
    assert await state.redis.get(queue.keys.deduplication("other")) == b"j"


async def test_a_schedulers_pending_job_is_refused_until_it_ran(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "sched-s-5000", delay=60_000)
    await state.redis.hset(queue.keys.job("sched-s-5000"), "sch", "s")
    await state.redis.hset(queue.keys.scheduler("s"), mapping={"pend": "sched-s-5000"})
    before = await state.snapshot()

    assert await _remove(queue, "sched-s-5000") == -3
    assert await state.snapshot() == before

    await state.redis.zrem(queue.keys.delayed, "sched-s-5000")
    await state.redis.zadd(queue.keys.completed, {"sched-s-5000": 1})  # it ran
    assert await queue.scripts.remove_job("sched-s-5000") == 1
