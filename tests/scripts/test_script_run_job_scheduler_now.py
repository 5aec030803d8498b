"""run_job_scheduler_now.lua: one extra job from a scheduler's template, ready
now; the schedule itself is left as it was."""

from __future__ import annotations

import json
from typing import Any

from script_support import QueueState, s
from test_script_upsert_job_scheduler import FAR, scheduler, upsert

from conveyor import Queue


async def run_now(queue: Queue, sid: str = "s") -> list[Any]:
    k = queue.keys
    return s(await queue.scripts.call(
        "run_job_scheduler_now",
        [k.scheduler(sid), k.wait, k.prioritized, k.priority_counter, k.delayed, k.meta,
         k.marker, k.events],
        [k.base, 100, sid],
    ))


async def test_missing_scheduler_changes_nothing(queue: Queue, state: QueueState) -> None:
    await upsert(queue, FAR, sid="other")
    before = await state.snapshot()
    assert await run_now(queue) == ["", 0]
    assert await state.snapshot() == before


async def test_makes_a_waiting_job_from_the_template_and_leaves_the_schedule(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, FAR + 1000, data='{"report":"daily"}')
    schedule_before = await scheduler(state)
    await state.clear_events()
    now = await state.now()

    job_id, made = await run_now(queue)

    assert made == 1
    assert job_id.startswith("sched-s-")
    slot = int(job_id.removeprefix("sched-s-"))
    assert now <= slot <= await state.now()
    assert await state.wait() == [job_id]
    job = await state.job(job_id)
    assert (job["name"], job["data"], job["sch"], job["slot"]) == (
        "job", '{"report":"daily"}', "s", str(slot))
    assert "delay" not in json.loads(job["opts"])
    # The pending job is still delayed to its slot; the scheduler's hash is as it was.
    assert await state.delayed() == [(f"sched-s-{FAR}", FAR)]
    assert await scheduler(state) == schedule_before
    [entry] = await state.entries()
    assert (entry["event"], entry["job_id"], entry["state"]) == ("added", job_id, "waiting")


async def test_a_prioritized_template_makes_a_prioritized_job(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, prio=4)
    job_id, _ = await run_now(queue)
    assert await state.wait() == []
    assert [i for i, _ in await state.prioritized()] == [job_id]
    assert (await state.job(job_id))["prio"] == "4"


async def test_a_job_of_the_same_millisecond_is_not_made_twice(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR)
    now = await state.now()
    # Jobs of every millisecond of the next 10 s exist already (a call of the same
    # millisecond made them): the call makes none.
    async with state.redis.pipeline(transaction=False) as pipe:
        for ms in range(now, now + 10_000):
            pipe.hset(queue.keys.job(f"sched-s-{ms}"), "name", "earlier")
        await pipe.execute()
    before = await state.snapshot()
    job_id, made = await run_now(queue)
    assert made == 0
    assert now <= int(job_id.removeprefix("sched-s-")) < now + 10_000
    assert await state.snapshot() == before
