"""The group keys through add_jobs, the fetch, move_to_finished, move_stalled_jobs
and set_group_limits: round-robin order, busy and limited groups, freed slots."""

from __future__ import annotations

from script_support import QueueState, finish, outcome, s

from conveyor import Queue


async def _add(queue: Queue, job_id: str, group: str, delay: int = 0) -> None:
    await queue.scripts.add_job(job_id, "n", b"1", b"{}", delay, 0, False, 1, group=group)


async def _take(queue: Queue, n: int, prefix: str = "w:") -> tuple[list[str], int]:
    reply = await queue.scripts.move_to_active(n, prefix, 60_000)
    return [s(job_id) for job_id, _ in reply[1]], int(reply[0])


async def _rotation(state: QueueState) -> list[str]:
    return s(await state.redis.zrange(state.keys.key("groups"), 0, -1))


async def test_a_grouped_job_waits_in_its_group(queue: Queue, state: QueueState) -> None:
    await _add(queue, "a1", "a")
    assert await state.wait() == []
    assert s(await state.redis.lrange(queue.keys.group("a"), 0, -1)) == ["a1"]
    assert await _rotation(state) == ["a"]
    assert await state.redis.zcard(queue.keys.marker) == 1
    assert (await state.job("a1"))["grp"] == "a"


async def test_groups_take_turns(queue: Queue, state: QueueState) -> None:
    for i in range(3):
        await _add(queue, f"a{i}", "a")
    for i in range(3):
        await _add(queue, f"b{i}", "b")
    taken, _ = await _take(queue, 4)
    assert taken == ["a0", "b0", "a1", "b1"]
    assert await _rotation(state) == ["a", "b"]
    active = await state.redis.hgetall(queue.keys.key("groups:active"))
    assert {s(k): int(v) for k, v in active.items()} == {"a": 2, "b": 2}
    taken, _ = await _take(queue, 4)
    assert taken == ["a2", "b2"]
    assert await _rotation(state) == []


async def test_a_group_at_its_cap_waits_until_a_job_of_it_ends(
    queue: Queue, state: QueueState
) -> None:
    await state.redis.hset(queue.keys.meta, "group_concurrency", 1)
    for i in range(2):
        await _add(queue, f"a{i}", "a")
        await _add(queue, f"b{i}", "b")
    reply = await queue.scripts.move_to_active(10, "w:", 60_000)
    taken = {s(job_id): s(fields) for job_id, fields in reply[1]}
    assert sorted(taken) == ["a0", "b0"]
    assert sorted(s(list(await state.redis.smembers(queue.keys.key("groups:busy"))))) == ["a", "b"]
    assert await _rotation(state) == []
    await state.redis.delete(queue.keys.marker)
    token = dict(zip(taken["a0"][0::2], taken["a0"][1::2], strict=True))["tok"]
    await finish(queue, outcome("a0", token, "c", "1", group="a"))
    assert await _rotation(state) == ["a"]
    assert s(list(await state.redis.smembers(queue.keys.key("groups:busy")))) == ["b"]
    assert await state.redis.zcard(queue.keys.marker) == 1
    assert (await _take(queue, 10))[0] == ["a1"]


async def test_a_rate_limited_group_is_looked_at_again_when_free(
    queue: Queue, state: QueueState
) -> None:
    await state.redis.hset(queue.keys.meta, mapping={"group_max": 1, "group_duration": 10_000})
    await _add(queue, "a0", "a")
    await _add(queue, "a1", "a")
    before = await state.now()
    assert (await _take(queue, 5))[0] == ["a0"]
    taken, next_due = await _take(queue, 5)
    assert taken == []
    assert before + 10_000 <= next_due <= await state.now() + 10_000
    limited = await state.redis.zrange(queue.keys.key("groups:limited"), 0, -1)
    assert s(limited) == ["a"]


async def test_a_stalled_grouped_job_frees_its_slot(queue: Queue, state: QueueState) -> None:
    await state.redis.hset(queue.keys.meta, "group_concurrency", 1)
    await _add(queue, "a0", "a")
    await _add(queue, "a1", "a")
    await queue.scripts.move_to_active(5, "w:", 1)
    await _take(queue, 5)  # puts the group in busy
    await state.lapse_locks()
    await queue.scripts.move_stalled_jobs(1000, 1, "-1:-1")
    assert await state.redis.hget(queue.keys.key("groups:active"), "a") is None
    assert await _rotation(state) == ["a"]
    assert s(await state.redis.lrange(queue.keys.group("a"), 0, -1)) == ["a0", "a1"]


async def test_lifting_the_group_cap_puts_busy_groups_back(
    queue: Queue, state: QueueState
) -> None:
    await queue.set_group_concurrency(1)
    await _add(queue, "a0", "a")
    await _add(queue, "a1", "a")
    await _take(queue, 5)
    await _take(queue, 5)
    assert await _rotation(state) == []
    await queue.set_group_concurrency(None)
    assert await _rotation(state) == ["a"]
    assert (await _take(queue, 5))[0] == ["a1"]


async def test_a_delayed_grouped_job_is_promoted_into_its_group(
    queue: Queue, state: QueueState
) -> None:
    await _add(queue, "d", "a", delay=1)
    await state.redis.zadd(queue.keys.delayed, {"d": 0})  # due now
    assert (await _take(queue, 5))[0] == ["d"]
