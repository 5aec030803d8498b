"""Partitioned queues: one logical queue spread over N hash slots, so one queue
is not capped by one Redis core (on a cluster, its partitions live on
different masters).

``Queue("events", conn, partitions=8)`` is a :class:`PartitionedQueue`. Each
partition is a plain :class:`~conveyor.Queue` of its own, named
``<queue>#<i>`` (or ``<queue>#<i>.<k>``: :func:`partition_names`) so that its
hash tag's slot falls in the middle of the i-th N-th of the slot space; on a
cluster whose slots were split evenly (``redis-cli --cluster create``) the
partitions land on different masters. The logical queue's own keys hold only
its ``meta`` hash, whose ``partitions`` field tells every client (worker,
inspector, CLI, dashboard) how many partitions there are.

Where a job goes: its ``partition_key``, else its ``group``, else its
``job_id``, else its deduplication id (each by a stable hash), else round-robin.
Generated ids carry their partition (``<i>~<unique>``), so getters find a job
by id without looking; an explicit id is found where its hash puts it (or, if a
group or partition key put it elsewhere, by asking every partition).

Ordering: FIFO, priorities and delays hold within a partition; across
partitions nothing is promised (a worker takes from all of them fairly).
Calls over the whole queue (counts, lists, admin) fan out to every partition;
each partition's part is atomic, the call as a whole is not.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import count
from typing import Any, TypeVar

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .errors import ValidationError
from .groups import GroupInfo
from .job import Job
from .keys import MAX_QUEUE_NAME, STATES, JobState, registry_key
from .metrics import (
    KEPT_TIME_MINUTES,
    MINUTE_MS,
    MetricKind,
    MetricsSeries,
    Percentiles,
    Timings,
    sum_histograms,
)
from .options import MAX_COUNT, Duration, check_int, validate_job_id
from .queue import Queue
from .schedulers import JobScheduler
from .workers import WorkerInfo

__all__ = [
    "MAX_PARTITIONS",
    "PartitionedQueue",
    "check_partitions",
    "partition_for",
    "partition_names",
    "partition_slot",
    "stored_partitions",
]

#: Most partitions a queue may have (each is a queue of its own: a worker
#: keeps one blocked connection per partition).
MAX_PARTITIONS = 256
#: The field of the logical queue's meta hash holding its partition count.
PARTITIONS_FIELD = "partitions"
#: A generated job id: ``<partition>~<unique>``.
_ENCODED_ID = re.compile(r"(\d+)~")
#: The longest suffix partition_names adds (``#255.99999``).
_SUFFIX_ROOM = 12

T = TypeVar("T")


def check_partitions(partitions: object) -> int:
    """``partitions`` if it is a partition count (2..MAX_PARTITIONS), else a
    ValidationError naming ``partitions``."""
    if (not isinstance(partitions, int) or isinstance(partitions, bool)
            or not 2 <= partitions <= MAX_PARTITIONS):
        raise ValidationError(
            "partitions", f"must be an int from 2 to {MAX_PARTITIONS} (leave it out for a "
            f"queue of one partition), got {partitions!r}", partitions,
        )
    return partitions


def partition_slot(name: str) -> int:
    """The cluster hash slot of queue ``name``'s keys (the slot of its hash tag)."""
    return int(key_slot(name.encode()))


@functools.lru_cache(maxsize=64)
def partition_names(queue: str, partitions: int) -> tuple[str, ...]:
    """The queue names of ``queue``'s partitions: partition i is ``<queue>#<i>``,
    or ``<queue>#<i>.<k>`` with the least k whose slot falls in the middle half of
    the i-th ``partitions``-th of the slot space (deterministic: every client
    computes the same names)."""
    span = REDIS_CLUSTER_HASH_SLOTS / partitions
    names = []
    for i in range(partitions):
        low, high = int(span * (i + 0.25)), int(span * (i + 0.75))
        for k in range(100_000):
            name = f"{queue}#{i}" if k == 0 else f"{queue}#{i}.{k}"
            if low <= partition_slot(name) <= max(low, high - 1):
                names.append(name)
                break
        else:  # pragma: no cover - CRC16 spreads far better than this
            raise ValidationError("partitions", f"no name for partition {i} of {queue!r}")
    return tuple(names)


def partition_for(key: str, partitions: int) -> int:
    """The partition a routing key (group, partition key, job id) maps to: a
    stable hash, the same in every process. A generated id (``<i>~...``)
    names its partition."""
    found = _ENCODED_ID.match(key)
    if found is not None and int(found.group(1)) < partitions:
        return int(found.group(1))
    return zlib.crc32(key.encode()) % partitions


async def stored_partitions(queue: Queue) -> int | None:
    """The partition count stored in ``queue``'s meta, ``None`` for a plain queue."""
    value = await queue.client.hget(queue.keys.meta, PARTITIONS_FIELD)
    return None if value is None else int(value)


class PartitionedQueue(Queue):
    """A queue spread over ``partitions`` plain queues (see the module's docstring).
    Built by ``Queue(name, connection, partitions=n)``; takes every argument of
    :class:`~conveyor.Queue`. Its partitions share its client."""

    def __init__(self, name: str, connection: Any = None, *, partitions: int | None = None,
                 **options: Any) -> None:
        n = check_partitions(partitions)
        if isinstance(name, str) and len(name) > MAX_QUEUE_NAME - _SUFFIX_ROOM:
            raise ValidationError(
                "name", f"a partitioned queue's name may have at most "
                f"{MAX_QUEUE_NAME - _SUFFIX_ROOM} characters", name,
            )
        super().__init__(name, connection, **options)
        self.partition_count = n
        #: The partitions, each a plain Queue over this queue's client.
        self.partitions: list[Queue] = []
        for part_name in partition_names(name, n):
            part = Queue(part_name, self.connector, **options)  # its own slot's client
            part._registered = True  # the registry lists the logical queue only
            self.partitions.append(part)
        self._checked = False
        self._next = count()
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = count()

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} prefix={self.prefix!r} partitions={self.partition_count}>"

    # -- the partition count in Redis ------------------------------------------------

    async def _register(self) -> None:
        """Name the queue in the registry and store its partition count (or
        refuse a count that differs from the stored one)."""
        if self._registered:
            return
        k = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(k.meta, PARTITIONS_FIELD)
            pipe.exists(*(k.state_key(state) for state in STATES))
            stored, plain_jobs = await pipe.execute()
        if stored is None and plain_jobs:
            raise ValidationError(
                "partitions", f"queue {self.name!r} holds jobs as a plain queue; "
                "partition a queue before its first job (or under a new name)",
                self.partition_count,
            )
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hsetnx(self.keys.meta, PARTITIONS_FIELD, self.partition_count)
            pipe.hget(self.keys.meta, PARTITIONS_FIELD)
            _, stored = await pipe.execute()
        self._refuse_mismatch(stored)
        registry = registry_key(self.prefix)  # in its own slot on a cluster
        await self.connector.client_for(registry).sadd(registry, self.name)
        self._registered = self._checked = True

    async def _check(self) -> None:
        """Before a read or admin call: refuse a count that differs from the stored one."""
        if not self._checked:
            self._refuse_mismatch(await self.client.hget(self.keys.meta, PARTITIONS_FIELD))
            self._checked = True

    def _refuse_mismatch(self, stored: Any) -> None:
        if stored is not None and int(stored) != self.partition_count:
            raise ValidationError(
                "partitions", f"queue {self.name!r} has {int(stored)} partitions, not "
                f"{self.partition_count}", self.partition_count,
            )

    async def _each(self, call: Callable[[Queue], Awaitable[T]]) -> list[T]:
        """``call`` on every partition, concurrently; the results in partition order."""
        await self._check()
        return list(await asyncio.gather(*(call(part) for part in self.partitions)))

    # -- adding ---------------------------------------------------------------------

    def _route(self, options: Mapping[str, Any], partition_key: str | None) -> int:
        n = self.partition_count
        if partition_key is not None:
            if not isinstance(partition_key, str) or not partition_key:
                raise ValidationError("partition_key", f"must be a non-empty str, got "
                                      f"{partition_key!r}", partition_key)
            return partition_for(partition_key, n)
        group = options.get("group", self.default_job_options.get("group"))
        if isinstance(group, str) and group:
            return partition_for(group, n)
        job_id = options.get("job_id")
        if job_id not in (None, ""):  # "": generate one, as Queue.add does
            return partition_for(validate_job_id(job_id), n)
        dedup = options.get("deduplication")
        if isinstance(dedup, Mapping) and dedup.get("id") is not None:
            return partition_for(str(dedup["id"]), n)
        return next(self._next) % n

    def _with_id(self, options: dict[str, Any], partition: int) -> dict[str, Any]:
        if options.get("job_id") in (None, ""):
            options["job_id"] = f"{partition}~{self._id_prefix}{next(self._ids):x}"
        return options

    async def add(self, name: str, data: Any = None, *, partition_key: str | None = None,
                  **options: Any) -> Job:
        """Add a job to the partition its ``partition_key``, ``group``, ``job_id``
        or deduplication id maps to (round-robin without any); takes every
        option of :meth:`conveyor.Queue.add`."""
        i = self._route(options, partition_key)
        if not self._registered:
            await self._register()
        return await self.partitions[i].add(name, data, **self._with_id(dict(options), i))

    async def add_bulk(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Add many jobs: atomically per partition (one call per partition), not
        as a whole. Items as for :meth:`conveyor.Queue.add_bulk`, plus an optional
        ``partition_key``."""
        by_part: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for place, item in enumerate(jobs):
            if not isinstance(item, Mapping):
                raise ValidationError("jobs", f"each job must be a dict, got {item!r:.80}")
            spec = dict(item)
            i = self._route(spec, spec.pop("partition_key", None))
            by_part.setdefault(i, []).append((place, self._with_id(spec, i)))
        if not by_part:
            return []
        if not self._registered:
            await self._register()
        added = await asyncio.gather(*(
            self.partitions[i].add_bulk([spec for _, spec in items])
            for i, items in by_part.items()
        ))
        found: dict[int, Job] = {}
        for (_, items), jobs_of in zip(by_part.items(), added, strict=True):
            found.update((place, job) for (place, _), job in zip(items, jobs_of, strict=True))
        return [found[place] for place in sorted(found)]

    # -- reading ----------------------------------------------------------------------

    def partition_of(self, job_id: str) -> Queue:
        """The partition where a job of this id is added unless a group or
        partition key sent it elsewhere."""
        return self.partitions[partition_for(validate_job_id(job_id), self.partition_count)]

    async def _find(self, job_id: str, call: Callable[[Queue], Awaitable[T | None]]) -> T | None:
        """``call`` on the id's partition; if it finds nothing, on every other one."""
        await self._check()
        home = self.partition_of(job_id)
        found = await call(home)
        if found is not None or _ENCODED_ID.match(job_id):
            return found
        others = await asyncio.gather(*(call(p) for p in self.partitions if p is not home))
        return next((one for one in others if one is not None), None)

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id (in whichever partition holds it), or ``None``."""
        return await self._find(validate_job_id(job_id), lambda p: p.get_job(job_id))

    async def get_job_state(self, job_id: str) -> JobState | None:
        """The job's state (see :meth:`conveyor.Queue.get_job_state`)."""
        return await self._find(validate_job_id(job_id), lambda p: p.get_job_state(job_id))

    async def get_job_counts(self, *states: str) -> dict[str, int]:
        """Number of jobs per state, summed over the partitions."""
        totals = dict.fromkeys(states or STATES, 0)
        for counts in await self._each(lambda p: p.get_job_counts(*states)):
            for state, n in counts.items():
                totals[state] += n
        return totals

    async def get_jobs(self, states: str | Sequence[str], start: int = 0, end: int = -1,
                       asc: bool = False) -> list[Job]:
        """Jobs in the given states over all partitions, ``start``..``end`` of
        their merged order: by finish time for finished jobs, else by the time
        they were added (newest first unless ``asc``). Reads up to ``end + 1``
        jobs of each partition."""
        check_int("start", start, -MAX_COUNT, MAX_COUNT)
        check_int("end", end, -MAX_COUNT, MAX_COUNT)
        pages = await self._each(lambda p: p.get_jobs(states, 0, max(end, -1), asc))
        merged = sorted((job for page in pages for job in page), key=_when, reverse=not asc)
        return _inclusive(merged, start, end)

    async def last_completed_ms(self) -> int | None:
        """When the newest completed job of any partition finished (epoch ms)."""
        newest = await self._each(lambda p: p.client.zrevrange(p.keys.completed, 0, 0,
                                                                withscores=True))
        return max((int(found[0][1]) for found in newest if found), default=None)

    async def get_deduplication_job_id(self, key: str) -> str | None:
        """The id of the job holding deduplication ``key`` (see :meth:`conveyor.Queue.add`)."""
        await self._check()
        return await self.partitions[partition_for(str(key), self.partition_count)] \
            .get_deduplication_job_id(key)

    async def get_groups(self) -> list[GroupInfo]:
        """Every group with waiting or running jobs (each lives in one partition)."""
        return sorted((g for gs in await self._each(lambda p: p.get_groups()) for g in gs),
                      key=lambda g: g.name)

    async def get_group_jobs(self, group: str, start: int = 0, end: int = -1) -> list[str]:
        """Ids of a group's waiting jobs, in the order they will run."""
        await self._check()
        return await self.partitions[partition_for(group, self.partition_count)] \
            .get_group_jobs(group, start, end)

    # -- admin over every partition ----------------------------------------------------

    async def clean(self, grace_ms: Duration, limit: int = 0, state: str = "completed",
                    *, progress: Any = None) -> list[str]:
        """As :meth:`conveyor.Queue.clean`, over the partitions (with a ``limit``,
        one after the other until it is reached; without, all at once)."""
        if not limit:
            found = await self._each(lambda p: p.clean(grace_ms, 0, state))
            removed = [i for ids in found for i in ids]
        else:
            await self._check()
            removed = []
            for part in self.partitions:
                if len(removed) < limit:
                    removed += await part.clean(grace_ms, limit - len(removed), state)
        if progress is not None:
            progress(len(removed))
        return removed

    async def drain(self, delayed: bool = False) -> int:
        """Remove every waiting (and with ``delayed``, delayed) job of every partition."""
        return sum(await self._each(lambda p: p.drain(delayed)))

    async def obliterate(self, force: bool = False) -> None:
        """Delete every partition, then the logical queue's own keys."""
        await self._each(lambda p: p.obliterate(force))
        await Queue.obliterate(self, force)
        registry = registry_key(self.prefix)
        await self.connector.client_for(registry).srem(registry, self.name)
        self._registered = self._checked = False

    async def retry_jobs(self, state: str = "failed", count: int = 1000, *,
                         reset_attempts: bool = False, progress: Any = None) -> int:
        """As :meth:`conveyor.Queue.retry_jobs`, in each partition."""
        n = sum(await self._each(
            lambda p: p.retry_jobs(state, count, reset_attempts=reset_attempts)))
        if progress is not None:
            progress(n)
        return n

    async def promote_jobs(self, count: int = 1000) -> int:
        """Make every delayed job of every partition ready now."""
        return sum(await self._each(lambda p: p.promote_jobs(count)))

    async def pause(self) -> None:
        """Pause every partition (and mark the logical queue paused)."""
        await self._each(lambda p: p.pause())
        await self.client.hset(self.keys.meta, "paused", 1)

    async def resume(self) -> None:
        """Resume every partition."""
        await self._each(lambda p: p.resume())
        await self.client.hdel(self.keys.meta, "paused")

    async def is_paused(self) -> bool:
        """Whether any partition is paused."""
        return any(await self._each(lambda p: p.is_paused()))

    async def set_global_concurrency(self, n: int | None) -> None:
        """Cap each partition at ``n`` running jobs: partitions may live on
        different servers, so no cap spans them (at most ``n * partitions``
        run at once)."""
        await self._each(lambda p: p.set_global_concurrency(n))

    async def get_global_concurrency(self) -> int | None:
        """The per-partition cap of :meth:`set_global_concurrency`."""
        return (await self._each(lambda p: p.get_global_concurrency()))[0]

    async def rate_limit(self, delay: Duration) -> None:
        """Make every worker of every partition wait ``delay``."""
        await self._each(lambda p: p.rate_limit(delay))

    async def set_group_concurrency(self, n: int | None) -> None:
        """As :meth:`conveyor.Queue.set_group_concurrency` (a group lives in one partition)."""
        await self._each(lambda p: p.set_group_concurrency(n))

    async def set_group_limit(self, max: int | None, duration: int | timedelta = 1000) -> None:
        """As :meth:`conveyor.Queue.set_group_limit` (a group lives in one partition)."""
        await self._each(lambda p: p.set_group_limit(max, duration))

    async def remove_deduplication_key(self, key: str) -> bool:
        """Let go of deduplication ``key`` (in the partition it maps to)."""
        await self._check()
        return await self.partitions[partition_for(str(key), self.partition_count)] \
            .remove_deduplication_key(key)

    # -- one job: found in its partition ------------------------------------------------

    async def _on_job(self, job_id: str, call: Callable[[Queue], Awaitable[T]]) -> T:
        part = await self._find(validate_job_id(job_id), _holder(job_id))
        return await call(part if part is not None else self.partition_of(job_id))

    async def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """As :meth:`conveyor.Queue.cancel`, in the job's partition."""
        return await self._on_job(job_id, lambda p: p.cancel(job_id, reason))

    async def remove(self, job_id: str, *, remove_children: bool = True) -> bool:
        """As :meth:`conveyor.Queue.remove`, in the job's partition."""
        return await self._on_job(
            job_id, lambda p: p.remove(job_id, remove_children=remove_children))

    async def retry_job(self, job_id: str, *, reset_attempts: bool = False) -> None:
        """As :meth:`conveyor.Queue.retry_job`, in the job's partition."""
        await self._on_job(job_id, lambda p: p.retry_job(job_id, reset_attempts=reset_attempts))

    async def update_data(self, job_id: str, data: Any) -> None:
        """As :meth:`conveyor.Queue.update_data`, in the job's partition."""
        await self._on_job(job_id, lambda p: p.update_data(job_id, data))

    # -- the dead-letter set, workers, metrics ---------------------------------------------

    async def get_dead_letter(self, start: int = 0, end: int = -1) -> list[Job]:
        """Jobs that failed for good over all partitions, newest first."""
        return await self.get_jobs(JobState.FAILED, start, end)

    async def get_dead_letter_count(self) -> int:
        """Number of jobs in the partitions' dead-letter sets."""
        return sum(await self._each(lambda p: p.get_dead_letter_count()))

    async def get_workers(self, start: int = 0, end: int = -1) -> list[WorkerInfo]:
        """The live workers of the queue (a worker serves every partition: listed once)."""
        seen: dict[str, WorkerInfo] = {}
        for workers in await self._each(lambda p: p.get_workers()):
            for worker in workers:
                known = seen.setdefault(worker.id, worker)
                if known is not worker:  # its running jobs are spread over partitions
                    seen[worker.id] = replace(known, running_job_ids=(
                        *known.running_job_ids, *worker.running_job_ids))
        return _inclusive(sorted(seen.values(), key=lambda w: w.started_at), start, end)

    async def get_metrics(self, kind: MetricKind, start: datetime | int | None = None,
                          end: datetime | int | None = None) -> MetricsSeries:
        """Jobs per minute summed over the partitions."""
        series = await self._each(lambda p: p.get_metrics(kind, start, end))
        values = [sum(column) for column in zip(*(s.counts for s in series), strict=True)]
        return MetricsSeries(kind, series[0].start, values)

    async def get_timings(self, minutes: int = 5) -> Timings:
        """Wait/processing percentiles over every partition's jobs (the
        partitions' histograms summed)."""
        check_int("minutes", minutes, 1, KEPT_TIME_MINUTES)
        await self._check()
        now = await self._redis_now_ms() // MINUTE_MS

        async def histograms(part: Queue) -> list[Any]:
            async with part.client.pipeline(transaction=False) as pipe:
                for minute in range(now - minutes + 1, now + 1):
                    pipe.hgetall(part.keys.metrics_times(minute))
                return list(await pipe.execute())

        replies = [h for hs in await self._each(histograms) for h in hs]
        wait, processing = sum_histograms(replies)
        return Timings(minutes, Percentiles.from_buckets(wait),
                       Percentiles.from_buckets(processing))

    # -- job schedulers: each lives in the partition its id maps to -------------------------

    def _scheduler_home(self, scheduler_id: str) -> Queue:
        return self.partitions[partition_for(str(scheduler_id), self.partition_count)]

    async def upsert_job_scheduler(self, scheduler_id: str, **spec: Any) -> JobScheduler:
        """As :meth:`conveyor.Queue.upsert_job_scheduler`, in the partition the id
        maps to (its jobs run there)."""
        if not self._registered:
            await self._register()
        return await self._scheduler_home(scheduler_id).upsert_job_scheduler(
            scheduler_id, **spec)

    async def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        """The scheduler with this id, or ``None``."""
        await self._check()
        return await self._scheduler_home(scheduler_id).get_job_scheduler(scheduler_id)

    async def get_job_schedulers(self, start: int = 0, end: int = -1) -> list[JobScheduler]:
        """The schedulers of every partition, soonest next job first."""
        found = [s for ss in await self._each(lambda p: p.get_job_schedulers()) for s in ss]
        far = datetime.max.replace(tzinfo=None)
        found.sort(key=lambda s: s.next_run.replace(tzinfo=None) if s.next_run else far)
        return _inclusive(found, start, end)

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete the scheduler (see :meth:`conveyor.Queue.remove_job_scheduler`)."""
        await self._check()
        return await self._scheduler_home(scheduler_id).remove_job_scheduler(scheduler_id)

    async def run_job_scheduler_now(self, scheduler_id: str) -> str | None:
        """One extra job now (see :meth:`conveyor.Queue.run_job_scheduler_now`)."""
        await self._check()
        return await self._scheduler_home(scheduler_id).run_job_scheduler_now(scheduler_id)


def _inclusive(items: list[T], start: int, end: int) -> list[T]:
    """``items[start..end]``, both ends included, negative ones from the end (as Redis ranges)."""
    return items[start:] if end == -1 else items[start:end + 1]


def _when(job: Job) -> int:
    return job.finished_on or job.timestamp or 0


def _holder(job_id: str) -> Callable[[Queue], Awaitable[Queue | None]]:
    async def holder(part: Queue) -> Queue | None:
        return part if await part.client.exists(part.keys.job(job_id)) else None
    return holder
