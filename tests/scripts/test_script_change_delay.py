"""change_delay.lua: a delayed job's due time becomes now + delay."""

from __future__ import annotations

from script_support import QueueState, add

from conveyor import Queue


async def change(queue: Queue, job_id: str, delay: int) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "change_delay", [k.delayed, k.marker, k.events], [k.base, job_id, delay, 100]
    ))


async def test_sooner_due_time_lowers_the_wake_up_marker(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j", delay=60_000)
    await state.clear_events()
    before = await state.now()

    due = await change(queue, "j", 1_000)

    assert before + 1_000 <= due <= await state.now() + 1_000
    assert await state.delayed() == [("j", float(due))]
    assert await state.marker() == {"d": float(due)}
    assert await state.events() == [{"event": "delayed", "job_id": "j", "delay": str(due)}]


async def test_later_due_time_keeps_an_earlier_marker(queue: Queue, state: QueueState) -> None:
    _, _, ts = await add(queue, "j", delay=1_000)
    due = await change(queue, "j", 120_000)
    assert await state.delayed() == [("j", float(due))]
    # The marker stays at the old, earlier time: a worker wakes, finds nothing
    # due and learns the next due time from its fetch.
    assert await state.marker() == {"d": float(ts + 1_000)}


async def test_missing_job_returns_0(queue: Queue, state: QueueState) -> None:
    assert await change(queue, "nope", 5) == 0
    assert await state.snapshot() == {}


async def test_job_not_delayed_returns_minus_1(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    before = await state.snapshot()
    assert await change(queue, "j", 5) == -1
    assert await state.snapshot() == before
