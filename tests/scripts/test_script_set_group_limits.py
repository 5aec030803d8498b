"""set_group_limits.lua: the per-group cap (group_concurrency) and rate limit
(group_max per group_duration ms); "0" removes one. Groups held back by a limit
that was lifted rejoin the rotation, and an idle worker is woken."""

from __future__ import annotations

from script_support import QueueState, s

from conveyor import Queue


async def _set(queue: Queue, field: str, value: str) -> int:
    k = queue.keys
    args = [k.base, field, value]
    return int(await queue.scripts.call("set_group_limits", [k.meta, k.marker], args))


async def _add(queue: Queue, job_id: str, group: str) -> None:
    await queue.scripts.add_job(job_id, "n", b"1", b"{}", 0, 0, False, 1, group=group)


async def _take(queue: Queue, n: int = 5) -> list[str]:
    reply = await queue.scripts.move_to_active(n, "w:", 60_000)
    return [s(job_id) for job_id, _ in reply[1]]


async def _rotation(state: QueueState) -> list[str]:
    return s(await state.redis.zrange(state.keys.key("groups"), 0, -1))


async def test_sets_and_removes_the_group_cap(queue: Queue, state: QueueState) -> None:
    assert await _set(queue, "group_concurrency", "2") == 1
    assert await state.meta() == {"group_concurrency": "2"}
    assert await state.marker() == {}  # no group has work: nobody to wake

    assert await _set(queue, "group_concurrency", "0") == 1
    assert await state.meta() == {}


async def test_sets_and_removes_the_group_rate_limit(queue: Queue, state: QueueState) -> None:
    assert await _set(queue, "group_limit", "3:1000") == 1
    assert await state.meta() == {"group_max": "3", "group_duration": "1000"}

    assert await _set(queue, "group_limit", "0") == 1
    assert await state.meta() == {}


async def test_lifting_the_cap_puts_busy_groups_with_work_back(
    queue: Queue, state: QueueState
) -> None:
    await _set(queue, "group_concurrency", "1")
    for job_id, group in [("a0", "a"), ("a1", "a"), ("b0", "b"), ("b1", "b"), ("c0", "c")]:
        await _add(queue, job_id, group)
    assert sorted(await _take(queue)) == ["a0", "b0", "c0"]
    busy = queue.keys.key("groups:busy")
    assert sorted(s(list(await state.redis.smembers(busy)))) == ["a", "b"]
    await state.clear_marker()

    await _set(queue, "group_concurrency", "2")  # raised: room for one more each

    assert await state.redis.exists(busy) == 0
    assert sorted(await _rotation(state)) == ["a", "b"]
    assert await state.marker() == {"0": 0.0}
    assert sorted(await _take(queue)) == ["a1", "b1"]


async def test_lifting_the_rate_limit_puts_limited_groups_back(
    queue: Queue, state: QueueState
) -> None:
    await _set(queue, "group_limit", "1:60000")
    await _add(queue, "a0", "a")
    await _add(queue, "a1", "a")
    assert await _take(queue) == ["a0"]
    assert await _take(queue) == []
    limited = queue.keys.key("groups:limited")
    assert s(await state.redis.zrange(limited, 0, -1)) == ["a"]
    await state.clear_marker()

    await _set(queue, "group_limit", "0")

    assert await state.redis.exists(limited) == 0
    assert await _rotation(state) == ["a"]
    assert await state.marker() == {"0": 0.0}
    assert await _take(queue) == ["a1"]


async def test_a_paused_queue_is_not_woken(queue: Queue, state: QueueState) -> None:
    await _add(queue, "a0", "a")
    await queue.scripts.set_paused(True)
    await state.clear_marker()

    await _set(queue, "group_concurrency", "2")

    assert await state.marker() == {}
    assert await _rotation(state) == ["a"]
