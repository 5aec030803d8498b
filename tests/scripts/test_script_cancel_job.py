"""cancel_job.lua: removes a job that is not running, marks and announces a running one."""

from __future__ import annotations

from script_support import QueueState, add, finish, outcome, take

from conveyor import Queue


async def _cancel(queue: Queue, job_id: str, reason: str = "r") -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "cancel_job",
        [k.wait, k.prioritized, k.delayed, k.active, k.cancels, k.events,
         k.state_key("waiting-children")],
        [k.base, job_id, reason, 100, k.cancel_channel],
    ))


async def test_a_waiting_job_is_removed(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    await add(queue, "b", delay=5_000)
    assert await _cancel(queue, "a") == 1
    assert await _cancel(queue, "b") == 1
    assert await state.wait() == [] and await state.delayed() == []
    assert not await state.exists("a") and not await state.exists("b")


async def test_a_running_job_is_marked_and_announced(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    await take(queue)
    pubsub = state.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(queue.keys.cancel_channel)
    assert await _cancel(queue, "a", "stop") == 2
    message = None
    for _ in range(5):  # the first read may return the subscription's confirmation
        message = await pubsub.get_message(timeout=1)
        if message is not None:
            break
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert message is not None and message["data"] == b"a"
    assert await state.redis.hget(queue.keys.cancels, "a") == b"stop"
    assert [job_id for job_id, _ in await state.active()] == ["a"]  # its worker ends it


async def test_finished_and_missing_jobs(queue: Queue, state: QueueState) -> None:
    await add(queue, "a")
    [(job_id, fields)] = await take(queue)
    await finish(queue, outcome(job_id, fields["tok"], "c", "1"))
    assert await _cancel(queue, "a") == -1
    assert await _cancel(queue, "ghost") == 0
