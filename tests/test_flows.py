"""Flows: a parent job waits in waiting-children until its children completed,
then runs and reads their return values; child failures fail the parent, are
ignored, or keep it waiting; the whole tree is added atomically."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from conveyor import FlowProducer, Job, JobStateError, Queue, ValidationError, Worker
from conveyor.flows import FlowNode
from helpers import StartWorker, running, unique_queue_name, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


async def _state_is(flow: FlowProducer, queue_name: str, job_id: str, state: str) -> bool:
    return await flow.queue(queue_name).get_job_state(job_id) == state


async def _children_values_or_double(job: Job) -> Any:
    """Leaves return twice their data; parents return their children's values."""
    values = await job.get_children_values()
    return values if values else job.data * 2


async def test_parent_runs_after_all_children_completed_and_reads_their_values(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker
) -> None:
    ran: list[str] = []

    async def process(job: Job) -> Any:
        ran.append(job.name)
        return await _children_values_or_double(job)

    root = await flow.add({
        "name": "sum", "queue_name": queue_name, "data": None,
        "children": [
            {"name": "part", "queue_name": queue_name, "data": 1},
            {"name": "part", "queue_name": queue_name, "data": 20},
            {"name": "part", "queue_name": queue_name, "data": 300},
        ],
    })
    assert root.state == "waiting-children"
    assert [child.state for child in root.children] == ["waiting"] * 3
    parent = root.job
    assert await parent.get_state() == "waiting-children"
    assert (await parent.get_dependencies())["unprocessed"] == sorted(
        f"{queue_name}:{c.job.id}" for c in root.children
    )

    start_worker(process, concurrency=3)
    result = await parent.wait_until_finished(timeout=10)

    assert ran[-1] == "sum" and ran.count("part") == 3
    assert result == {
        f"{queue_name}:{child.job.id}": 2 * child.job.data for child in root.children
    }
    deps = await parent.get_dependencies()
    assert deps["unprocessed"] == [] and deps["ignored"] == {}
    assert deps["processed"] == result
    child = await flow.queue(queue_name).get_job(root.children[0].job.id)
    assert child is not None and child.parent_key == flow.queue(queue_name).keys.job(parent.id)


async def test_three_levels_run_leaves_first(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker
) -> None:
    ran: list[str] = []

    async def process(job: Job) -> Any:
        ran.append(job.id)
        return await _children_values_or_double(job)

    root = await flow.add({
        "name": "root", "queue_name": queue_name, "opts": {"job_id": "root"},
        "children": [
            {"name": "mid", "queue_name": queue_name, "opts": {"job_id": "mid"}, "children": [
                {"name": "leaf", "queue_name": queue_name, "data": 1, "opts": {"job_id": "a"}},
                {"name": "leaf", "queue_name": queue_name, "data": 2, "opts": {"job_id": "b"}},
            ]},
            {"name": "leaf", "queue_name": queue_name, "data": 5, "opts": {"job_id": "c"}},
        ],
    })
    assert [c.state for c in root.children] == ["waiting-children", "waiting"]

    start_worker(process, concurrency=4)
    result = await root.job.wait_until_finished(timeout=10)

    assert sorted(ran) == ["a", "b", "c", "mid", "root"]
    assert ran.index("mid") > max(ran.index("a"), ran.index("b"))
    assert ran[-1] == "root"
    assert result == {
        f"{queue_name}:mid": {f"{queue_name}:a": 2, f"{queue_name}:b": 4},
        f"{queue_name}:c": 10,
    }


async def test_children_in_other_queues(flow: FlowProducer, redis_url: str) -> None:
    # One hash tag: on a cluster the queues of a flow share a slot.
    reports = unique_queue_name()
    fetchers, renderers = f"{{{reports}}}fetchers", f"{{{reports}}}renderers"

    async def fetch(job: Job) -> Any:
        return {"rows": job.data["n"]}

    async def render(job: Job) -> Any:
        return f"chart of {job.data}"

    async def report(job: Job) -> Any:
        return await job.get_children_values()

    root = await flow.add({
        "name": "report", "queue_name": reports, "opts": {"job_id": "may"},
        "children": [
            {"name": "fetch", "queue_name": fetchers, "data": {"n": 3}, "opts": {"job_id": "f"}},
            {"name": "render", "queue_name": renderers, "data": "sales",
             "opts": {"job_id": "r"}},
        ],
    })
    assert [c.queue_name for c in root.children] == [fetchers, renderers]

    async with (
        running(Worker(reports, report, connection=redis_url)),
        running(Worker(fetchers, fetch, connection=redis_url)),
    ):
            await wait_for(lambda: _state_is(flow, fetchers, "f", "completed"))
            assert await root.job.get_state() == "waiting-children"  # render still to do
            async with running(Worker(renderers, render, connection=redis_url)):
                result = await root.job.wait_until_finished(timeout=10)

    assert result == {f"{fetchers}:f": {"rows": 3}, f"{renderers}:r": "chart of sales"}


async def _failing_child_flow(
    flow: FlowProducer, queue_name: str, child_opts: dict[str, Any], grandparent: bool = False
) -> FlowNode:
    node: dict[str, Any] = {
        "name": "parent", "queue_name": queue_name, "opts": {"job_id": "parent"},
        "children": [
            {"name": "ok", "queue_name": queue_name, "data": 1, "opts": {"job_id": "ok"}},
            {"name": "bad", "queue_name": queue_name, "data": 7,
             "opts": {"job_id": "bad", **child_opts}},
        ],
    }
    if grandparent:
        node["opts"]["fail_parent_on_failure"] = True
        node = {"name": "top", "queue_name": queue_name, "opts": {"job_id": "top"},
                "children": [node]}
    return await flow.add(node)


async def _fail_bad(job: Job) -> Any:
    if job.name == "bad":
        raise RuntimeError("no data")
    return await _children_values_or_double(job)


async def test_fail_parent_on_failure_fails_the_parent_and_up_the_tree(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, queue: Queue
) -> None:
    await _failing_child_flow(flow, queue_name, {"fail_parent_on_failure": True},
                              grandparent=True)
    start_worker(_fail_bad)

    await wait_for(lambda: _state_is(flow, queue_name, "top", "failed"))

    parent = await queue.get_job("parent")
    assert parent is not None
    assert await parent.get_state() == "failed"
    assert parent.failed_reason == f"child {queue_name}:bad failed: RuntimeError: no data"
    top = await queue.get_job("top")
    assert top is not None
    assert top.failed_reason == f"child {queue_name}:parent failed: {parent.failed_reason}"
    assert top.processed_on is None and parent.processed_on is None  # never ran
    assert await queue.get_job_state("ok") == "completed"


async def test_ignore_dependency_on_failure_lets_the_parent_run(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, queue: Queue
) -> None:
    root = await _failing_child_flow(flow, queue_name, {"ignore_dependency_on_failure": True})
    start_worker(_fail_bad)

    result = await root.job.wait_until_finished(timeout=10)

    assert result == {f"{queue_name}:ok": 2}
    assert await root.job.get_ignored_children_failures() == {
        f"{queue_name}:bad": "RuntimeError: no data"
    }
    assert await queue.get_job_state("bad") == "failed"


async def test_by_default_a_failed_child_keeps_the_parent_waiting_until_retried(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, queue: Queue
) -> None:
    root = await _failing_child_flow(flow, queue_name, {})
    healed = False

    async def process(job: Job) -> Any:
        if job.name == "bad" and not healed:
            raise RuntimeError("no data")
        return await _children_values_or_double(job)

    start_worker(process)
    await wait_for(lambda: _state_is(flow, queue_name, "bad", "failed"))
    await wait_for(lambda: _state_is(flow, queue_name, "ok", "completed"))
    assert await root.job.get_state() == "waiting-children"
    assert (await root.job.get_dependencies())["unprocessed"] == [f"{queue_name}:bad"]

    healed = True
    await queue.retry_job("bad")
    result = await root.job.wait_until_finished(timeout=10)

    assert result == {f"{queue_name}:ok": 2, f"{queue_name}:bad": 14}


async def test_get_flow_shows_the_tree_with_states(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, redis_url: str
) -> None:
    other = f"{{{queue_name}}}other"  # the slot of queue_name's keys (for a cluster)
    await flow.add({
        "name": "root", "queue_name": queue_name, "opts": {"job_id": "root"},
        "children": [
            {"name": "mid", "queue_name": queue_name, "opts": {"job_id": "mid"},
             "children": [{"name": "leaf", "queue_name": other, "data": 1,
                           "opts": {"job_id": "leaf"}}]},
            {"name": "later", "queue_name": queue_name, "opts": {"job_id": "later",
                                                                "delay": 60_000}},
        ],
    })

    def shape(node: FlowNode) -> Any:
        return (f"{node.queue_name}:{node.job.id}", node.state,
                [shape(child) for child in node.children])

    tree = await flow.get_flow(queue_name, "root")
    assert tree is not None
    assert shape(tree) == (f"{queue_name}:root", "waiting-children", [
        (f"{queue_name}:later", "delayed", []),
        (f"{queue_name}:mid", "waiting-children", [(f"{other}:leaf", "waiting", [])]),
    ])
    shallow = await flow.get_flow(queue_name, "root", depth=1, max_children=1)
    assert shallow is not None
    assert shape(shallow) == (f"{queue_name}:root", "waiting-children", [
        (f"{queue_name}:later", "delayed", []),
    ])
    assert await flow.get_flow(queue_name, "nope") is None

    async with running(Worker(other, _children_values_or_double, connection=redis_url)):
        start_worker(_children_values_or_double)
        await wait_for(lambda: _state_is(flow, queue_name, "mid", "completed"))
    tree = await flow.get_flow(queue_name, "root")
    assert tree is not None
    assert shape(tree) == (f"{queue_name}:root", "waiting-children", [
        (f"{queue_name}:later", "delayed", []),
        (f"{queue_name}:mid", "completed", [(f"{other}:leaf", "completed", [])]),
    ])


@pytest.mark.parametrize(
    ("bad_tree", "field"),
    [
        ({"children": [{}, {"name": "c", "queue_name": "x:y"}]}, "children[1].queue_name"),
        ({"children": [{}, {"name": "c", "queue_name": "ok", "children": [
            {"name": "g", "queue_name": "ok", "opts": {"delay": -1}}]}]},
         "children[1].children[0].opts.delay"),
        ({"children": [{"name": "c", "queue_name": "ok", "data": {1, 2}}]}, "children[0].data"),
        ({"children": [{"name": "c"}]}, "children[0].queue_name"),
        ({"children": [{"queue_name": "ok"}]}, "children[0].name"),
        ({"children": [{"name": "c", "queue_name": "ok", "color": 1}]}, "children[0].color"),
        ({"children": [{"name": "c", "queue_name": "ok",
                        "opts": {"fail_parent_on_failure": "yes"}}]},
         "children[0].opts.fail_parent_on_failure"),
        ({"children": [{"name": "c", "queue_name": "ok", "opts": {"job_id": "same"}},
                       {"name": "c", "queue_name": "ok", "opts": {"job_id": "same"}}]},
         "children[1].opts.job_id"),
        ({"children": "abc"}, "children"),
    ],
)
async def test_an_invalid_node_anywhere_writes_nothing(
    flow: FlowProducer, queue_name: str, redis: aioredis.Redis, bad_tree: dict[str, Any],
    field: str,
) -> None:
    good_child = {"name": "c0", "queue_name": queue_name}
    children = [good_child if c == {} else c for c in bad_tree["children"]] \
        if isinstance(bad_tree["children"], list) else bad_tree["children"]
    tree = {"name": "root", "queue_name": queue_name, "children": children}

    with pytest.raises(ValidationError) as caught:
        await flow.add(tree)

    assert caught.value.field == field
    assert await redis.keys("*") == []


async def test_add_bulk_names_the_tree_and_writes_nothing(
    flow: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    good = {"name": "a", "queue_name": queue_name}
    with pytest.raises(ValidationError) as caught:
        await flow.add_bulk([good, {"name": "b", "queue_name": queue_name, "opts": {"x": 1}}])
    assert caught.value.field == "trees[1].opts.x"
    assert await redis.keys("*") == []

    roots = await flow.add_bulk([good, {**good, "children": [good]}])
    assert [r.state for r in roots] == ["waiting", "waiting-children"]
    assert [len(r.children) for r in roots] == [0, 1]


async def test_an_existing_child_id_refuses_the_flow_and_writes_nothing(
    flow: FlowProducer, queue: Queue, queue_name: str, redis: aioredis.Redis
) -> None:
    await queue.add("taken", job_id="c1")
    keys_before = sorted(await redis.keys("*"))

    with pytest.raises(JobStateError, match="children\\[0\\]"):
        await flow.add({"name": "p", "queue_name": queue_name, "children": [
            {"name": "c", "queue_name": queue_name, "opts": {"job_id": "c1"}}]})

    assert sorted(await redis.keys("*")) == keys_before
    assert await queue.get_job_counts("waiting", "waiting-children") == {
        "waiting": 1, "waiting-children": 0,
    }


async def test_adding_a_flow_whose_root_exists_returns_the_existing_flow(
    flow: FlowProducer, queue: Queue, queue_name: str
) -> None:
    tree = {"name": "p", "queue_name": queue_name, "opts": {"job_id": "p"},
            "children": [{"name": "c", "queue_name": queue_name, "opts": {"job_id": "c"}}]}
    first = await flow.add(tree)
    again = await flow.add({**tree, "data": "other"})

    assert again.job.id == "p" and again.job.data is None
    assert [(c.job.id, c.state) for c in again.children] == [("c", "waiting")]
    assert again.state == first.state == "waiting-children"
    assert await queue.get_job_counts("waiting", "waiting-children") == {
        "waiting": 1, "waiting-children": 1,
    }


async def test_removing_the_last_pending_child_releases_the_parent(
    flow: FlowProducer, queue: Queue, queue_name: str
) -> None:
    root = await flow.add({"name": "p", "queue_name": queue_name, "children": [
        {"name": "c", "queue_name": queue_name, "opts": {"job_id": "c"}}]})

    assert await queue.remove("c")

    assert await root.job.get_state() == "waiting"


async def test_a_released_parent_keeps_its_own_delay(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker
) -> None:
    root = await flow.add({
        "name": "p", "queue_name": queue_name, "opts": {"delay": 60_000},
        "children": [{"name": "c", "queue_name": queue_name, "data": 1, "opts": {"job_id": "c"}}],
    })
    start_worker(_children_values_or_double)

    await wait_for(lambda: _state_is(flow, queue_name, "c", "completed"))
    await wait_for(lambda: _state_is(flow, queue_name, root.job.id, "delayed"))
    assert await root.job.get_children_values() == {f"{queue_name}:c": 2}


async def test_cancelling_a_waiting_child_lets_the_parent_run(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker
) -> None:
    root = await flow.add({
        "name": "parent", "queue_name": queue_name,
        "children": [{"name": "keep", "queue_name": queue_name},
                     {"name": "drop", "queue_name": queue_name, "opts": {"delay": 60_000}}],
    })
    dropped = root.children[1].job
    assert await flow.queue(queue_name).cancel(dropped.id, "not needed") is True
    start_worker(lambda job: job.name)
    assert await root.job.wait_until_finished(timeout=10) == "parent"


async def test_a_child_failed_by_stalling_fails_its_parent(
    flow: FlowProducer, queue_name: str, redis: aioredis.Redis
) -> None:
    root = await flow.add({
        "name": "parent", "queue_name": queue_name,
        "children": [{"name": "child", "queue_name": queue_name,
                      "opts": {"fail_parent_on_failure": True}}],
    })
    queue = flow.queue(queue_name)
    await queue.scripts.move_to_active(1, "dead-worker:", 1)  # taken, then its worker dies
    await redis.zadd(queue.keys.active, {root.children[0].job.id: 0})  # the lock lapsed
    await queue.scripts.move_stalled_jobs(1000, 0, "-1:-1")
    assert await root.job.get_state() == "failed"
    await root.job.refresh()
    assert root.job.failed_reason is not None and "stalled" in root.job.failed_reason


async def test_an_empty_job_id_in_a_flow_means_generate_one(
    flow: FlowProducer, queue_name: str
) -> None:
    root = await flow.add({
        "name": "parent", "queue_name": queue_name, "opts": {"job_id": ""},
        "children": [
            {"name": "a", "queue_name": queue_name, "opts": {"job_id": ""}},
            {"name": "b", "queue_name": queue_name, "opts": {"job_id": ""}},
        ],
    })
    ids = [root.job.id, *(child.job.id for child in root.children)]
    assert all(ids) and len(set(ids)) == 3
