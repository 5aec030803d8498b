"""upsert_job_scheduler.lua: writes a scheduler and makes its first slot's job;
replacing withdraws the old job if it has not started."""

from __future__ import annotations

import json
from typing import Any

from script_support import QueueState, s, take

from conveyor import Queue

SPEC = json.dumps({"every": 1000})
FAR = 4_000_000_000_000  # a slot far in the future (ms)


async def upsert(
    queue: Queue, first: int | str, following: int | str = "", *, sid: str = "s",
    spec: str = SPEC, limit: int = 0, prio: int = 0, data: str = '{"x":1}',
) -> list[Any]:
    k = queue.keys
    return s(await queue.scripts.call(
        "upsert_job_scheduler",
        [k.schedulers, k.scheduler(sid), k.wait, k.prioritized, k.priority_counter, k.delayed,
         k.meta, k.marker, k.events, k.schedulers_marker],
        [k.base, 100, sid, spec, "job", data, "{}", prio, 1, 0, limit, first, following],
    ))


async def scheduler(state: QueueState, sid: str = "s") -> dict[str, str]:
    raw = await state.redis.hgetall(state.keys.scheduler(sid))
    return {s(k): s(v) for k, v in raw.items()}


async def test_new_scheduler_makes_the_first_slot_job_delayed(
    queue: Queue, state: QueueState
) -> None:
    reply = await upsert(queue, FAR, FAR + 1000)

    job_id = f"sched-s-{FAR}"
    assert reply == [1, job_id, str(FAR), 1]
    assert await state.delayed() == [(job_id, FAR)]
    job = await state.job(job_id)
    assert (job["name"], job["data"], job["sch"], job["slot"]) == ("job", '{"x":1}', "s", str(FAR))
    assert json.loads(job["opts"])["delay"] == FAR - int(job["ts"])
    h = await scheduler(state)
    assert {f: h[f] for f in ("cur", "nxt", "pend", "cnt", "gen", "spec")} == {
        "cur": str(FAR), "nxt": str(FAR + 1000), "pend": job_id, "cnt": "1", "gen": "1",
        "spec": SPEC,
    }
    assert await state.zset(queue.keys.schedulers) == [("s", FAR)]
    assert (await state.marker())["d"] == FAR
    assert await state.zset(queue.keys.schedulers_marker) == [("u", 0)]
    assert await state.event_names() == [("added", job_id), ("delayed", job_id)]


async def test_a_due_first_slot_is_ready_at_once(queue: Queue, state: QueueState) -> None:
    now = await state.now()
    await upsert(queue, now - 5, FAR, prio=3)
    assert await state.delayed() == []
    assert [job_id for job_id, _ in await state.prioritized()] == [f"sched-s-{now - 5}"]
    assert (await state.marker())["0"] == 0


async def test_replacing_withdraws_the_job_not_started_and_resets_count_on_a_new_spec(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR)
    await state.clear_events()
    reply = await upsert(queue, FAR + 500, spec=json.dumps({"every": 500}))

    assert reply == [1, f"sched-s-{FAR + 500}", str(FAR + 500), 2]
    assert await state.delayed() == [(f"sched-s-{FAR + 500}", FAR + 500)]
    assert not await state.exists(f"sched-s-{FAR}")
    assert (await state.event_names())[0] == ("removed", f"sched-s-{FAR}")


async def test_same_spec_same_slot_rewrites_the_job_and_keeps_count(
    queue: Queue, state: QueueState
) -> None:
    await upsert(queue, FAR, FAR + 1000)
    reply = await upsert(queue, FAR, FAR + 1000, data='{"x":2}')
    assert reply == [1, f"sched-s-{FAR}", str(FAR), 2]
    assert (await state.job(f"sched-s-{FAR}"))["data"] == '{"x":2}'
    assert len(await state.delayed()) == 1


async def test_a_started_job_is_left_alone(queue: Queue, state: QueueState) -> None:
    now = await state.now()
    await upsert(queue, now - 5, FAR)
    [(taken, _)] = await take(queue)
    await upsert(queue, FAR, FAR + 1000, spec=json.dumps({"every": 7}))
    assert await state.exists(taken)
    assert [job_id for job_id, _ in await state.active()] == [taken]


async def test_limit_reached_or_no_slot_leaves_the_scheduler_finished(
    queue: Queue, state: QueueState
) -> None:
    reply = await upsert(queue, FAR, FAR + 1000, limit=1)
    assert reply[0] == 1
    assert (await scheduler(state))["nxt"] == ""
    assert await state.zset(queue.keys.schedulers) == [("s", float("inf"))]

    reply = await upsert(queue, "", sid="never")
    assert reply == [0, "", "", 1]
    assert await state.zset(queue.keys.schedulers) == [("never", float("inf")),
                                                       ("s", float("inf"))]
    assert len(await state.delayed()) == 1
