"""clean_jobs.lua: one batch of Queue.clean: jobs of a state at or before a cutoff go."""

from __future__ import annotations

from typing import Any

import pytest
from script_support import QueueState, add, finish, outcome, s, take

from conveyor import Queue


async def clean(
    queue: Queue,
    state: str,
    *,
    cutoff: int | str = "",
    grace: int = 0,
    limit: int = 1000,
    cursor: int = 0,
    scan: int = 1000,
) -> tuple[list[str], int, int]:
    k = queue.keys
    ids, next_cursor, used = await queue.scripts.call(
        "clean_jobs",
        [k.state_key(state), k.locks, k.cancels, k.events],
        [k.base, state, cutoff, grace, limit, cursor, scan, 100],
    )
    return s(ids), int(next_cursor), int(used)


async def finished(queue: Queue, state: QueueState, job_id: str, kind: str = "c") -> int:
    """Add, take and finish a job; returns its finish time (score)."""
    await add(queue, job_id)
    [(_, fields)] = await take(queue)
    assert (await finish(queue, outcome(job_id, fields["tok"], kind, '"v"')))[0] == [1]
    scores = dict(await state.zset(queue.keys.completed if kind == "c" else queue.keys.failed))
    return int(scores[job_id])


@pytest.mark.parametrize(("kind", "state_name"), [("c", "completed"), ("f", "failed")])
async def test_finished_jobs_at_or_before_the_cutoff_go(
    queue: Queue, state: QueueState, kind: str, state_name: str
) -> None:
    first = await finished(queue, state, "old", kind)
    await state.wait_until(first + 2)
    second = await finished(queue, state, "young", kind)
    assert second > first
    await queue.scripts.add_log("old", "a line", 10)
    await state.clear_events()

    assert await clean(queue, state_name, cutoff=first) == (["old"], -1, first)

    assert [i for i, _ in await state.zset(queue.keys.key(state_name))] == ["young"]
    assert not await state.exists("old")
    assert await state.logs("old") == []
    assert await state.exists("young")
    assert await state.events() == [{"event": "removed", "job_id": "old", "prev": state_name}]


async def test_first_batch_takes_the_cutoff_from_redis_time_minus_grace(
    queue: Queue, state: QueueState
) -> None:
    await finished(queue, state, "j")
    before = await state.now()
    ids, cursor, cutoff = await clean(queue, "completed", grace=60_000)
    assert (ids, cursor) == ([], -1)
    assert before - 60_000 <= cutoff <= await state.now() - 60_000
    assert await state.exists("j")


async def test_limit_takes_the_oldest_and_says_there_may_be_more(
    queue: Queue, state: QueueState
) -> None:
    last = 0
    for job_id in ("a", "b", "c"):
        await state.wait_until(last + 1)
        last = await finished(queue, state, job_id, "f")
    assert await clean(queue, "failed", cutoff=last, limit=2) == (["a", "b"], 0, last)
    assert await state.zids(queue.keys.failed) == ["c"]
    assert await clean(queue, "failed", cutoff=last, limit=2) == (["c"], -1, last)


async def test_waiting_jobs_by_added_time_scanned_from_the_tail(
    queue: Queue, state: QueueState
) -> None:
    _, _, ts_a = await add(queue, "a")
    await add(queue, "b")
    await state.wait_until(ts_a + 2)
    _, _, ts_c = await add(queue, "c")
    await state.wait_until(ts_c + 2)
    await add(queue, "d", lifo=True)  # young, at the head: d a b c
    _, _, ts_e = await add(queue, "e")
    await state.clear_events()
    assert await state.wait() == ["d", "a", "b", "c", "e"]

    # Windows of two from the tail: [c e] keeps e, removes c; then [a b] from 1 back...
    ids, cursor, _ = await clean(queue, "waiting", cutoff=ts_c, scan=2)
    assert (ids, cursor) == (["c"], 1)
    assert await state.wait() == ["d", "a", "b", "e"]
    ids, cursor, _ = await clean(queue, "waiting", cutoff=ts_c, scan=2, cursor=cursor)
    assert (ids, cursor) == (["b", "a"], 1)
    ids, cursor, _ = await clean(queue, "waiting", cutoff=ts_c, scan=2, cursor=cursor)
    assert (ids, cursor) == ([], -1)  # d is young: the head is reached

    assert await state.wait() == ["d", "e"]
    assert ts_e > ts_c
    assert sorted(e["job_id"] for e in await state.events()) == ["a", "b", "c"]
    for gone in ("a", "b", "c"):
        assert not await state.exists(gone)


@pytest.mark.parametrize("state_name", ["prioritized", "delayed"])
async def test_zset_states_by_added_time(
    queue: Queue, state: QueueState, state_name: str
) -> None:
    options: dict[str, Any] = (
        {"priority": 5} if state_name == "prioritized" else {"delay": 60_000}
    )
    _, _, old_ts = await add(queue, "old", **options)
    await state.wait_until(old_ts + 2)
    await add(queue, "young", **options)

    ids, cursor, _ = await clean(queue, state_name, cutoff=old_ts)

    assert (ids, cursor) == (["old"], -1)
    assert await state.zids(queue.keys.key(state_name)) == ["young"]
    assert not await state.exists("old")


async def test_active_job_is_removed_only_once_its_lock_lapsed(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "held")
    await add(queue, "lapsed")
    [(_, held)] = await take(queue, lock_ms=60_000)
    [(_, lapsed)] = await take(queue, lock_ms=1, prefix="dead:")
    await state.wait_until(int(lapsed["pon"]) + 2)
    await queue.client.hset(queue.keys.cancels, "lapsed", "why")
    now = await state.now()

    ids, cursor, _ = await clean(queue, "active", cutoff=now)

    assert (ids, cursor) == (["lapsed"], -1)
    assert await state.zids(queue.keys.active) == ["held"]
    assert await state.locks() == {"held": held["tok"]}
    assert await queue.client.hlen(queue.keys.cancels) == 0
    assert not await state.exists("lapsed")


async def test_active_job_that_started_after_the_cutoff_stays(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j")
    [(_, fields)] = await take(queue, lock_ms=1)
    await state.lapse_locks()
    before = await state.snapshot()
    assert await clean(queue, "active", cutoff=int(fields["pon"]) - 1) == (
        [], -1, int(fields["pon"]) - 1
    )
    assert await state.snapshot() == before


async def test_nothing_to_clean_changes_nothing(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    before = await state.snapshot()
    assert (await clean(queue, "waiting", grace=60_000))[:2] == ([], -1)
    assert await state.snapshot() == before


async def test_a_cleaned_child_leaves_its_parents_dependencies(
    queue: Queue, state: QueueState
) -> None:
    k = queue.keys
    await add(queue, "child")
    await add(queue, "sibling")
    for child in ("child", "sibling"):
        await state.redis.hset(k.job(child), "par", k.job("parent"))
        await state.redis.sadd(k.dependencies("parent"), k.job(child))
    await state.redis.hset(k.job("parent"), mapping={"name": "p", "opts": "{}", "ts": 1})
    await state.redis.zadd(k.key("waiting-children"), {"parent": 1})

    removed, _, _ = await clean(queue, "waiting", limit=1)

    assert removed == ["sibling"]
    assert {s(m) for m in await state.redis.smembers(k.dependencies("parent"))} == {
        k.job("child")
    }
    assert await state.zids(k.key("waiting-children")) == ["parent"]
