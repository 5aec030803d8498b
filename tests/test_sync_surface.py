"""conveyor.sync keeps in step with the asyncio API: every public attribute and
method of Job and Queue has a blocking twin on SyncJob and sync.Queue, with
the same parameter names, unless it is listed below with the reason it has none.

There is no sync FlowProducer: flows are added from asyncio code (or through
the REST API); a sync twin would have to rewrap every FlowNode's jobs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import FlowProducer, Job, Queue, SyncJob, sync
from conveyor.flows import FlowNode
from conveyor.options import OPTION_NAMES

# Members of the asyncio class that have no twin, each for a reason.
JOB_ASYNC_ONLY = {
    "from_fields": "builds a Job from a hash read on the asyncio client",
    "queue": "the asyncio Queue; SyncJob.job.queue reaches it, for use on the loop",
    "moved": "set by move_to_delayed for the worker that runs the job, not for callers",
    "token": "the running attempt's lock token, the worker's business",
}
QUEUE_ASYNC_ONLY = {
    "client": "the asyncio Redis client; it works only on its own event loop",
    "connector": "the asyncio clients' Connector; it works only on its own event loop",
    "keys": "key names for the asyncio scripts and clients (sync.Queue.queue.keys)",
    "scripts": "the asyncio scripts, bound to the asyncio client",
    "pipe_metrics": "queues reads on the caller's asyncio pipeline (the Prometheus scrape)",
    "metrics_snapshot": "reads the replies of pipe_metrics from that pipeline",
}
# Members only the twin has: the way back to the asyncio object.
JOB_SYNC_ONLY = {"job"}
QUEUE_SYNC_ONLY = {"queue"}
# Twins that take **options and pass them on; the asyncio method's keyword-only
# parameters must be the names the twin accepts (None: it forwards any name,
# and the asyncio call refuses an unknown one).
# sync.Queue.add checks names against OPTION_NAMES, which also holds the two
# options only a flow's child uses: the asyncio add() does not take those.
FLOW_ONLY_OPTIONS = {"fail_parent_on_failure", "ignore_dependency_on_failure"}
FORWARDED: dict[str, frozenset[str] | None] = {
    "add": OPTION_NAMES - FLOW_ONLY_OPTIONS,
    "upsert_job_scheduler": None,
}


def public_members(obj: Any, cls: type) -> dict[str, Any]:
    """Public names of an instance: the class's, its slots' and its __dict__'s."""
    names = {n for n in dir(cls) if not n.startswith("_")}
    names |= {n for n in getattr(obj, "__dict__", {}) if not n.startswith("_")}
    return {n: inspect.getattr_static(obj, n) for n in names}


def is_method(member: Any) -> bool:
    return inspect.isfunction(member) or isinstance(member, classmethod | staticmethod)


def parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def check_twin(
    async_obj: Any, sync_obj: Any, async_only: dict[str, str], sync_only: set[str]
) -> None:
    async_members = public_members(async_obj, type(async_obj))
    sync_members = public_members(sync_obj, type(sync_obj))
    missing = set(async_members) - set(sync_members) - set(async_only)
    assert not missing, f"{type(sync_obj).__name__} lacks {sorted(missing)}"
    extra = set(sync_members) - set(async_members) - sync_only
    assert not extra, f"{type(sync_obj).__name__} has {sorted(extra)} that the asyncio API lacks"
    stale = set(async_only) & set(sync_members)
    assert not stale, f"{sorted(stale)} now have twins: take them off the allow-list"

    for name, member in async_members.items():
        if name in async_only:
            continue
        twin = sync_members[name]
        if not is_method(member):
            # A property, or a typed read-through of the asyncio job's attribute.
            read_through = hasattr(twin, "__get__") and not is_method(twin)
            assert isinstance(twin, property) or read_through, (
                f"{name}: expected a property on the twin")
            continue
        assert inspect.isfunction(twin), f"{name}: expected a method on the twin"
        assert not inspect.iscoroutinefunction(twin), f"{name}: the twin must block, not await"
        if name in FORWARDED:
            check_forwarded(name, member, twin)
        else:
            assert parameters(twin) == parameters(member), f"{name}: parameters differ"


def check_forwarded(name: str, member: Any, twin: Any) -> None:
    params = inspect.signature(member).parameters.values()
    keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    positional = [(p.name, p.kind) for p in params if p.kind < p.KEYWORD_ONLY]
    twin_params = parameters(twin)
    assert twin_params[:-1] == positional, f"{name}: positional parameters differ"
    assert twin_params[-1][1] is inspect.Parameter.VAR_KEYWORD, f"{name}: expected **options"
    accepted = FORWARDED[name]
    if accepted is not None:
        assert keywords == accepted, f"{name}: keyword options differ from what the twin accepts"


@pytest.fixture
def queues(redis_url: str, queue_name: str) -> Iterator[tuple[Queue, sync.Queue]]:
    with sync.Queue(queue_name, redis_url) as sync_queue:
        yield sync_queue.queue, sync_queue


def test_sync_queue_has_a_blocking_twin_of_every_queue_method(
    queues: tuple[Queue, sync.Queue],
) -> None:
    check_twin(*queues, QUEUE_ASYNC_ONLY, QUEUE_SYNC_ONLY)


def test_sync_job_has_a_twin_of_every_job_field_and_method(
    queues: tuple[Queue, sync.Queue],
) -> None:
    job = queues[1].add("surface", {"n": 1})
    check_twin(job.job, job, JOB_ASYNC_ONLY, JOB_SYNC_ONLY)


def test_the_twins_are_context_managers_as_the_asyncio_ones_are_async_ones() -> None:
    assert hasattr(Queue, "__aenter__") and hasattr(Queue, "__aexit__")
    assert hasattr(sync.Queue, "__enter__") and hasattr(sync.Queue, "__exit__")


def test_the_allow_lists_name_real_members(queues: tuple[Queue, sync.Queue]) -> None:
    async_queue, sync_queue = queues
    job = sync_queue.add("surface")
    assert set(JOB_ASYNC_ONLY) <= set(public_members(job.job, Job))
    assert set(QUEUE_ASYNC_ONLY) <= set(public_members(async_queue, Queue))
    assert set(public_members(job, SyncJob)) >= JOB_SYNC_ONLY
    assert set(FORWARDED) <= set(public_members(async_queue, Queue))


def test_a_sync_job_reads_its_flow_children_and_parent(redis_url: str, queue_name: str) -> None:
    async def add_flow() -> FlowNode:
        async with FlowProducer(connection=redis_url) as flow:
            return await flow.add({
                "name": "sum", "queue_name": queue_name,
                "children": [{"name": "part", "queue_name": queue_name, "data": 1}],
            })

    root = asyncio.run(add_flow())
    with sync.Queue(queue_name, redis_url) as queue:
        parent = queue.get_job(root.job.id)
        child = queue.get_job(root.children[0].job.id)
        assert parent is not None and child is not None
        assert parent.get_dependencies() == {
            "processed": {}, "unprocessed": [f"{queue_name}:{child.id}"], "ignored": {}
        }
        assert parent.get_children_values() == {}
        assert parent.get_ignored_children_failures() == {}
        assert child.parent_key == queue.queue.keys.job(parent.id)
        assert (child.attempts_started, child.stalled_count) == (0, 0)
        assert (child.delay, child.priority, child.corrupt) == (0, 0, None)
