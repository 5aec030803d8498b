"""get_state.lua: the state of a job, for every state."""

from __future__ import annotations

from script_support import QueueState, add, finish, outcome, take

from conveyor import Queue


async def test_missing_job_is_empty(queue: Queue, state: QueueState) -> None:
    assert await queue.scripts.get_state("nope") == b""
    assert await state.snapshot() == {}


async def test_every_state(queue: Queue, state: QueueState) -> None:
    for job_id in ("active", "completed", "failed"):
        await add(queue, job_id)
    jobs = dict(await take(queue, 3))
    await finish(
        queue,
        outcome("completed", jobs["completed"]["tok"], "c", "1"),
        outcome("failed", jobs["failed"]["tok"], "f", "boom", "t", -1),
    )
    await add(queue, "waiting")
    await add(queue, "prioritized", priority=1)
    await add(queue, "delayed", delay=60_000)
    await add(queue, "unknown")
    await state.redis.lrem(queue.keys.wait, 0, "unknown")  # a hash that no state holds

    assert await state.zids(queue.keys.active) == ["active"]
    for expected in (
        "waiting",
        "active",
        "completed",
        "failed",
        "prioritized",
        "delayed",
        "unknown",
    ):
        assert await queue.scripts.get_state(expected) == expected.encode(), expected


async def test_state_follows_the_job(queue: Queue, state: QueueState) -> None:
    _, _, ts = await add(queue, "j", delay=1, attempts=2)
    assert await queue.scripts.get_state("j") == b"delayed"
    await state.wait_until(ts + 1)
    await queue.scripts.move_to_active(0, "w:", 1000)  # promote only
    assert await queue.scripts.get_state("j") == b"waiting"
    [(_, fields)] = await take(queue)
    assert await queue.scripts.get_state("j") == b"active"
    await finish(queue, outcome("j", fields["tok"], "f", "boom", "t", 0))
    assert await queue.scripts.get_state("j") == b"waiting"
    [(_, fields)] = await take(queue)
    await finish(queue, outcome("j", fields["tok"], "f", "boom", "t", 0))
    assert await queue.scripts.get_state("j") == b"failed"
    assert await queue.scripts.retry_job("j", True) == 1
    assert await queue.scripts.get_state("j") == b"waiting"
    assert await queue.scripts.remove_job("j") == 1
    assert await queue.scripts.get_state("j") == b""
