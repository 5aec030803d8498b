"""update_data.lua: replace a job's data; 0 and nothing written when the job is gone."""

from __future__ import annotations

import pytest
from script_support import QueueState, add, take

from conveyor import Queue


async def _update(queue: Queue, job_id: str, data: bytes) -> int:
    return int(await queue.scripts.call("update_data", [queue.keys.job(job_id)], [data]))


async def test_replaces_the_data_field_only(queue: Queue, state: QueueState) -> None:
    await add(queue, "j", data=b'{"step":1}')
    before = await state.job("j")
    await state.clear_events()

    assert await _update(queue, "j", b'{"step":2}') == 1

    assert await state.job("j") == {**before, "data": '{"step":2}'}
    assert await state.events() == []


async def test_a_running_job_keeps_its_lock(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    [(_, fields)] = await take(queue)
    locks = await state.locks()

    assert await _update(queue, "j", b"[1,2]") == 1

    assert (await state.job("j"))["data"] == "[1,2]"
    assert await state.locks() == locks == {"j": fields["tok"]}
    assert [job_id for job_id, _ in await state.active()] == ["j"]


async def test_a_missing_job_returns_0_and_writes_nothing(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "other")
    before = await state.snapshot()

    assert await _update(queue, "gone", b"1") == 0

    assert await state.snapshot() == before
    assert not await state.exists("gone")


async def _update_pending(queue: Queue, job_id: str, data: bytes) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "update_data", [k.job(job_id), k.active, k.completed, k.failed], [data, "1", job_id]))


@pytest.mark.parametrize("delay", [0, 60_000])
async def test_pending_only_edits_a_job_that_has_not_started(
    queue: Queue, state: QueueState, delay: int
) -> None:
    await add(queue, "j", delay=delay)

    assert await _update_pending(queue, "j", b'{"v":2}') == 1

    assert (await state.job("j"))["data"] == '{"v":2}'


async def test_pending_only_refuses_a_running_or_finished_job_and_writes_nothing(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "run")
    await take(queue)
    await add(queue, "done")
    await state.redis.zadd(queue.keys.completed, {"done": 1})
    await add(queue, "lost")
    await state.redis.zadd(queue.keys.failed, {"lost": 1})
    before = await state.snapshot()

    for job_id in ("run", "done", "lost"):
        assert await _update_pending(queue, job_id, b"0") == -1
    assert await _update_pending(queue, "gone", b"0") == 0

    assert await state.snapshot() == before
