"""change_priority.lua: a job's priority (and stored options) change; a ready job moves."""

from __future__ import annotations

import json

from script_support import QueueState, add, prio, take

from conveyor import Queue


async def change(queue: Queue, job_id: str, priority: int, lifo: bool = False) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "change_priority",
        [k.wait, k.prioritized, k.priority_counter, k.meta, k.marker],
        [k.base, job_id, priority, int(lifo)],
    ))


async def test_waiting_job_moves_to_prioritized(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    await add(queue, "b", opts=b'{"attempts":3}', attempts=3)
    await add(queue, "p", priority=5)
    assert await change(queue, "b", 5) == 1
    assert await state.wait() == ["a"]
    assert await state.prioritized() == [("p", prio(5, 1)),
                                         ("b", prio(5, 2))]
    job = await state.job("b")
    assert job["prio"] == "5"
    assert json.loads(job["opts"]) == {"attempts": 3, "priority": 5}


async def test_prioritized_job_back_to_plain_wait_tail_or_head(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "a")
    await add(queue, "p", priority=2, opts=b'{"priority":2}')
    await add(queue, "q", priority=2, opts=b'{"priority":2}')
    assert await change(queue, "p", 0) == 1
    assert await change(queue, "q", 0, lifo=True) == 1
    assert await state.wait() == ["q", "a", "p"]
    assert await state.prioritized() == []
    job = await state.job("p")
    assert "prio" not in job
    assert job["opts"] == "{}"


async def test_delayed_or_active_job_keeps_its_place(queue: Queue, state: QueueState) -> None:
    await add(queue, "r")
    await add(queue, "d", delay=60_000)
    await take(queue)  # r is active
    before_delayed = await state.delayed()
    assert await change(queue, "r", 9) == 1
    assert await change(queue, "d", 9) == 1
    assert await state.delayed() == before_delayed
    assert [i for i, _ in await state.active()] == ["r"]
    assert await state.prioritized() == []
    assert (await state.job("d"))["prio"] == "9"


async def test_wakes_a_worker_unless_paused(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await state.clear_marker()
    await change(queue, "j", 3)
    assert await state.marker() == {"0": 0.0}
    await queue.scripts.set_paused(True)
    await state.clear_marker()
    await change(queue, "j", 4)
    assert await state.marker() == {}


async def test_missing_job_returns_0(queue: Queue, state: QueueState) -> None:
    assert await change(queue, "nope", 1) == 0
    assert await state.snapshot() == {}
