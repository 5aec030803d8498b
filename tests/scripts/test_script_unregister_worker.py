"""unregister_worker.lua: a worker that stops leaves the registry."""

from __future__ import annotations

from script_support import QueueState

from conveyor import Queue


async def test_removes_the_entry_and_the_member(queue: Queue, state: QueueState) -> None:
    k = queue.keys
    for worker_id in ("w1", "w2"):
        await queue.scripts.call(
            "register_worker", [k.workers], [k.base, worker_id, '{"ttl":30000}', 30_000, ""]
        )
    assert await queue.scripts.call("unregister_worker", [k.workers], [k.base, "w1"]) == 1
    assert await queue.client.exists(k.worker("w1")) == 0
    assert await state.zids(k.workers) == ["w2"]
    assert await queue.client.exists(k.worker("w2")) == 1
    assert await queue.scripts.call("unregister_worker", [k.workers], [k.base, "w1"]) == 0
