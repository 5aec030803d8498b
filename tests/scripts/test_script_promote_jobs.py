"""promote_jobs.lua: a batch of delayed jobs (due first) becomes ready now."""

from __future__ import annotations

from script_support import QueueState, add, prio

from conveyor import Queue


async def promote(queue: Queue, count: int = 1000) -> tuple[int, int]:
    k = queue.keys
    n, left = await queue.scripts.call(
        "promote_jobs",
        [k.delayed, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker, k.events],
        [k.base, count, 100],
    )
    return int(n), int(left)


async def test_due_first_are_promoted_in_batches(queue: Queue, state: QueueState) -> None:
    await add(queue, "late", delay=90_000)
    await add(queue, "soon", delay=30_000)
    await add(queue, "mid", delay=60_000, priority=2)
    await state.clear_marker()
    await state.clear_events()

    assert await promote(queue, count=2) == (2, 1)
    assert await state.wait() == ["soon"]
    assert await state.prioritized() == [("mid", prio(2, 1))]
    assert await state.zids(queue.keys.delayed) == ["late"]
    assert await state.marker() == {"0": 0.0}
    assert await state.event_names() == [("waiting", "soon"), ("waiting", "mid")]

    assert await promote(queue, count=2) == (1, 0)
    assert await state.wait() == ["soon", "late"]
    assert await promote(queue) == (0, 0)


async def test_paused_queue_gets_no_marker(queue: Queue, state: QueueState) -> None:
    await add(queue, "j", delay=60_000)
    await queue.scripts.set_paused(True)
    await state.clear_marker()
    assert await promote(queue) == (1, 0)
    assert await state.wait() == ["j"]
    assert await state.marker() == {}
