"""remove_job_scheduler.lua: deletes a scheduler and its job if that has not started."""

from __future__ import annotations

from script_support import QueueState, take
from test_script_upsert_job_scheduler import FAR, upsert

from conveyor import Queue


async def remove(queue: Queue, sid: str = "s") -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "remove_job_scheduler",
        [k.schedulers, k.scheduler(sid), k.wait, k.prioritized, k.delayed, k.events],
        [k.base, 100, sid],
    ))


async def test_missing_scheduler_returns_0(queue: Queue, state: QueueState) -> None:
    await upsert(queue, FAR, sid="other")
    before = await state.snapshot()
    assert await remove(queue) == 0
    assert await state.snapshot() == before


async def test_removes_scheduler_and_withdraws_its_delayed_job(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, FAR + 1000)
    await state.clear_events()
    assert await remove(queue) == 1
    assert not await state.redis.exists(queue.keys.scheduler("s"))
    assert await state.zset(queue.keys.schedulers) == []
    assert await state.delayed() == []
    assert not await state.exists(f"sched-s-{FAR}")
    assert await state.event_names() == [("removed", f"sched-s-{FAR}")]


async def test_a_running_job_stays(queue: Queue, state: QueueState) -> None:
    now = await state.now()
    await upsert(queue, now - 1, FAR)
    [(job_id, _)] = await take(queue)
    assert await remove(queue) == 1
    assert await state.exists(job_id)
    assert [i for i, _ in await state.active()] == [job_id]
