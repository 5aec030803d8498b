"""run_job_scheduler_now.lua: one extra job from a scheduler's template, ready
now, with the schedule (next slot, pending job, count, zset score) unchanged."""

from __future__ import annotations

from typing import Any

from script_support import QueueState, s
from test_script_upsert_job_scheduler import FAR, scheduler, upsert

from conveyor import Queue


async def run_now(queue: Queue, sid: str = "s") -> list[Any]:
    k = queue.keys
    return list(s(await queue.scripts.call(
        "run_job_scheduler_now",
        [k.scheduler(sid), k.wait, k.prioritized, k.priority_counter, k.delayed, k.meta,
         k.marker, k.events],
        [k.base, 100, sid],
    )))


async def test_missing_scheduler_returns_nothing_and_writes_nothing(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, sid="other")
    before = await state.snapshot()
    assert await run_now(queue) == []
    assert await state.snapshot() == before


async def test_makes_a_ready_job_and_leaves_the_schedule(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, FAR + 1000, limit=1)
    before = await scheduler(state)
    zset = await state.zset(queue.keys.schedulers)
    await state.clear_events()

    job_id, made = await run_now(queue)

    assert made == 1
    slot = job_id.removeprefix("sched-s-")
    assert abs(int(slot) - await state.now()) < 5_000
    assert await state.wait() == [job_id]
    job = await state.job(job_id)
    assert (job["name"], job["data"], job["sch"], job["slot"]) == ("job", '{"x":1}', "s", slot)
    assert await state.delayed() == [(f"sched-s-{FAR}", FAR)]  # the next run, as it was
    after = await scheduler(state)
    assert after == {**before, "man": job_id}  # cur, nxt, pend, cnt, gen unchanged
    assert await state.zset(queue.keys.schedulers) == zset
    assert await state.event_names() == [("added", job_id)]


async def test_a_prioritized_template_makes_a_prioritized_job(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, prio=4)
    job_id, made = await run_now(queue)
    assert made == 1
    assert [i for i, _ in await state.prioritized()] == [job_id]
    assert await state.wait() == []
