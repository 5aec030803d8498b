"""get_workers.lua: live workers, oldest first, a page at a time; expired ones dropped."""

from __future__ import annotations

import json
from typing import Any

from script_support import QueueState, s

from conveyor import Queue


async def register(queue: Queue, worker_id: str, ttl: int = 30_000) -> int:
    k = queue.keys
    entry = json.dumps({"run": ["7"], "ttl": ttl})
    return int(await queue.scripts.call(
        "register_worker", [k.workers], [k.base, worker_id, entry, ttl, ""]
    ))


async def get(queue: Queue, start: int = 0, end: int = -1) -> tuple[int, list[Any]]:
    k = queue.keys
    now, entries = await queue.scripts.call("get_workers", [k.workers], [k.base, start, end])
    return int(now), [(s(i), json.loads(entry), int(left)) for i, entry, left in entries]


async def test_pages_oldest_first_with_the_time_left(queue: Queue, state: QueueState) -> None:
    last = 0
    for worker_id in ("a", "b", "c"):
        await state.wait_until(last + 1)
        last = await register(queue, worker_id)
    _, everyone = await get(queue)
    assert [i for i, _, _ in everyone] == ["a", "b", "c"]
    before = await state.now()
    now, [(worker_id, entry, left)] = await get(queue, 1, 1)
    assert before <= now <= await state.now()
    assert worker_id == "b"
    assert entry["run"] == ["7"] and entry["started"] < now
    assert 0 < left <= 30_000
    # The heartbeat's time, as Python derives it: at or after registration.
    assert entry["started"] <= now - (entry["ttl"] - left) <= now


async def test_drops_expired_workers(queue: Queue, state: QueueState) -> None:
    await register(queue, "dead", ttl=1)
    await register(queue, "alive")
    await state.wait_until(await state.now() + 3)
    assert [i for i, _, _ in (await get(queue))[1]] == ["alive"]
    assert await state.zids(queue.keys.workers) == ["alive"]


async def test_no_workers(queue: Queue, state: QueueState) -> None:
    assert (await get(queue))[1] == []
    assert await state.snapshot() == {}


async def test_an_entry_of_the_wrong_type_is_left_out(queue: Queue, state: QueueState) -> None:
    await register(queue, "a")
    await register(queue, "b")
    await state.redis.delete(queue.keys.worker("a"))
    await state.redis.hset(queue.keys.worker("a"), "x", "y")
    _, everyone = await get(queue)
    assert [i for i, _, _ in everyone] == ["b"]
