"""extend_locks.lua: renews held locks, reports lost ones, never adds to active."""

from __future__ import annotations

from script_support import QueueState, add, finish, outcome, s, take

from conveyor import Queue


async def test_extends_all_held_locks(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await add(queue)
    jobs = await take(queue, 2, lock_ms=1000)
    old = dict(await state.active())

    before = await state.now()
    lost, _ = await queue.scripts.extend_locks([(j, f["tok"]) for j, f in jobs], 60_000)
    after = await state.now()

    assert lost == []
    new = dict(await state.active())
    for job_id in ("1", "2"):
        assert before + 60_000 <= new[job_id] <= after + 60_000
        assert new[job_id] > old[job_id]


async def test_mismatched_token_is_lost_and_not_extended(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await add(queue)
    (a, fa), (b, _) = await take(queue, 2, lock_ms=1000)
    old = dict(await state.active())

    lost, _ = await queue.scripts.extend_locks([(a, fa["tok"]), (b, "someone-else:1")], 60_000)

    assert s(lost) == [b]
    new = dict(await state.active())
    assert new[b] == old[b]
    assert new[a] > old[a]


async def test_finished_and_missing_jobs_are_lost(queue: Queue, state: QueueState) -> None:
    await add(queue)
    [(job_id, fields)] = await take(queue)
    await finish(queue, outcome(job_id, fields["tok"], "c", "1"))
    before = await state.snapshot()

    lost, _ = await queue.scripts.extend_locks(
        [(job_id, fields["tok"]), ("ghost", "w:1")], 60_000
    )

    assert s(lost) == [job_id, "ghost"]
    assert await state.snapshot() == before
    assert await state.active() == []


async def test_matching_token_outside_active_is_not_added(queue: Queue, state: QueueState) -> None:
    await add(queue, "x")
    await state.redis.hset(queue.keys.locks, "x", "w:1")

    assert await queue.scripts.extend_locks([("x", "w:1")], 60_000) == ([], {})
    assert await state.active() == []


async def test_lapsed_lock_still_held_is_renewed(queue: Queue, state: QueueState) -> None:
    await add(queue)
    [(job_id, fields)] = await take(queue, lock_ms=1)
    await state.lapse_locks()

    assert await queue.scripts.extend_locks([(job_id, fields["tok"])], 60_000) == ([], {})
    [(_, deadline)] = await state.active()
    assert deadline > await state.now() + 50_000


async def test_no_locks(queue: Queue, state: QueueState) -> None:
    assert await queue.scripts.extend_locks([], 1000) == ([], {})
    assert await state.snapshot() == {}


async def test_reports_held_jobs_that_were_cancelled(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await add(queue)
    (a, fa), (b, fb) = await take(queue, 2, lock_ms=1000)
    await state.redis.hset(queue.keys.cancels, a, "user asked")

    lost, cancelled = await queue.scripts.extend_locks(
        [(a, fa["tok"]), (b, fb["tok"])], 60_000
    )

    assert lost == [] and cancelled == {a: "user asked"}
