"""advance_job_scheduler.lua: compare-and-set on (generation, next slot); makes the
next slot's job, and missed slots' jobs by the policy."""

from __future__ import annotations

from typing import Any

from script_support import QueueState, s
from test_script_upsert_job_scheduler import FAR, scheduler, upsert

from conveyor import Queue


async def advance(
    queue: Queue, gen: int | str, expected: int | str, future: int | str = "",
    following: int | str = "", *missed: int, policy: str = "run_once", limit: int = 0,
) -> list[Any]:
    k = queue.keys
    return s(await queue.scripts.call(
        "advance_job_scheduler",
        [k.schedulers, k.scheduler("s"), k.wait, k.prioritized, k.priority_counter, k.delayed,
         k.meta, k.marker, k.events],
        [k.base, 100, "s", gen, expected, policy, limit, future, following, *missed],
    ))


async def due_scheduler(queue: Queue, state: QueueState) -> int:
    """A scheduler whose first job (slot t) is due now, next slot t + 1000; returns t."""
    t = await state.now() - 10
    await upsert(queue, t, t + 1000)
    return t


async def test_stale_generation_or_next_slot_changes_nothing(
    queue: Queue, state: QueueState
) -> None:
    t = await due_scheduler(queue, state)
    before = await state.snapshot()
    assert await advance(queue, 2, t + 1000, t + 1000, t + 2000) == [0]
    assert await advance(queue, 1, t + 2000, t + 2000, t + 3000) == [0]
    assert await state.snapshot() == before


async def test_makes_the_next_slot_job_once(queue: Queue, state: QueueState) -> None:
    t = await due_scheduler(queue, state)
    assert await advance(queue, 1, t + 1000, t + 1000, t + 2000) == [1, 2, f"sched-s-{t + 1000}"]
    assert await advance(queue, 1, t + 1000, t + 1000, t + 2000) == [0]  # a second racer

    assert await state.delayed() == [(f"sched-s-{t + 1000}", t + 1000)]
    h = await scheduler(state)
    assert (h["cur"], h["nxt"], h["pend"], h["cnt"]) == (
        str(t + 1000), str(t + 2000), f"sched-s-{t + 1000}", "2")
    assert await state.zset(queue.keys.schedulers) == [("s", t + 1000)]


async def test_run_once_skips_the_catch_up_while_the_last_job_waits(
    queue: Queue, state: QueueState
) -> None:
    t = await due_scheduler(queue, state)  # its job is still in the wait list
    reply = await advance(queue, 1, t + 1000, FAR, FAR + 1000, t + 1000)
    assert reply == [1, 2, f"sched-s-{FAR}"]
    assert await state.wait() == [f"sched-s-{t}"]


async def test_run_once_makes_one_catch_up_job_when_the_last_one_ran(
    queue: Queue, state: QueueState
) -> None:
    t = await due_scheduler(queue, state)
    await state.redis.lrem(queue.keys.wait, 0, f"sched-s-{t}")  # it ran and is gone
    await state.redis.delete(queue.keys.job(f"sched-s-{t}"))
    reply = await advance(queue, 1, t + 1000, FAR, FAR + 1000, t + 1000)
    assert reply == [1, 3, f"sched-s-{t + 1000}", f"sched-s-{FAR}"]
    assert await state.wait() == [f"sched-s-{t + 1000}"]


async def test_run_all_makes_every_missed_slot_and_limit_stops_it(
    queue: Queue, state: QueueState
) -> None:
    t = await due_scheduler(queue, state)
    missed = [t + 1000, t + 2000, t + 3000]
    reply = await advance(queue, 1, t + 1000, FAR, FAR + 1000, *missed, policy="run_all",
                          limit=3)
    assert reply == [1, 3, f"sched-s-{t + 1000}", f"sched-s-{t + 2000}"]
    assert await state.delayed() == []
    h = await scheduler(state)
    assert (h["cnt"], h["nxt"], h["cur"]) == ("3", "", str(t + 2000))
    assert await state.zset(queue.keys.schedulers) == [("s", float("inf"))]
