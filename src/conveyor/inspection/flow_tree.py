"""A job's place in its flow, for the dashboard's tree: its ancestors up to the
root, the job, and one page of its children, each with its state now, how many
children it has in turn, and (for a child) the value its parent reads from it
(``Job.get_children_values``) or the failure it ignores.

Bounded: at most :data:`MAX_ANCESTORS` levels up and ``count`` children
(at most :data:`MAX_TREE_PAGE`) per call; a node's own children are counted,
not read (its page shows them). A node costs one state script call and one
pipelined read, all nodes of a page at once.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .._render import AS_IS, View
from .._stream import text
from ..errors import JobNotFoundError
from ..keys import parse_job_key, validate_job_id
from ..options import check_int

if TYPE_CHECKING:
    from .inspector import Inspector

__all__ = ["MAX_ANCESTORS", "MAX_TREE_PAGE", "JobTree", "TreeNode", "read_tree"]

#: Levels of parents shown above a job (a deeper flow shows its nearest ones).
MAX_ANCESTORS = 20
#: The most children one call reads.
MAX_TREE_PAGE = 200


@dataclass(frozen=True, slots=True)
class TreeNode(View):
    """One job of a flow: its state now and how many children it has."""

    queue: str
    id: str
    #: None when the job is gone (removed or cleaned since the flow was made).
    name: str | None
    state: str | None
    children_total: int
    #: A completed child's return value as its parent reads it (else None).
    value: Any = field(default=None, metadata=AS_IS)
    #: A child that failed for good and whose parent ignores it: the reason.
    ignored_failure: str | None = None


@dataclass(frozen=True, slots=True)
class JobTree(View):
    """Ancestors (root first), the job, and children ``start`` .. ``start + count``
    of ``children_total``, ordered by queue and id (numbers by value)."""

    ancestors: list[TreeNode]
    job: TreeNode
    children: list[TreeNode]
    children_total: int
    start: int
    count: int


async def read_tree(
    inspector: Inspector, name: str, job_id: str, *, start: int = 0, count: int = 50
) -> JobTree:
    """The tree around job ``job_id`` of queue ``name`` (JobNotFoundError if none)."""
    job_id = validate_job_id(job_id)
    check_int("start", start, 0)
    check_int("count", count, 1, MAX_TREE_PAGE)
    queue = inspector.queue(name)
    job = await queue.get_job(job_id)
    if job is None:
        raise JobNotFoundError(name, job_id)
    ancestors: list[tuple[str, str]] = []
    parent = job.parent_key
    while parent and len(ancestors) < MAX_ANCESTORS:
        _, parent_queue, parent_id = parse_job_key(parent)
        ancestors.append((parent_queue, parent_id))
        parent_job = await inspector.queue(parent_queue).get_job(parent_id)
        parent = parent_job.parent_key if parent_job is not None else None
    ancestors.reverse()

    k = queue.keys
    async with queue.client.pipeline(transaction=True) as pipe:
        pipe.smembers(k.dependencies(job_id))
        pipe.hgetall(k.processed(job_id))
        pipe.hgetall(k.failed_children(job_id))
        pending, processed, ignored = await pipe.execute()
    values = {text(key): raw for key, raw in processed.items()}
    failures = {text(key): text(raw) for key, raw in ignored.items()}
    keys = sorted({text(key) for key in pending} | set(values) | set(failures), key=_natural)
    page = [parse_job_key(key)[1:] for key in keys[start:start + count]]

    nodes = await asyncio.gather(
        *(_node(inspector, q, i) for q, i in [*ancestors, (name, job_id), *page])
    )
    # The page's values are read again after the states: a child finishing between
    # the two reads then shows its older state without the value, never "completed"
    # without its value (the script that completes a child writes both at once).
    page_keys = keys[start:start + count]
    if page_keys:
        async with queue.client.pipeline(transaction=True) as pipe:
            pipe.hmget(k.processed(job_id), page_keys)
            pipe.hmget(k.failed_children(job_id), page_keys)
            value_list, failure_list = await pipe.execute()
        values = {key: raw for key, raw in zip(page_keys, value_list, strict=True) if raw}
        failures = {key: text(raw) for key, raw in zip(page_keys, failure_list, strict=True)
                    if raw}
    children = []
    for key, node in zip(page_keys, nodes[len(ancestors) + 1:], strict=True):
        raw = values.get(key) if node.state == "completed" else None
        children.append(TreeNode(
            node.queue, node.id, node.name, node.state, node.children_total,
            value=None if raw is None else orjson.loads(raw),
            ignored_failure=failures.get(key) if node.state == "failed" else None,
        ))
    return JobTree(list(nodes[:len(ancestors)]), nodes[len(ancestors)], children, len(keys),
                   start, count)


async def _node(inspector: Inspector, name: str, job_id: str) -> TreeNode:
    queue = inspector.queue(name)
    k = queue.keys
    async with queue.client.pipeline(transaction=False) as pipe:
        pipe.hget(k.job(job_id), "name")
        pipe.scard(k.dependencies(job_id))
        pipe.hlen(k.processed(job_id))
        pipe.hlen(k.failed_children(job_id))
        job_name, pending, done, ignored = await pipe.execute()
    state = await queue.get_job_state(job_id) if job_name is not None else None
    return TreeNode(name, job_id, None if job_name is None else text(job_name),
                    None if state is None else str(state), int(pending) + int(done) + int(ignored))


def _natural(key: str) -> tuple[Any, ...]:
    """Sort key: numbers by value (job 10 after job 9)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", key))
