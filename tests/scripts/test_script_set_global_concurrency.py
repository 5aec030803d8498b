"""set_global_concurrency.lua: cap the queue's active jobs across all workers (0
removes the cap); raising or removing the cap wakes an idle worker when work is ready."""

from __future__ import annotations

from script_support import QueueState, add, take

from conveyor import Queue


async def _set(queue: Queue, cap: int) -> int:
    k = queue.keys
    return int(
        await queue.scripts.call(
            "set_global_concurrency", [k.meta, k.marker, k.wait, k.prioritized], [cap]
        )
    )


async def test_sets_the_cap_in_meta_and_returns_1(queue: Queue, state: QueueState) -> None:
    assert await _set(queue, 3) == 1
    assert await state.meta() == {"concurrency": "3"}
    assert await state.marker() == {}  # nothing waiting: nobody to wake


async def test_zero_removes_the_cap(queue: Queue, state: QueueState) -> None:
    await _set(queue, 3)
    assert await _set(queue, 0) == 1
    assert await state.meta() == {}


async def test_waiting_work_wakes_an_idle_worker(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await state.clear_marker()

    await _set(queue, 2)

    assert await state.marker() == {"0": 0.0}


async def test_prioritized_work_wakes_an_idle_worker(queue: Queue, state: QueueState) -> None:
    await add(queue, "p", priority=5)
    await state.clear_marker()

    await _set(queue, 0)

    assert await state.marker() == {"0": 0.0}


async def test_a_paused_queue_is_not_woken(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await queue.scripts.set_paused(True)
    await state.clear_marker()

    await _set(queue, 2)

    assert await state.marker() == {}
    assert await state.meta() == {"paused": "1", "concurrency": "2"}


async def test_the_fetch_takes_no_more_than_the_cap(queue: Queue, state: QueueState) -> None:
    for job_id in ("a", "b", "c"):
        await add(queue, job_id)
    await _set(queue, 2)

    assert [job_id for job_id, _ in await take(queue, n=5)] == ["a", "b"]
    assert [job_id for job_id, _ in await take(queue, n=5)] == []
    assert await state.wait() == ["c"]

    await _set(queue, 0)  # lifted: the rest may start
    assert [job_id for job_id, _ in await take(queue, n=5)] == ["c"]
