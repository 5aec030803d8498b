"""set_paused.lua: pausing stops taking (adds still land); resuming re-adds markers."""

from __future__ import annotations

from script_support import QueueState, add, s, take

from conveyor import Queue


async def test_pause_sets_meta_and_emits(queue: Queue, state: QueueState) -> None:
    assert await queue.scripts.set_paused(True) == 1
    assert await state.meta() == {"paused": "1"}
    assert await state.events() == [{"event": "paused", "job_id": ""}]
    assert await state.marker() == {}


async def test_resume_empty_queue_sets_no_marker(queue: Queue, state: QueueState) -> None:
    await queue.scripts.set_paused(True)
    assert await queue.scripts.set_paused(False) == 1
    assert await state.meta() == {}
    assert await state.marker() == {}
    assert await state.event_names() == [("paused", ""), ("resumed", "")]


async def test_pause_add_take_resume_cycle(queue: Queue, state: QueueState) -> None:
    await queue.scripts.set_paused(True)
    await add(queue, "j")
    assert await state.wait() == ["j"]
    assert await state.marker() == {}

    assert s(await queue.scripts.move_to_active(1, "w:", 1000)) == [0, [], 0]
    assert await state.wait() == ["j"]
    assert await state.marker() == {}

    await queue.scripts.set_paused(False)
    assert await state.marker() == {"0": 0.0}
    assert [j for j, _ in await take(queue)] == ["j"]


async def test_resume_with_only_prioritized_jobs_sets_marker(
    queue: Queue, state: QueueState
) -> None:
    await queue.scripts.set_paused(True)
    await add(queue, "p", priority=3)
    await queue.scripts.set_paused(False)
    assert await state.marker() == {"0": 0.0}


async def test_resume_with_delayed_jobs_sets_d_marker_to_earliest(
    queue: Queue, state: QueueState
) -> None:
    await queue.scripts.set_paused(True)
    await add(queue, "late", delay=60_000)
    _, _, ts = await add(queue, "soon", delay=30_000)
    await state.clear_marker()

    await queue.scripts.set_paused(False)

    assert await state.marker() == {"d": ts + 30_000}


async def test_resume_keeps_an_earlier_d_marker(queue: Queue, state: QueueState) -> None:
    await queue.scripts.set_paused(True)
    await add(queue, "d", delay=60_000)
    await state.redis.zadd(queue.keys.marker, {"d": 5})
    await queue.scripts.set_paused(False)
    assert await state.marker() == {"d": 5.0}


async def test_pause_twice_and_resume_twice(queue: Queue, state: QueueState) -> None:
    await queue.scripts.set_paused(True)
    await queue.scripts.set_paused(True)
    assert await state.meta() == {"paused": "1"}
    await queue.scripts.set_paused(False)
    await queue.scripts.set_paused(False)
    assert await state.meta() == {}
