"""move_to_delayed.lua and update_data.lua: a step job steps out and keeps its data."""

from __future__ import annotations

from script_support import QueueState, add, take, token_parts

from conveyor import Queue


async def _step_out(queue: Queue, job_id: str, token: str, delay: int) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "move_to_delayed",
        [k.active, k.locks, k.delayed, k.marker, k.events],
        [k.base, job_id, token, delay, 100],
    ))


async def test_releases_the_lock_and_delays_the_job(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    [(job_id, fields)] = await take(queue)
    before = await state.now()
    due = await _step_out(queue, job_id, fields["tok"], 5_000)
    assert before + 5_000 <= due <= await state.now() + 5_000
    assert await state.active() == []
    assert await state.redis.hget(queue.keys.locks, job_id) is None
    assert await state.delayed() == [("a", due)]
    _, started, _, processed_on = token_parts(fields["tok"])
    job = await state.job("a")
    assert job["ats"] == str(started) and job["pon"] == str(processed_on)
    assert "atm" not in job  # no attempt made
    marker = await state.redis.zscore(queue.keys.marker, "d")
    assert marker == due


async def test_a_lost_lock_changes_nothing(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    [(job_id, _)] = await take(queue)
    before = await state.snapshot()
    assert await _step_out(queue, job_id, "someone-else:1:0:1", 1_000) == 0
    assert await state.snapshot() == before


async def test_update_data(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    assert await queue.scripts.call("update_data", [queue.keys.job("a")], [b'{"s":2}']) == 1
    assert (await state.job("a"))["data"] == '{"s":2}'
    assert await queue.scripts.call("update_data", [queue.keys.job("zz")], [b"1"]) == 0
    assert not await state.exists("zz")
