"""move_to_active / move_to_finished under the queue's limits: the global cap,
a back-off (limited_until), the sliding-window limiter; rate_limit and
set_global_concurrency themselves."""

from __future__ import annotations

from script_support import QueueState, add, fetched, finish, outcome, s

from conveyor import Queue


async def test_the_limiter_takes_no_more_than_max_per_window(
    queue: Queue, state: QueueState
) -> None:
    for i in range(15):
        await add(queue, f"j{i}")
    first = await queue.scripts.move_to_active(25, "w:", 60_000, (10, 5_000))
    assert len(first[1]) == 10
    second = await queue.scripts.move_to_active(25, "w:", 60_000, (10, 5_000))
    assert second[1] == []
    assert 4_900 <= int(second[2]) <= 5_000  # ask again when the oldest start leaves
    assert len(await state.redis.zrange(queue.keys.limiter, 0, -1)) == 10
    assert len(await state.wait()) == 5


async def test_the_limiter_window_slides(queue: Queue, state: QueueState) -> None:
    for i in range(4):
        await add(queue, f"j{i}")
    now = await state.now()
    # Two starts long ago, one recent: the window of 1 s holds one.
    await state.redis.zadd(queue.keys.limiter, {"a@old": now - 5_000, "b@old": now - 4_000,
                                                "c@new": now})
    reply = await queue.scripts.move_to_active(5, "w:", 60_000, (3, 1_000))
    assert len(reply[1]) == 2
    members = {m.decode() for m in await state.redis.zrange(queue.keys.limiter, 0, -1)}
    assert "a@old" not in members and "c@new" in members and len(members) == 3


async def test_the_global_cap_counts_active_jobs_of_every_worker(
    queue: Queue, state: QueueState
) -> None:
    for i in range(6):
        await add(queue, f"j{i}")
    await queue.set_global_concurrency(4)
    assert len(fetched((await queue.scripts.move_to_active(3, "a:", 60_000))[1])) == 3
    assert await state.redis.zcard(queue.keys.marker) == 1  # room left: another may wake
    await state.redis.delete(queue.keys.marker)
    assert len(fetched((await queue.scripts.move_to_active(3, "b:", 60_000))[1])) == 1
    assert s(await queue.scripts.move_to_active(3, "c:", 60_000)) == [0, [], 0]
    assert await state.redis.zcard(queue.keys.marker) == 0  # nobody else should wake


async def test_a_report_that_frees_capped_slots_wakes_an_idle_worker(
    queue: Queue, state: QueueState
) -> None:
    for i in range(3):
        await add(queue, f"j{i}")
    await queue.set_global_concurrency(1)
    [(job_id, fields)] = fetched((await queue.scripts.move_to_active(5, "a:", 60_000))[1])
    await state.redis.delete(queue.keys.marker)
    await finish(queue, outcome(job_id, fields["tok"], "c", "1"), n=0, prefix="a:")
    assert await state.redis.zcard(queue.keys.marker) == 1


async def test_a_back_off_stops_fetches_until_it_ends(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    until = int(await queue.scripts.call("rate_limit", [queue.keys.meta], [2_000]))
    shorter = int(await queue.scripts.call("rate_limit", [queue.keys.meta], [10]))
    assert shorter == until  # a shorter back-off does not cut a longer one
    reply = await queue.scripts.move_to_active(1, "w:", 60_000)
    assert reply[1] == [] and 1_900 <= int(reply[2]) <= 2_000
    assert await state.wait() == ["j"]


async def test_a_rate_limited_outcome_hands_the_job_back_and_backs_off(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j")
    [(job_id, fields)] = fetched((await queue.scripts.move_to_active(1, "w:", 60_000))[1])
    statuses, _, jobs = await finish(
        queue, outcome(job_id, fields["tok"], "l", retry_delay=3_000), n=1
    )
    assert statuses == [1] and jobs == []
    assert await state.wait() == ["j"]
    job = await queue.get_job("j")
    assert job is not None and job.attempts_made == 0 and job.attempts_started == 1
    limited_until = int(await state.redis.hget(queue.keys.meta, "limited_until") or 0)
    now = await state.now()
    assert now + 2_000 < limited_until <= now + 3_000


async def test_raising_the_cap_wakes_a_worker_when_work_waits(
    queue: Queue, state: QueueState
) -> None:
    await queue.set_global_concurrency(2)
    await state.redis.delete(queue.keys.marker)
    await queue.set_global_concurrency(5)
    assert await state.redis.zcard(queue.keys.marker) == 0  # nothing waits
    await add(queue, "j")
    await state.redis.delete(queue.keys.marker)
    await queue.set_global_concurrency(None)
    assert await state.redis.zcard(queue.keys.marker) == 1
    assert await state.redis.hget(queue.keys.meta, "concurrency") is None
