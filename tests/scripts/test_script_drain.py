"""drain.lua: one batch of Queue.drain: ready (and, if asked, delayed) jobs go."""

from __future__ import annotations

from script_support import QueueState, add, finish, outcome, take

from conveyor import Queue


async def drain(queue: Queue, delayed: bool, n: int = 1000) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "drain", [k.wait, k.prioritized, k.delayed, k.events], [k.base, int(delayed), n, 100]
    ))


async def _queue_with_every_state(queue: Queue) -> None:
    await add(queue, "done")
    await add(queue, "running")
    [(_, fields)] = await take(queue)
    await finish(queue, outcome("done", fields["tok"], "c", "1"))
    await take(queue)  # running is active
    await add(queue, "w1")
    await add(queue, "w2")
    await add(queue, "p", priority=3)
    await add(queue, "d", delay=60_000)


async def test_removes_waiting_and_prioritized_jobs_only(queue: Queue, state: QueueState) -> None:
    await _queue_with_every_state(queue)
    await queue.scripts.add_log("w1", "line", 10)
    await state.clear_events()

    assert await drain(queue, False) == 3

    assert await state.wait() == []
    assert await state.prioritized() == []
    assert await state.zids(queue.keys.delayed) == ["d"]
    assert await state.zids(queue.keys.active) == ["running"]
    assert await state.zids(queue.keys.completed) == ["done"]
    for gone in ("w1", "w2", "p"):
        assert not await state.exists(gone)
    assert await state.logs("w1") == []
    assert await state.events() == [
        {"event": "removed", "job_id": "w1", "prev": "waiting"},
        {"event": "removed", "job_id": "w2", "prev": "waiting"},
        {"event": "removed", "job_id": "p", "prev": "prioritized"},
    ]


async def test_delayed_too_when_asked(queue: Queue, state: QueueState) -> None:
    await _queue_with_every_state(queue)
    assert await drain(queue, True) == 4
    assert await state.delayed() == []
    assert not await state.exists("d")
    assert await state.exists("running") and await state.exists("done")


async def test_a_batch_removes_at_most_n_waiting_first(queue: Queue, state: QueueState) -> None:
    for job_id in ("a", "b", "c"):
        await add(queue, job_id)
    await add(queue, "p", priority=1)
    assert await drain(queue, False, n=2) == 2
    assert await state.wait() == ["c"]
    assert await drain(queue, False, n=2) == 2
    assert await drain(queue, False, n=2) == 0
    assert await state.wait() == []
    assert await state.prioritized() == []


async def test_a_drained_child_leaves_its_parents_dependencies(
    queue: Queue, state: QueueState
) -> None:
    k = queue.keys
    await add(queue, "child")
    await state.redis.hset(k.job("child"), "par", k.job("parent"))
    await state.redis.hset(k.job("parent"), mapping={"name": "p", "opts": "{}", "ts": 1})
    await state.redis.sadd(k.dependencies("parent"), k.job("child"))
    await state.redis.zadd(k.key("waiting-children"), {"parent": 1})

    assert await drain(queue, False) == 1

    assert not await state.exists("child")
    assert await state.redis.exists(k.dependencies("parent")) == 0
    assert await state.zids(k.key("waiting-children")) == []
    assert await state.wait() == ["parent"]  # released: this batch took the ready jobs before
