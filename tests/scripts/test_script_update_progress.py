"""update_progress.lua: stores the progress and emits a progress event."""

from __future__ import annotations

from script_support import QueueState, add

from conveyor import Queue


async def test_missing_job_returns_0_and_creates_nothing(queue: Queue, state: QueueState) -> None:
    k = queue.keys  # the raw reply: Scripts.update_progress raises for a missing job
    reply = await queue.scripts.call(
        "update_progress", [k.events], [k.base, "nope", b"50", queue.scripts.maxlen]
    )
    assert reply == 0
    assert await state.snapshot() == {}


async def test_stores_progress_and_emits(queue: Queue, state: QueueState) -> None:
    await add(queue, "j")
    await state.clear_events()

    assert await queue.scripts.update_progress("j", b"10") == 1
    assert await queue.scripts.update_progress("j", b'{"step":2}') == 1

    assert (await state.job("j"))["pr"] == '{"step":2}'
    assert await state.events() == [
        {"event": "progress", "job_id": "j", "progress": "10"},
        {"event": "progress", "job_id": "j", "progress": '{"step":2}'},
    ]
