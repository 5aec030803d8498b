"""The events of adding: added, then waiting, prioritized or delayed as the job
lands; duplicated for an id that exists; deduplicated names the job kept and
the id of the one not added. Readers see them through conveyor._stream."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from conveyor import FlowProducer, Queue
from conveyor._stream import decode_entry


async def _events(redis: aioredis.Redis, queue: Queue) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for entry_id, entry in await redis.xrange(queue.keys.events):
        found.extend(decode_entry(entry_id, entry))
    return found


def _pairs(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["job_id"]) for e in events]


async def test_adding_one_job_emits_added_and_its_state(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await queue.add("plain", job_id="w")
    await queue.add("urgent", job_id="p", priority=2)
    await queue.add("later", job_id="d", delay=60_000)
    await queue.add("first", job_id="l", lifo=True)
    await queue.add("tenant", job_id="g", group="t1")

    events = await _events(redis, queue)

    assert _pairs(events) == [
        ("added", "w"), ("waiting", "w"),
        ("added", "p"), ("prioritized", "p"),
        ("added", "d"), ("delayed", "d"),
        ("added", "l"), ("waiting", "l"),
        ("added", "g"), ("waiting", "g"),
    ]
    assert events[0] == {"id": events[0]["id"], "event": "added", "job_id": "w", "name": "plain"}


async def test_a_bulk_add_emits_each_jobs_state(queue: Queue, redis: aioredis.Redis) -> None:
    await queue.add_bulk([
        {"name": "a", "job_id": "a"},
        {"name": "b", "job_id": "b", "priority": 1},
        {"name": "c", "job_id": "c", "delay": 60_000},
    ])

    assert _pairs(await _events(redis, queue)) == [
        ("added", "a"), ("waiting", "a"),
        ("added", "b"), ("prioritized", "b"),
        ("added", "c"),
        ("delayed", "c"),
    ]


async def test_adding_an_id_that_exists_emits_duplicated(
    queue: Queue, redis: aioredis.Redis
) -> None:
    await queue.add("x", job_id="same")
    await redis.delete(queue.keys.events)

    await queue.add("x", job_id="same")
    await queue.add_bulk([{"name": "x", "job_id": "same"},
                          {"name": "x", "job_id": "new"}])

    assert _pairs(await _events(redis, queue)) == [
        ("duplicated", "same"),
        ("added", "new"), ("waiting", "new"),
        ("duplicated", "same"),
    ]


async def test_deduplicated_names_the_job_kept_and_the_id_not_added(
    queue: Queue, redis: aioredis.Redis
) -> None:
    kept = await queue.add("x", deduplication={"id": "k"})
    await queue.add("x", job_id="mine", deduplication={"id": "k"})
    await queue.add("x", deduplication={"id": "k"})

    events = [e for e in await _events(redis, queue) if e["event"] == "deduplicated"]

    assert [e["job_id"] for e in events] == [kept.id, kept.id]
    assert events[0]["deduplicated_job_id"] == "mine"
    generated = events[1]["deduplicated_job_id"]
    assert generated not in ("", kept.id, "mine")
    assert await queue.get_job(generated) is None
    assert events[0]["deduplication_id"] == "k" and events[0]["replaced"] == "0"


async def test_flow_leaves_emit_their_state(
    queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    async with FlowProducer(connection=redis_url) as flow:
        await flow.add({"name": "p", "queue_name": queue.name, "opts": {"job_id": "p"},
                        "children": [
                            {"name": "c", "queue_name": queue.name, "opts": {"job_id": "c"}},
                            {"name": "u", "queue_name": queue.name,
                             "opts": {"job_id": "u", "priority": 4}}]})

    pairs = _pairs(await _events(redis, queue))

    assert ("waiting", "c") in pairs and ("prioritized", "u") in pairs
    assert ("waiting", "p") not in pairs and ("waiting-children", "p") in pairs


async def test_a_flow_whose_root_exists_emits_duplicated(
    queue: Queue, redis: aioredis.Redis, redis_url: str
) -> None:
    tree = {"name": "p", "queue_name": queue.name, "opts": {"job_id": "p"},
            "children": [{"name": "c", "queue_name": queue.name}]}
    async with FlowProducer(connection=redis_url) as flow:
        await flow.add(tree)
        await redis.delete(queue.keys.events)
        await flow.add(tree)

    assert _pairs(await _events(redis, queue)) == [("duplicated", "p")]
