"""Flows: trees of jobs where a parent runs only after its children completed.

::

    flow = FlowProducer(connection=url)
    node = await flow.add({
        "name": "render-report", "queue_name": "reports", "data": {"month": "2024-05"},
        "children": [
            {"name": "fetch", "queue_name": "fetchers", "data": {"src": "sales"}},
            {"name": "fetch", "queue_name": "fetchers", "data": {"src": "costs"},
             "opts": {"fail_parent_on_failure": True}},
        ],
    })

The whole tree is written by one script (``add_flow.lua``): all of it or
nothing. A node with children waits in its queue's ``waiting-children`` state;
when its last child completes it moves to waiting (or delayed, prioritized, as
its own options say) and its processor reads the children's return values with
:meth:`Job.get_children_values`. Children may be in other queues than their
parent, on the same Redis. On a Redis Cluster the queues of one flow must
share a hash slot, as one script writes them all: give them one hash tag
(``{shop}orders``, ``{shop}emails``); a flow across slots is refused before
anything is written.

A child that fails for good (no attempts left):

- with ``fail_parent_on_failure``: the parent fails too, its ``failed_reason``
  naming the child, and so on up the tree while parents have the option;
- with ``ignore_dependency_on_failure``: it counts as done; the parent reads
  the failure with :meth:`Job.get_ignored_children_failures`;
- with neither: the parent keeps waiting. Retrying the child
  (``Queue.retry_job``) can still complete it; removing it lets the parent go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._cluster import ConnectorOwner, connect
from ._prepare import prepare_job
from ._scripts import Durability, FlowJob
from ._stream import text
from .connection import Connection
from .errors import JobStateError, ValidationError
from .job import Dependencies, Job
from .keys import JobState, QueueKeys, parse_job_key, tagged, validate_prefix
from .options import Duration, JobOptions, check_int, validate_queue_name
from .queue import DEFAULT_MAX_DATA_BYTES, Queue

__all__ = ["Dependencies", "FlowNode", "FlowProducer"]

_NODE_KEYS = frozenset({"name", "queue_name", "data", "opts", "children"})
#: Options a node of a flow may not have (add_flow does not implement them).
_UNSUPPORTED = ("deduplication", "group")


@dataclass(slots=True)
class FlowNode:
    """One job of a flow, its state (when read) and its children's nodes."""

    job: Job
    state: JobState | None
    children: list[FlowNode] = field(default_factory=list)

    @property
    def queue_name(self) -> str:
        return self.job.queue.name

    def __repr__(self) -> str:
        return (f"<FlowNode {self.job.queue.name}:{self.job.id} {self.job.name!r} "
                f"{self.state} children={len(self.children)}>")


@dataclass(slots=True)
class _Flat:
    """A validated node, flattened: what add_flow needs, and what to build the Job from."""

    queue: Queue
    parent: int  # 1-based index of the parent node, 0 for a root
    name: str
    data: Any
    data_json: bytes
    opts: JobOptions
    opts_json: bytes
    has_children: bool


class FlowProducer(ConnectorOwner):
    """Adds flows (trees of parent and child jobs) and reads them back.

    ``connection`` is a URL, a ``redis.asyncio.Redis`` (used as is, not closed
    by us) or ``None`` for ``$CONVEYOR_REDIS_URL`` / ``redis://localhost:6379/0``.
    Every queue of a flow is on this one connection, under ``prefix``; on a
    Redis Cluster (see :class:`~conveyor.Connector`) they must share a hash slot.
    ``durable``/``durable_timeout``: as :class:`Queue`'s, for every flow added
    (a flow is acknowledged once that many replicas hold it).
    """

    def __init__(
        self,
        connection: Connection = None,
        *,
        prefix: str = "conveyor",
        events_maxlen: int = 10_000,
        max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
        durable: int = 0,
        durable_timeout: Duration = 1000,
    ) -> None:
        self.prefix = validate_prefix(prefix)
        Durability.parse(durable, durable_timeout)  # refused before a client is made
        self._durable = (durable, durable_timeout)
        self.connector, self._owns_connector = connect(connection)
        self.events_maxlen = events_maxlen
        self.max_data_bytes = max_data_bytes
        self._queues: dict[tuple[str, str], Queue] = {}

    def __repr__(self) -> str:
        return f"<FlowProducer prefix={self.prefix!r}>"

    def queue(self, name: str, prefix: str | None = None) -> Queue:
        """The :class:`Queue` ``name`` on this producer's connection (one per name)."""
        prefix = self.prefix if prefix is None else prefix
        found = self._queues.get((prefix, name))
        if found is None:
            found = Queue(name, self.connector, prefix=prefix, events_maxlen=self.events_maxlen,
                          max_data_bytes=self.max_data_bytes, durable=self._durable[0],
                          durable_timeout=self._durable[1])
            self._queues[(prefix, name)] = found
        return found

    # -- adding -------------------------------------------------------------

    async def add(self, tree: Mapping[str, Any]) -> FlowNode:
        """Add a flow atomically; returns its root node (jobs and states as added).

        ``tree`` is ``{"name", "queue_name", "data", "opts", "children": [...]}``
        where ``opts`` holds any option of :meth:`Queue.add` (and, for a child,
        ``fail_parent_on_failure`` or ``ignore_dependency_on_failure``) and each
        child is such a dict again. Every node is validated before Redis is
        touched; a :class:`ValidationError` names the node, e.g.
        ``children[1].queue_name``.

        A root whose ``job_id`` exists adds nothing: the existing flow is
        returned (read back with its states). A child whose ``job_id`` exists
        raises :class:`JobStateError`, and nothing is added."""
        [node] = await self._add([tree], "")
        return node

    async def add_bulk(self, trees: Iterable[Mapping[str, Any]]) -> list[FlowNode]:
        """Add several flows atomically in one script call; their root nodes."""
        return await self._add(list(trees), "trees")

    async def _add(self, trees: Sequence[Mapping[str, Any]], path: str) -> list[FlowNode]:
        flat: list[_Flat] = []
        paths: list[str] = []
        for i, tree in enumerate(trees):
            self._flatten(tree, f"{path}[{i}]." if path else "", 0, flat, paths)
        if not flat:
            return []
        _refuse_duplicate_ids(flat, paths)
        queues: dict[QueueKeys, int] = {}
        for node in flat:
            queues.setdefault(node.queue.keys, len(queues) + 1)
        self._refuse_cross_slot(flat, paths)
        jobs: list[FlowJob] = [
            (node.parent, queues[node.queue.keys], node.opts.job_id or "", node.name,
             node.data_json, node.opts_json, node.opts.delay, node.opts.priority,
             int(node.opts.lifo), node.opts.attempts)
            for node in flat
        ]
        for node in flat:
            if not node.queue._registered:
                await node.queue._register()
        reply = await flat[0].queue.scripts.add_flow(list(queues), jobs, paths,
                                                     self.events_maxlen)
        timestamp = int(reply[0])
        ids = [text(i) for i in reply[1]]
        created = [int(c) for c in reply[2]]
        nodes: list[FlowNode | None] = []
        roots: list[FlowNode] = []
        for i, node in enumerate(flat):
            if not created[i]:
                nodes.append(None)
                if node.parent == 0:
                    existing = await self.get_flow(node.queue.name, ids[i])
                    if existing is None:  # removed before we could read it
                        raise JobStateError(f"job {ids[i]!r} existed, and is gone")
                    roots.append(existing)
                continue
            job = Job(node.queue, ids[i], node.name, node.data, node.opts, timestamp)
            flow_node = FlowNode(job, _state_when_added(node))
            nodes.append(flow_node)
            if node.parent == 0:
                roots.append(flow_node)
            else:
                parent = nodes[node.parent - 1]
                assert parent is not None  # a created node's parent was created too
                job.parent_key = parent.job.queue.keys.job(parent.job.id)
                parent.children.append(flow_node)
        return roots

    def _flatten(
        self, tree: object, path: str, parent: int, out: list[_Flat], paths: list[str]
    ) -> None:
        """Validate ``tree`` and append its nodes depth first (a parent before its children)."""
        where = path.removesuffix(".") or "tree"
        if not isinstance(tree, Mapping):
            raise ValidationError(where, "a flow node must be a dict with 'name' and 'queue_name'")
        unknown = set(tree) - _NODE_KEYS
        if unknown:
            raise ValidationError(
                path + sorted(unknown)[0],
                f"unknown flow node key; use {', '.join(sorted(_NODE_KEYS))}",
            )
        if "name" not in tree:
            raise ValidationError(path + "name", "is required")
        try:
            queue_name = validate_queue_name(tree.get("queue_name"))
        except ValidationError as exc:
            raise ValidationError(path + "queue_name", _message(exc), exc.value) from None
        queue = self.queue(queue_name)
        opts = tree.get("opts") or {}
        if not isinstance(opts, Mapping):
            raise ValidationError(path + "opts", f"must be a dict of job options, got {opts!r}")
        for option in _UNSUPPORTED:
            if option in opts:
                raise ValidationError(path + "opts." + option, "is not supported in a flow")
        try:
            name, data_json, options, opts_json = prepare_job(
                queue, tree["name"], tree.get("data"), opts
            )
        except ValidationError as exc:
            prefix = path if exc.field in ("name", "data") else path + "opts."
            raise ValidationError(prefix + exc.field, _message(exc), exc.value) from None
        children = tree.get("children") or []
        if not isinstance(children, Sequence) or isinstance(children, (str, bytes)):
            raise ValidationError(path + "children", f"must be a list of nodes, got {children!r}")
        out.append(_Flat(queue, parent, name, tree.get("data"), data_json, options, opts_json,
                         bool(children)))
        paths.append(path.removesuffix("."))
        index = len(out)
        for i, child in enumerate(children):
            self._flatten(child, f"{path}children[{i}].", index, out, paths)

    def _refuse_cross_slot(self, flat: Sequence[_Flat], paths: Sequence[str]) -> None:
        """On a cluster, one script writes the whole flow: its queues must share a slot."""
        first = flat[0].queue
        for node, path in zip(flat, paths, strict=True):
            if not self.connector.same_slot(first.keys.base, node.queue.keys.base):
                raise ValidationError(f"{path}.queue_name" if path else "queue_name", (
                    f"queues {first.name!r} and {node.queue.name!r} of one flow are in "
                    "different Redis Cluster hash slots; give them one hash tag, e.g. "
                    f"{tagged(first.name, node.queue.name)!r} and "
                    f"{tagged(node.queue.name, first.name)!r}"
                ), node.queue.name)

    # -- reading ------------------------------------------------------------

    async def get_flow(
        self, queue_name: str, job_id: str, *, depth: int = 10, max_children: int = 1000
    ) -> FlowNode | None:
        """The flow under job ``job_id`` of ``queue_name``, each job with its state
        now: ``depth`` levels of children (0: the job alone), at most
        ``max_children`` per parent, ordered by queue and id. ``None`` if there
        is no such job. Children removed since are left out."""
        check_int("depth", depth, 0)
        check_int("max_children", max_children, 1)
        job = await self.queue(validate_queue_name(queue_name)).get_job(job_id)
        if job is None:
            return None
        return await self._read_node(job, depth, max_children)

    async def _read_node(self, job: Job, depth: int, max_children: int) -> FlowNode:
        node = FlowNode(job, await job.get_state())
        if depth == 0:
            return node
        keys = job.queue.keys
        async with job.queue.client.pipeline(transaction=True) as pipe:
            pipe.smembers(keys.dependencies(job.id))
            pipe.hkeys(keys.processed(job.id))
            pipe.hkeys(keys.failed_children(job.id))
            replies = await pipe.execute()
        children = sorted({text(k) for reply in replies for k in reply}, key=_natural)
        for key in children[:max_children]:
            prefix, queue_name, child_id = parse_job_key(key)
            child = await self.queue(queue_name, prefix)._read_job(child_id)
            if child is not None:
                node.children.append(await self._read_node(child, depth - 1, max_children))
        return node


def _state_when_added(node: _Flat) -> JobState:
    if node.has_children:
        return JobState.WAITING_CHILDREN
    if node.opts.delay:
        return JobState.DELAYED
    if node.opts.priority:
        return JobState.PRIORITIZED
    return JobState.WAITING


def _refuse_duplicate_ids(flat: Sequence[_Flat], paths: Sequence[str]) -> None:
    seen: set[tuple[str, str]] = set()
    for node, path in zip(flat, paths, strict=True):
        if node.opts.job_id is None:
            continue
        key = (node.queue.keys.base, node.opts.job_id)
        if key in seen:
            where = f"{path}.opts.job_id" if path else "opts.job_id"
            raise ValidationError(where, f"{node.opts.job_id!r} is used twice in the flow")
        seen.add(key)


def _message(exc: ValidationError) -> str:
    """A ValidationError's message without its field (to re-raise it under a path)."""
    return str(exc).split(": ", 1)[1]


def _natural(key: str) -> tuple[Any, ...]:
    """Sort key: numbers in ids by value (job 10 after job 9)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))
