"""The hot path's cost and shape: a batch of finished jobs and the next batch
taken in one call cost about two Redis commands per job, one event entry per
batch, and the running attempt's facts live in the lock until it ends."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from script_support import KEEP_ALL, QueueState, add, finish, outcome, take, token_parts

from conveyor import Queue, QueueEvents


async def _commands(redis: aioredis.Redis) -> int:
    info: dict[str, Any] = await redis.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in info.items()
        if k not in ("cmdstat_info", "cmdstat_config|resetstat")
    )


async def test_a_batch_costs_two_commands_per_job(
    queue: Queue, state: QueueState, redis: aioredis.Redis
) -> None:
    n = 100
    await queue.add_bulk([{"name": "job", "data": i} for i in range(2 * n)])
    taken = await take(queue, n)
    await redis.config_resetstat()

    statuses, _, jobs = await finish(
        queue, *(outcome(j, f["tok"], "c", "null", keep="10:-1") for j, f in taken), n=n
    )

    used = await _commands(redis)
    assert statuses == [1] * n and len(jobs) == n
    # One HSET per finished job, one HGETALL per taken job; all the rest (lock
    # check and release, active and completed sets, trimming, events) is done
    # once for the whole batch.
    assert used <= 2 * n + 30, used
    assert len(await state.completed()) == 10
    assert await state.redis.exists(queue.keys.job(taken[0][0])) == 0  # trimmed away


async def test_one_event_entry_per_batch_expanded_for_readers(
    queue: Queue, state: QueueState, redis_url: str, queue_name: str
) -> None:
    for i in range(3):
        await add(queue, f"j{i}")
    taken = await take(queue, 3)
    await state.clear_events()

    await finish(
        queue, *(outcome(j, f["tok"], "c", json.dumps({"n": j}), keep=KEEP_ALL) for j, f in taken)
    )

    [entry] = await state.entries()
    assert entry["event"] == "completed"
    assert [job["job_id"] for job in json.loads(entry["jobs"])] == ["j0", "j1", "j2"]
    events = [e async for e in _first(QueueEvents(queue_name, redis_url, last_id="0"), 3)]
    assert [(e["event"], e["job_id"], e["return_value"], e["attempts_made"]) for e in events] == [
        ("completed", f"j{i}", {"n": f"j{i}"}, 1) for i in range(3)
    ]
    assert len({e["id"] for e in events}) == 1  # all from the one entry


async def _first(events: QueueEvents, n: int) -> Any:
    async with events:
        async for event in events:
            yield event
            n -= 1
            if n == 0:
                return


async def test_running_attempt_lives_in_the_lock_until_it_ends(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "a", attempts=2)
    [(_, fields)] = await take(queue)
    _, started, made, processed_on = token_parts(fields["tok"])
    assert (started, made) == (1, 0)

    job = await queue.get_job("a")
    assert job is not None
    assert (job.attempts_started, job.attempts_made, job.processed_on) == (1, 0, processed_on)
    assert job.token == fields["tok"]
    [listed] = await queue.get_jobs("active")
    assert (listed.attempts_started, listed.processed_on) == (1, processed_on)

    await finish(queue, outcome("a", fields["tok"], "f", "boom", "trace", 0))
    stored = await state.job("a")
    assert (stored["ats"], stored["atm"], stored["pon"]) == ("1", "1", str(processed_on))
    assert await state.locks() == {}
    job = await queue.get_job("a")
    assert job is not None and job.token is None and job.processed_on == processed_on


async def test_stalled_attempt_keeps_what_the_lock_knew(queue: Queue, state: QueueState) -> None:
    await add(queue, "s")
    [(_, fields)] = await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await queue.scripts.move_stalled_jobs(60_000, 1, KEEP_ALL) == [[b"s"], []]

    stored = await state.job("s")
    assert stored["ats"] == "1" and stored["pon"] == fields["pon"]
    assert await state.locks() == {}
    [(_, again)] = await take(queue)
    assert token_parts(again["tok"])[1] == 2  # the second attempt started


async def test_delayed_jobs_due_together_are_promoted_in_one_batch(
    queue: Queue, state: QueueState
) -> None:
    for i in range(5):
        await add(queue, f"d{i}", delay=1, priority=3 if i == 4 else 0)
    now = await state.now()
    await state.wait_until(now + 2)
    await state.clear_events()

    taken = await take(queue, 0)  # promote only

    assert taken == []
    assert await state.wait() == ["d0", "d1", "d2", "d3"]
    assert [i for i, _ in await state.prioritized()] == ["d4"]
    assert len(await state.entries()) == 1
    assert sorted(e["job_id"] for e in await state.events()) == [f"d{i}" for i in range(5)]
    assert (await state.marker())["0"] == 0.0  # idle workers wake for them
