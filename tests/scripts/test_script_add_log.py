"""add_log.lua: appends log lines, keeping the newest ``keep``."""

from __future__ import annotations

from script_support import QueueState, add

from conveyor import Queue


async def test_missing_job_returns_minus_1_and_creates_nothing(
    queue: Queue, state: QueueState
) -> None:
    k = queue.keys  # the raw reply: Scripts.add_log raises for a missing job
    assert await queue.scripts.call("add_log", [k.job("nope"), k.logs("nope")], ["line", 0]) == -1
    assert await state.snapshot() == {}


async def test_appends_and_returns_count(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    assert [await queue.scripts.add_log("j", f"l{i}", 0) for i in range(4)] == [1, 2, 3, 4]
    assert await state.logs("j") == ["l0", "l1", "l2", "l3"]


async def test_keeps_newest_lines(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    counts = [await queue.scripts.add_log("j", f"l{i}", 2) for i in range(4)]
    assert counts == [1, 2, 2, 2]
    assert await state.logs("j") == ["l2", "l3"]


async def test_keep_applies_to_lines_already_there(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    for i in range(5):
        await queue.scripts.add_log("j", f"l{i}", 0)
    assert await queue.scripts.add_log("j", "l5", 3) == 3
    assert await state.logs("j") == ["l3", "l4", "l5"]
