"""obliterate.lua: the steps of Queue.obliterate (start, keys, finish)."""

from __future__ import annotations

from typing import Any

from script_support import QueueState, add, take

from conveyor import Queue


async def step(queue: Queue, name: str, force: bool = False, keys: tuple[str, ...] = ()) -> Any:
    k = queue.keys
    return await queue.scripts.call(
        "obliterate", [k.meta, k.active, k.locks, *keys], [name, int(force)]
    )


async def test_start_refuses_while_a_job_is_active(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await take(queue)
    before = await state.snapshot()
    assert await step(queue, "start") == -1
    assert await state.snapshot() == before


async def test_start_pauses_the_queue(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    assert await step(queue, "start") == 1
    assert await state.meta() == {"paused": "1"}
    # Paused: a fetch takes nothing.
    assert await take(queue) == []


async def test_forced_start_drops_active_jobs_and_their_locks(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j")
    await take(queue)
    assert await step(queue, "start", force=True) == 1
    assert await state.active() == []
    assert await state.locks() == {}
    assert await state.meta() == {"paused": "1"}


async def test_keys_step_deletes_the_keys_given_but_meta(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await step(queue, "start")
    k = queue.keys
    assert await step(queue, "keys", keys=(k.wait, k.job("j"), k.meta, k.key("nothing"))) == 2
    assert await state.wait() == []
    assert not await state.exists("j")
    assert await state.meta() == {"paused": "1"}


async def test_finish_deletes_meta(queue: Queue, state: QueueState) -> None:
    await step(queue, "start")
    assert await step(queue, "finish") == 1
    assert await state.meta() == {}
