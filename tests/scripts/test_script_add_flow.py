"""add_flow.lua, and includes/flows.lua as move_to_finished and remove_job run it:
where the nodes of a flow land, the all-or-nothing checks of given ids, and what
a child finishing does to its parent's keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from script_support import KEEP_ALL, QueueState, finish, outcome, s, take

from conveyor import Queue

#: A node: (parent index 1-based or 0, queue index, job id, name, delay, priority, lifo, opts)
Node = tuple[int, int, str, str, int, int, bool, dict[str, Any]]


def node(
    parent: int, queue: int = 1, job_id: str = "", name: str = "job", *, delay: int = 0,
    priority: int = 0, lifo: bool = False, **opts: Any,
) -> Node:
    return (parent, queue, job_id, name, delay, priority, lifo, opts)


async def add_flow(queues: Sequence[Queue], nodes: Sequence[Node]) -> list[Any]:
    """add_flow with the given queues and nodes (data = the node's name as JSON)."""
    bases = [q.keys.base for q in queues]
    args: list[Any] = [10_000, len(bases), *bases, len(nodes)]
    for parent, qi, job_id, name, delay, priority, lifo, opts in nodes:
        args.extend((parent, qi, job_id, name, json.dumps(name), json.dumps(opts), delay,
                     priority, int(lifo), 1))
    args.extend((0, ""))  # no answered calls, no call token (includes/calls.lua)
    reply: list[Any] = s(await queues[0].scripts.call("add_flow", [b + "id" for b in bases], args))
    return reply


async def members(state: QueueState, key: str) -> set[str]:
    return {s(m) for m in await state.redis.smembers(key)}


async def hash_of(state: QueueState, key: str) -> dict[str, str]:
    return {s(k): s(v) for k, v in (await state.redis.hgetall(key)).items()}


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(f"q-{uuid.uuid4().hex[:8]}", redis_url) as q:
        yield q


@pytest.fixture
def other_state(redis: aioredis.Redis, other: Queue) -> QueueState:
    return QueueState(redis, other)


async def test_parent_waits_for_children_in_two_queues(
    queue: Queue, other: Queue, state: QueueState, other_state: QueueState
) -> None:
    before = await state.now()
    ts, ids, created = await add_flow(
        [queue, other], [node(0, 1, name="p"), node(1, 1, name="c1"), node(1, 2, name="c2")]
    )

    assert (ids, created) == (["1", "2", "1"], [1, 1, 1])
    assert before <= int(ts) <= await state.now()
    assert await state.job("1") == {"name": "p", "data": '"p"', "opts": "{}", "ts": str(ts)}
    assert await state.zset(queue.keys.state_key("waiting-children")) == [("1", float(ts))]
    assert await members(state, queue.keys.dependencies("1")) == {
        queue.keys.job("2"), other.keys.job("1"),
    }
    assert (await state.job("2"))["par"] == queue.keys.job("1")
    assert (await other_state.job("1"))["par"] == queue.keys.job("1")
    assert await state.wait() == ["2"]
    assert await other_state.wait() == ["1"]
    assert (await state.marker())["0"] == 0.0 and (await other_state.marker())["0"] == 0.0
    assert await state.event_names() == [("added", "1"), ("added", "2"),
                                         ("waiting-children", "1")]
    assert await other_state.event_names() == [("added", "1")]
    assert await queue.get_job_state("1") == "waiting-children"


async def test_leaves_land_as_their_options_say(queue: Queue, state: QueueState) -> None:
    await queue.pause()
    await state.clear_marker()
    ts, ids, _ = await add_flow([queue], [
        node(0, job_id="p"), node(1, job_id="d", delay=5000), node(1, job_id="h", priority=3),
        node(1, job_id="f"), node(1, job_id="l", lifo=True),
    ])

    assert ids == ["p", "d", "h", "f", "l"]
    assert await state.delayed() == [("d", float(int(ts) + 5000))]
    assert [i for i, _ in await state.prioritized()] == ["h"]
    assert await state.wait() == ["l", "f"]
    assert await state.marker() == {"d": float(int(ts) + 5000)}  # paused: no "0"


async def test_an_existing_child_id_writes_nothing(
    queue: Queue, other: Queue, state: QueueState, other_state: QueueState
) -> None:
    await add_flow([other], [node(0, job_id="taken")])
    before = (await state.snapshot(), await other_state.snapshot())

    reply = await add_flow([queue, other], [node(0, 1), node(1, 1), node(1, 2, "taken")])

    assert reply == [-1, 3]
    assert (await state.snapshot(), await other_state.snapshot()) == before


async def test_an_existing_root_leaves_its_tree_alone(queue: Queue, state: QueueState) -> None:
    await add_flow([queue], [node(0, job_id="root"), node(1, job_id="c")])
    before = await state.snapshot()

    _, ids, created = await add_flow(
        [queue], [node(0, job_id="root"), node(1, job_id="c"), node(1), node(0, job_id="new")]
    )

    assert (ids, created) == (["root", "", "", "new"], [0, 0, 0, 1])
    assert await state.wait() == ["c", "new"]
    changed = ("events", "wait", "job:new")
    after = await state.snapshot()
    assert {k: v for k, v in after.items() if not k.endswith(changed)} == {
        k: v for k, v in before.items() if not k.endswith(changed)
    }


async def test_generated_ids_skip_ids_given_in_the_same_flow(
    queue: Queue, state: QueueState
) -> None:
    _, ids, _ = await add_flow([queue], [node(0), node(1, job_id="1"), node(1)])

    assert ids == ["2", "1", "3"]
    assert await members(state, queue.keys.dependencies("2")) == {
        queue.keys.job("1"), queue.keys.job("3"),
    }


async def _flow_taken(queue: Queue, child_opts: dict[str, Any]) -> tuple[str, str]:
    """A parent p with children ok and bad (bad has ``child_opts``), both taken;
    returns the tokens of ok and bad."""
    await add_flow([queue], [node(0, job_id="p"), node(1, job_id="ok"),
                             node(1, job_id="bad", **child_opts)])
    taken = dict(await take(queue, 2))
    return taken["ok"]["tok"], taken["bad"]["tok"]


async def test_completed_children_release_the_parent(queue: Queue, state: QueueState) -> None:
    ok, bad = await _flow_taken(queue, {})
    parent = queue.keys.job("p")

    await finish(queue, outcome("ok", ok, "c", '{"v":1}', parent=parent))
    assert await queue.get_job_state("p") == "waiting-children"
    await state.clear_marker()
    await state.clear_events()
    await finish(queue, outcome("bad", bad, "c", "2", parent=parent))

    assert await hash_of(state, queue.keys.processed("p")) == {
        queue.keys.job("ok"): '{"v":1}', queue.keys.job("bad"): "2",
    }
    assert await state.redis.exists(queue.keys.dependencies("p")) == 0
    assert await state.zids(queue.keys.state_key("waiting-children")) == []
    assert await state.wait() == ["p"]
    assert (await state.marker())["0"] == 0.0
    assert ("waiting", "p") in await state.event_names()


async def test_fail_parent_on_failure_moves_the_parent_to_failed(
    queue: Queue, state: QueueState
) -> None:
    _, bad = await _flow_taken(queue, {"fail_parent_on_failure": True})

    await finish(queue, outcome("bad", bad, "f", "Boom: x", retry_delay=-1,
                                parent=queue.keys.job("p")))

    assert [i for i, _ in await state.failed()] == ["bad", "p"]
    assert await state.zids(queue.keys.state_key("waiting-children")) == []
    stored = await state.job("p")
    assert stored["fr"] == f"child {queue.name}:bad failed: Boom: x" and "fon" in stored
    failed = [e for e in await state.events() if e["event"] == "failed"]
    assert [(e["job_id"], e["failed_reason"]) for e in failed] == [
        ("bad", "Boom: x"), ("p", stored["fr"]),
    ]


async def test_ignored_failure_counts_as_done(queue: Queue, state: QueueState) -> None:
    ok, bad = await _flow_taken(queue, {"ignore_dependency_on_failure": True})
    parent = queue.keys.job("p")

    await finish(queue, outcome("bad", bad, "f", "Boom: x", retry_delay=-1, parent=parent),
                 outcome("ok", ok, "c", "1", parent=parent))

    assert await hash_of(state, queue.keys.failed_children("p")) == {
        queue.keys.job("bad"): "Boom: x"
    }
    assert await state.wait() == ["p"]


async def test_a_failed_child_without_options_changes_nothing_of_the_parent(
    queue: Queue, state: QueueState
) -> None:
    _, bad = await _flow_taken(queue, {})
    parent_keys = [queue.keys.job("p"), queue.keys.dependencies("p"),
                   queue.keys.state_key("waiting-children")]
    before = {k: v for k, v in (await state.snapshot()).items() if k in parent_keys}

    await finish(queue, outcome("bad", bad, "f", "Boom", retry_delay=-1,
                                parent=queue.keys.job("p")))

    after = {k: v for k, v in (await state.snapshot()).items() if k in parent_keys}
    assert after == before and len(before) == 3


async def test_a_child_of_a_removed_parent_completes_alone(
    queue: Queue, state: QueueState
) -> None:
    ok, _ = await _flow_taken(queue, {})
    assert await queue.remove("p", remove_children=False)

    statuses, _, _ = await finish(queue, outcome("ok", ok, "c", "1", keep=KEEP_ALL,
                                                 parent=queue.keys.job("p")))

    assert statuses == [1]
    assert await state.exists("p") is False
    assert await state.redis.exists(queue.keys.processed("p"),
                                    queue.keys.dependencies("p")) == 0


async def test_plain_jobs_pay_nothing_for_flows(queue: Queue, redis: aioredis.Redis) -> None:
    n = 20
    await queue.add_bulk([{"name": "job", "data": i} for i in range(n)])
    taken = await take(queue, n)
    await redis.config_resetstat()

    await finish(queue, *(outcome(j, f["tok"], "c", "null") for j, f in taken))

    # What a child's outcome costs (includes/flows.lua) is not paid by plain jobs.
    stats = await redis.info("commandstats")
    assert not {"cmdstat_srem", "cmdstat_scard", "cmdstat_exists"} & set(stats)


async def test_a_flow_run_again_with_its_token_returns_its_first_reply_and_adds_nothing(
    queue: Queue, state: QueueState
) -> None:
    """What redis-py's resend after a lost reply does (includes/calls.lua)."""
    bases = [queue.keys.base]
    args: list[Any] = [10_000, 1, *bases, 2]
    for parent, qi, job_id, name, delay, priority, lifo, opts in (node(0), node(1)):
        args.extend((parent, qi, job_id, name, json.dumps(name), json.dumps(opts), delay,
                     priority, int(lifo), 1))
    args.extend((0, "c-1"))  # no answered calls; this call's token
    keys = [b + "id" for b in bases]
    first = s(await queue.scripts.call("add_flow", keys, args))
    before = await state.snapshot()

    again = s(await queue.scripts.call("add_flow", keys, args))

    assert again == first
    assert first[1:] == [["1", "2"], [1, 1]]
    assert await state.snapshot() == before
