"""retry_jobs.lua: a batch of finished jobs (before a cutoff) goes back to run again."""

from __future__ import annotations

import json

import pytest
from script_support import QueueState, add, finish, outcome, s, take

from conveyor import Queue


async def retry(
    queue: Queue, set_name: str, count: int = 1000, cutoff: int | str = "", reset: bool = False
) -> tuple[int, int]:
    k = queue.keys
    n, used = await queue.scripts.call(
        "retry_jobs",
        [k.key(set_name), k.wait, k.prioritized, k.priority_counter, k.meta, k.marker, k.events],
        [k.base, count, cutoff, int(reset), 100],
    )
    return int(n), int(used)


async def finished(queue: Queue, job_id: str, kind: str = "f", priority: int = 0) -> None:
    await add(queue, job_id, priority=priority)
    [(_, fields)] = await take(queue)
    statuses, _, _ = await finish(queue, outcome(job_id, fields["tok"], kind, "boom", "trace", -1))
    assert statuses == [1]


@pytest.mark.parametrize(("kind", "set_name"), [("f", "failed"), ("c", "completed")])
async def test_moves_finished_jobs_back_like_retry_job(
    queue: Queue, state: QueueState, kind: str, set_name: str
) -> None:
    await finished(queue, "a", kind)
    await finished(queue, "b", kind)
    await finished(queue, "p", kind, priority=4)
    await state.clear_marker()
    await state.clear_events()
    now = await state.now()

    n, cutoff = await retry(queue, set_name)

    assert n == 3
    assert now <= cutoff <= await state.now()
    assert await state.zset(queue.keys.key(set_name)) == []
    assert await state.wait() == ["a", "b"]
    assert [i for i, _ in await state.prioritized()] == ["p"]
    assert await state.marker() == {"0": 0.0}
    assert sorted(e["job_id"] for e in await state.events()) == ["a", "b", "p"]
    assert {e["event"] for e in await state.events()} == {"waiting"}
    job = await state.job("a")
    for gone in ("fon", "pon", "fr", "rv"):
        assert gone not in job
    assert job["atm"] == "1"


async def test_batches_of_count_oldest_first_and_reset(queue: Queue, state: QueueState) -> None:
    for job_id in ("a", "b", "c"):
        await finished(queue, job_id)
    n, cutoff = await retry(queue, "failed", count=2, reset=True)
    assert n == 2
    assert await state.wait() == ["a", "b"]
    job = await state.job("a")
    assert (job["atm"], job["ats"]) == ("0", "0")
    assert await retry(queue, "failed", count=2, cutoff=cutoff) == (1, cutoff)
    assert await retry(queue, "failed", count=2, cutoff=cutoff) == (0, cutoff)


async def test_jobs_finished_after_the_cutoff_stay(queue: Queue, state: QueueState) -> None:
    await finished(queue, "old")
    [(_, score)] = await state.failed()
    await state.wait_until(int(score) + 2)
    await finished(queue, "new")
    assert await retry(queue, "failed", cutoff=int(score)) == (1, int(score))
    assert await state.zids(queue.keys.failed) == ["new"]


async def test_paused_queue_gets_no_marker(queue: Queue, state: QueueState) -> None:
    await finished(queue, "a")
    await queue.scripts.set_paused(True)
    await state.clear_marker()
    assert (await retry(queue, "failed"))[0] == 1
    assert await state.wait() == ["a"]
    assert await state.marker() == {}


async def test_member_without_a_job_is_dropped(queue: Queue, state: QueueState) -> None:
    await queue.client.zadd(queue.keys.failed, {"ghost": 1})
    assert (await retry(queue, "failed"))[0] == 1
    assert await state.failed() == []
    assert await state.wait() == []
    assert s(await queue.client.xlen(queue.keys.events)) == 0


async def test_retried_jobs_keep_their_stalled_count(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert await queue.scripts.move_stalled_jobs(60_000, 0, "-1:-1") == [[], [b"j"]]

    n, _ = await retry(queue, "failed", reset=True)
    assert n == 1

    assert (await state.job("j"))["stc"] == "1"


async def test_completed_jobs_keep_their_attempt_in_their_history(
    queue: Queue, state: QueueState
) -> None:
    await finished(queue, "a", "c")
    await finished(queue, "b", "f")
    a, b = await state.job("a"), await state.job("b")

    assert (await retry(queue, "completed"))[0] == 1
    assert (await retry(queue, "failed"))[0] == 1

    assert json.loads((await state.job("a"))["ath"]) == [
        [1, int(a["pon"]), int(a["fon"]), "", "completed"]]
    assert (await state.job("b"))["ath"] == b["ath"]
