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
