"""retry_job.lua: a failed or completed job goes back to run again."""

from __future__ import annotations

import json

import pytest
from script_support import QueueState, add, finish, outcome, prio, take, token_parts

from conveyor import Queue


async def _finished(queue: Queue, kind: str, job_id: str = "j", priority: int = 0) -> None:
    await add(queue, job_id, priority=priority)
    [(_, fields)] = await take(queue)
    statuses, _, _ = await finish(queue, outcome(job_id, fields["tok"], kind, "v", "t", -1))
    assert statuses == [1]


async def _retry(queue: Queue, job_id: str, reset_attempts: bool) -> int:
    """The script's raw reply (Scripts.retry_job raises for a refusal)."""
    k = queue.keys
    return int(await queue.scripts.call(
        "retry_job",
        [k.failed, k.completed, k.wait, k.prioritized, k.priority_counter, k.meta, k.marker,
         k.events],
        [k.base, job_id, int(reset_attempts), queue.scripts.maxlen],
    ))


async def test_missing_job_returns_0(queue: Queue, state: QueueState) -> None:
    assert await _retry(queue, "nope", False) == 0
    assert await state.snapshot() == {}


@pytest.mark.parametrize("where", ["waiting", "delayed", "active"])
async def test_unfinished_job_returns_minus_1_and_changes_nothing(
    queue: Queue, state: QueueState, where: str
) -> None:
    await add(queue, "j", delay=60_000 if where == "delayed" else 0)
    if where == "active":
        await take(queue)
    before = await state.snapshot()
    assert await _retry(queue, "j", True) == -1
    assert await state.snapshot() == before


@pytest.mark.parametrize(("kind", "set_name"), [("f", "failed"), ("c", "completed")])
async def test_finished_job_goes_back_to_wait_tail(
    queue: Queue, state: QueueState, kind: str, set_name: str
) -> None:
    await _finished(queue, kind)
    await add(queue, "other")
    await state.clear_marker()
    await state.clear_events()

    assert await queue.scripts.retry_job("j", False) == 1

    assert await state.zset(queue.keys.key(set_name)) == []
    assert await state.wait() == ["other", "j"]
    assert await state.marker() == {"0": 0.0}
    assert await state.events() == [{"event": "waiting", "job_id": "j"}]
    job = await state.job("j")
    for gone in ("fon", "pon", "fr", "rv"):
        assert gone not in job
    assert await state.locks() == {}  # no lock token survives into the retry
    assert job["atm"] == "1"  # kept without reset
    assert job["ats"] == "1"


async def test_reset_attempts_resets_attempts_made_and_started(
    queue: Queue, state: QueueState
) -> None:
    await _finished(queue, "f")
    assert await queue.scripts.retry_job("j", True) == 1
    job = await state.job("j")
    assert job["atm"] == "0"
    assert job["ats"] == "0"

    [(_, fields)] = await take(queue)
    assert token_parts(fields["tok"])[:3] == ("w:", 1, 0)


async def test_prioritized_job_goes_back_to_prioritized(queue: Queue, state: QueueState) -> None:
    await _finished(queue, "f", priority=9)
    assert await queue.scripts.retry_job("j", False) == 1
    assert await state.prioritized() == [("j", prio(9, 2))]
    assert await state.wait() == []


async def test_paused_queue_gets_no_marker(queue: Queue, state: QueueState) -> None:
    await _finished(queue, "f")
    await queue.scripts.set_paused(True)
    await state.clear_marker()
    assert await queue.scripts.retry_job("j", False) == 1
    assert await state.wait() == ["j"]
    assert await state.marker() == {}


async def test_a_retried_job_keeps_its_stalled_count(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await take(queue, lock_ms=1)
    await state.lapse_locks()
    assert await queue.scripts.move_stalled_jobs(60_000, 0, "-1:-1") == [[], [b"j"]]
    assert (await state.job("j"))["stc"] == "1"

    assert await queue.scripts.retry_job("j", True) == 1

    job = await state.job("j")
    assert job["stc"] == "1"  # as BullMQ: retrying does not forgive stalls
    assert "fr" not in job
    assert job["atm"] == "0"
    assert await state.wait() == ["j"]
    assert await state.failed() == []


async def test_a_completed_jobs_attempt_is_kept_in_its_history_before_pon_and_fon_go(
    queue: Queue, state: QueueState
) -> None:
    await _finished(queue, "c")
    before = await state.job("j")

    assert await _retry(queue, "j", False) == 1

    assert json.loads((await state.job("j"))["ath"]) == [
        [1, int(before["pon"]), int(before["fon"]), "", "completed"]]


async def test_a_failed_jobs_history_is_left_as_it_is(queue: Queue, state: QueueState) -> None:
    await _finished(queue, "f")
    history = (await state.job("j"))["ath"]

    assert await _retry(queue, "j", False) == 1

    assert (await state.job("j"))["ath"] == history
