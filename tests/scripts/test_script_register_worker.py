"""register_worker.lua: a worker joins the registry: its entry (with a ttl) and its
member of the workers zset; expired members are forgotten."""

from __future__ import annotations

import json

from script_support import QueueState

from conveyor import Queue

ENTRY = '{"host":"host-a","pid":123,"conc":8,"run":["5","6"],"ttl":30000}'


async def register(
    queue: Queue, worker_id: str, ttl: int = 30_000, started: int | str = ""
) -> int:
    k = queue.keys
    return int(await queue.scripts.call(
        "register_worker", [k.workers], [k.base, worker_id, ENTRY, ttl, started]
    ))


async def test_writes_the_entry_with_started_and_a_ttl(queue: Queue, state: QueueState) -> None:
    before = await state.now()
    started = await register(queue, "w1")
    assert before <= started <= await state.now()
    entry = json.loads(await queue.client.get(queue.keys.worker("w1")))
    assert entry == {"started": started, "host": "host-a", "pid": 123, "conc": 8,
                     "run": ["5", "6"], "ttl": 30_000}
    assert 29_000 < await queue.client.pttl(queue.keys.worker("w1")) <= 30_000
    assert await state.zset(queue.keys.workers) == [("w1", float(started))]


async def test_registering_again_keeps_a_given_start_time(queue: Queue, state: QueueState) -> None:
    started = await register(queue, "w1", ttl=1)
    await state.wait_until(started + 3)
    assert await queue.client.exists(queue.keys.worker("w1")) == 0
    assert await register(queue, "w1", started=started) == started
    assert await state.zset(queue.keys.workers) == [("w1", float(started))]
    assert json.loads(await queue.client.get(queue.keys.worker("w1")))["started"] == started


async def test_forgets_workers_whose_entry_expired(queue: Queue, state: QueueState) -> None:
    await register(queue, "dead", ttl=1)
    await register(queue, "alive")
    await state.wait_until(await state.now() + 3)
    await register(queue, "new")
    assert await state.zids(queue.keys.workers) == ["alive", "new"]
