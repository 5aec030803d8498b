"""Flows when jobs go away: children drained, cleaned or removed on failure
still count for their parent; removing a parent removes its pending children;
retrying an ignored failed child makes the parent wait for it again."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import FlowProducer, Job, JobStateError, Queue
from conveyor.flows import FlowNode
from helpers import StartWorker, unique_queue_name, wait_for


async def _two_children(
    flow: FlowProducer, parent_queue: str, child_queue: str, child_opts: dict[str, Any]
) -> FlowNode:
    return await flow.add({
        "name": "parent", "queue_name": parent_queue, "opts": {"job_id": "parent"},
        "children": [
            {"name": "a", "queue_name": child_queue, "opts": {"job_id": "a", **child_opts}},
            {"name": "b", "queue_name": child_queue, "opts": {"job_id": "b", **child_opts}},
        ],
    })


@pytest.mark.parametrize("child_opts", [{}, {"priority": 3}, {"delay": 60_000}])
async def test_draining_the_children_releases_their_parent(
    flow: FlowProducer, queue: Queue, child_opts: dict[str, Any]
) -> None:
    children = flow.queue(unique_queue_name())
    root = await _two_children(flow, queue.name, children.name, child_opts)

    assert await children.drain(delayed=True) == 2

    assert await root.job.get_state() == "waiting"
    assert (await root.job.get_dependencies())["unprocessed"] == []


async def test_draining_children_of_the_same_queue_releases_their_parent(
    flow: FlowProducer, queue: Queue
) -> None:
    root = await _two_children(flow, queue.name, queue.name, {})

    await queue.drain()

    assert await root.job.get_state() == "waiting"  # released after this batch took the ready
    assert await queue.get_job_counts("waiting-children") == {"waiting-children": 0}


async def test_draining_children_of_the_same_queue_releases_a_prioritized_parent_too(
    flow: FlowProducer, queue: Queue
) -> None:
    root = await flow.add({
        "name": "parent", "queue_name": queue.name, "opts": {"job_id": "parent", "priority": 2},
        "children": [{"name": "a", "queue_name": queue.name, "opts": {"job_id": "a"}}],
    })

    assert await queue.drain() == 1  # the child; its parent is released, not drained

    assert await root.job.get_state() == "prioritized"


@pytest.mark.parametrize("state", ["waiting", "delayed"])
async def test_cleaning_the_children_releases_their_parent(
    flow: FlowProducer, queue: Queue, state: str
) -> None:
    children = flow.queue(unique_queue_name())
    opts = {"delay": 60_000} if state == "delayed" else {}
    root = await _two_children(flow, queue.name, children.name, opts)

    assert sorted(await children.clean(0, 0, state)) == ["a", "b"]

    assert await root.job.get_state() == "waiting"


async def test_cleaning_one_child_leaves_the_parent_waiting_for_the_other(
    flow: FlowProducer, queue: Queue
) -> None:
    children = flow.queue(unique_queue_name())
    root = await _two_children(flow, queue.name, children.name, {})

    assert await children.clean(0, 1, "waiting") == ["b"]  # the tail goes first

    assert await root.job.get_state() == "waiting-children"
    assert (await root.job.get_dependencies())["unprocessed"] == [f"{children.name}:a"]


async def _fail_b(job: Job) -> Any:
    if job.name == "b":
        raise RuntimeError("no data")
    return job.name


async def test_a_child_removed_on_failure_still_counts_for_its_parent(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker
) -> None:
    root = await _two_children(flow, queue_name, queue_name, {"remove_on_fail": True})
    start_worker(_fail_b)

    assert await root.job.wait_until_finished(timeout=10) == "parent"
    assert await flow.queue(queue_name).get_job("b") is None


async def test_a_child_removed_on_failure_fails_its_parent_when_asked(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, queue: Queue
) -> None:
    await _two_children(
        flow, queue_name, queue_name, {"remove_on_fail": True, "fail_parent_on_failure": True}
    )
    start_worker(_fail_b)

    await wait_for(lambda: _state_is(queue, "parent", "failed"))
    assert await queue.get_job("b") is None


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


async def test_a_failed_child_dropped_by_retention_is_no_longer_awaited_by_its_parent(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, queue: Queue
) -> None:
    root = await flow.add({
        "name": "parent", "queue_name": queue_name, "opts": {"job_id": "parent"},
        "children": [
            {"name": "b", "queue_name": queue_name, "opts": {"job_id": "b", "remove_on_fail": 1}},
            {"name": "b", "queue_name": queue_name,
             "opts": {"job_id": "b2", "remove_on_fail": 1, "delay": 300}},
        ],
    })
    start_worker(_fail_b)

    await wait_for(lambda: _state_is(queue, "b2", "failed"))
    assert await queue.get_job("b") is None  # the newest one failed job is kept
    assert (await root.job.get_dependencies())["unprocessed"] == [f"{queue_name}:b2"]


async def _tree(flow: FlowProducer, queue: Queue, children: Queue) -> FlowNode:
    return await flow.add({
        "name": "parent", "queue_name": queue.name, "opts": {"job_id": "parent"},
        "children": [
            {"name": "a", "queue_name": children.name, "opts": {"job_id": "a"}, "children": [
                {"name": "a1", "queue_name": children.name, "opts": {"job_id": "a1"}}]},
            {"name": "b", "queue_name": children.name, "opts": {"job_id": "b", "delay": 60_000}},
            {"name": "c", "queue_name": queue.name, "opts": {"job_id": "c"}},
        ],
    })


async def test_removing_a_parent_removes_its_pending_children_down_the_tree(
    flow: FlowProducer, queue: Queue, start_worker: StartWorker
) -> None:
    children = flow.queue(unique_queue_name())
    root = await _tree(flow, queue, children)
    start_worker(lambda job: job.name)  # runs c, in the parent's queue
    await wait_for(lambda: _state_is(queue, "c", "completed"))

    await root.job.remove()

    assert await queue.get_job("parent") is None
    for gone in ("a", "a1", "b"):
        assert await children.get_job(gone) is None
    assert await children.get_job_counts() == dict.fromkeys(await children.get_job_counts(), 0)
    assert await queue.get_job_state("c") == "completed"  # done: not pending


async def test_remove_children_false_keeps_the_children(
    flow: FlowProducer, queue: Queue
) -> None:
    children = flow.queue(unique_queue_name())
    await _tree(flow, queue, children)

    assert await queue.remove("parent", remove_children=False)

    assert await children.get_job_state("a") == "waiting-children"
    assert await children.get_job_state("b") == "delayed"
    assert await queue.get_job_state("c") == "waiting"


@pytest.mark.parametrize("action", ["remove", "cancel"])
async def test_a_parent_with_a_running_child_is_not_removed_nor_cancelled(
    flow: FlowProducer, queue: Queue, action: str
) -> None:
    children = flow.queue(unique_queue_name())
    await _tree(flow, queue, children)
    await children.scripts.move_to_active(1, "w:", 60_000)  # a1 is running

    with pytest.raises(JobStateError, match="child"):
        await (queue.remove if action == "remove" else queue.cancel)("parent")

    assert await queue.get_job_state("parent") == "waiting-children"
    assert await children.get_job_state("b") == "delayed"


async def test_cancelling_a_waiting_parent_removes_its_pending_children_as_remove_does(
    flow: FlowProducer, queue: Queue
) -> None:
    children = flow.queue(unique_queue_name())
    await _tree(flow, queue, children)

    assert await queue.cancel("parent")

    assert await queue.get_job("parent") is None
    for gone in ("a", "a1", "b"):
        assert await children.get_job(gone) is None
    assert await queue.get_job("c") is None


@pytest.mark.parametrize("bulk", [False, True])
async def test_retrying_an_ignored_failed_child_makes_its_parent_wait_for_it_again(
    flow: FlowProducer, queue_name: str, start_worker: StartWorker, queue: Queue, bulk: bool
) -> None:
    root = await flow.add({
        "name": "parent", "queue_name": queue_name, "opts": {"job_id": "parent"},
        "children": [
            {"name": "a", "queue_name": queue_name, "opts": {"job_id": "a", "delay": 60_000}},
            {"name": "b", "queue_name": queue_name,
             "opts": {"job_id": "b", "ignore_dependency_on_failure": True}},
        ],
    })
    worker = start_worker(_fail_b)
    await wait_for(lambda: _state_is(queue, "b", "failed"))
    await worker.close()
    assert (await root.job.get_dependencies())["unprocessed"] == [f"{queue_name}:a"]

    if bulk:
        assert await queue.retry_jobs("failed") == 1
    else:
        await queue.retry_job("b")

    deps = await root.job.get_dependencies()
    assert deps["unprocessed"] == [f"{queue_name}:a", f"{queue_name}:b"]
    assert deps["ignored"] == {}
    assert await root.job.get_ignored_children_failures() == {}
