"""rate_limit.lua: every worker of the queue backs off until now + ms; a longer
back-off already running is kept."""

from __future__ import annotations

from script_support import QueueState, add, s

from conveyor import Queue


async def _rate_limit(queue: Queue, ms: int) -> int:
    return int(await queue.scripts.call("rate_limit", [queue.keys.meta], [ms]))


async def test_sets_limited_until_and_returns_it(queue: Queue, state: QueueState) -> None:
    before = await state.now()
    until = await _rate_limit(queue, 5_000)
    after = await state.now()

    assert before + 5_000 <= until <= after + 5_000
    assert await state.meta() == {"limited_until": str(until)}


async def test_a_longer_back_off_is_kept(queue: Queue, state: QueueState) -> None:
    until = await _rate_limit(queue, 60_000)

    assert await _rate_limit(queue, 1_000) == until
    assert await state.meta() == {"limited_until": str(until)}


async def test_a_later_end_replaces_an_earlier_one(queue: Queue, state: QueueState) -> None:
    first = await _rate_limit(queue, 1_000)
    second = await _rate_limit(queue, 60_000)

    assert second > first
    assert await state.meta() == {"limited_until": str(second)}


async def test_a_limited_queue_hands_out_no_job_and_says_until_when(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j")
    until = await _rate_limit(queue, 60_000)

    before = await state.now()
    reply = s(await queue.scripts.move_to_active(1, "w:", 60_000))
    after = await state.now()

    assert reply[1] == []
    assert until - after <= int(reply[2]) <= until - before  # ms to wait before asking again
    assert await state.wait() == ["j"]
    assert await state.active() == []


async def test_touches_only_the_meta_hash(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    before = await state.snapshot()

    await _rate_limit(queue, 1_000)

    after = await state.snapshot()
    assert set(after) == set(before) | {queue.keys.meta}
    assert {k: v for k, v in after.items() if k != queue.keys.meta} == {
        k: v for k, v in before.items() if k != queue.keys.meta
    }
