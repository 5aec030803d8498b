"""The producer's and administrator's handle on one queue: adding and reading
jobs here; the admin writes come from :mod:`conveyor.admin`, schedules, metrics
and groups from their own modules (each a mixin on :class:`QueueCore`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from ._autobatch import AddBatcher, SharedStep
from ._cluster import ConnectorOwner, connect
from ._corrupt import not_a_hash, unreadable_job
from ._prepare import Prepared, chunks, new_job, prepare_bulk, prepare_job
from ._scripts import Durability, Scripts, atomic_and_wait
from ._stream import text
from .admin import QueueAdmin
from .connection import Connection
from .groups import QueueGroups
from .job import Job, read_fields, with_lock
from .keys import STATES, JobState, QueueKeys, validate_prefix
from .metrics import QueueMetrics
from .options import (
    MAX_COUNT,
    BackoffSpec,
    Duration,
    JobOptions,
    RetentionSpec,
    check_count,
    check_int,
    validate_job_id,
    validate_queue_name,
)
from .schedulers import QueueSchedulers

__all__ = ["Queue"]

DEFAULT_MAX_DATA_BYTES = 1024 * 1024


class _Default:
    """Marks an ``add`` option the caller did not pass (so queue defaults apply)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


class Queue(ConnectorOwner, QueueAdmin, QueueSchedulers, QueueMetrics, QueueGroups):
    """A named queue on Redis: add jobs, read them, and administer the queue.

    ``connection`` is a URL, a ``redis.asyncio.Redis`` (used as is, not closed
    by us) or ``None`` for ``$CONVEYOR_REDIS_URL`` / ``redis://localhost:6379/0``;
    for Redis Cluster a ``redis+cluster://host:port,...`` URL, a ``RedisCluster``
    client or a :class:`~conveyor.Connector` (see :class:`~conveyor.Connector`).
    ``default_job_options`` apply to every ``add`` unless the call overrides them.

    ``durable=n`` (0: off) makes every add (``add``, ``add_bulk``, flows through
    this queue) wait until ``n`` replicas hold it, at most ``durable_timeout``
    (ms or timedelta, default 1 s), before it returns; fewer raise
    :class:`~conveyor.errors.DurabilityError` (the jobs are on the master, not
    yet safe from a failover). See docs/guides/durability.md.
    ``partitions=n`` spreads the queue over ``n`` hash slots (a
    :class:`~conveyor.partitions.PartitionedQueue`): see
    docs/guides/partitions.md.
    """

    def __new__(cls, *args: Any, partitions: int | None = None, **kwargs: Any) -> Queue:
        if partitions is not None and cls is Queue:
            from .partitions import PartitionedQueue  # built on Queue: imported when used

            return super().__new__(PartitionedQueue)
        return super().__new__(cls)

    def __init__(
        self,
        name: str,
        connection: Connection = None,
        *,
        partitions: int | None = None,  # see __new__
        prefix: str = "conveyor",
        default_job_options: Mapping[str, Any] | None = None,
        events_maxlen: int = 10_000,
        keep_logs: int = 1_000,
        max_data_bytes: int = DEFAULT_MAX_DATA_BYTES,
        durable: int = 0,
        durable_timeout: Duration = 1000,
    ) -> None:
        self.name = validate_queue_name(name)
        durability = Durability.parse(durable, durable_timeout)
        self.prefix = validate_prefix(prefix)
        check_count("events_maxlen", events_maxlen, 0)
        check_count("keep_logs", keep_logs, 0)
        check_count("max_data_bytes", max_data_bytes, 1)
        self.connector, self._owns_connector = connect(connection)
        self.keys = QueueKeys(prefix, name)
        #: The client of this queue's keys (on a cluster, their slot's master).
        self.client = self.connector.client_for(self.keys.base)
        self.scripts = Scripts(self.client, self.keys, events_maxlen)
        self.scripts.durability = durability
        self._adds = AddBatcher(lambda jobs: self.scripts.add_jobs(None, jobs))
        self._register_once = SharedStep(self._register)
        self.keep_logs = keep_logs
        self.max_data_bytes = max_data_bytes
        self.default_job_options = dict(default_job_options or {})
        if self.default_job_options:
            JobOptions.parse(self.default_job_options)  # refuse bad defaults early
        self._registered = False

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} prefix={self.prefix!r}>"

    # -- adding -------------------------------------------------------------

    async def add(
        self,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = DEFAULT,
        delay: Duration = DEFAULT,
        priority: int = DEFAULT,
        attempts: int = DEFAULT,
        backoff: BackoffSpec = DEFAULT,
        lifo: bool = DEFAULT,
        timeout: Duration | None = DEFAULT,
        remove_on_complete: RetentionSpec = DEFAULT,
        remove_on_fail: RetentionSpec = DEFAULT,
        deduplication: Mapping[str, Any] | None = DEFAULT,
        dead_letter_queue: str | None = DEFAULT,
        group: str | None = DEFAULT,
    ) -> Job:
        """Add a job; returns it. With a ``job_id`` that exists, returns that job
        and adds nothing.

        An option not passed comes from ``default_job_options``, else the built-in
        default (no delay, priority 0, 1 attempt, no backoff, FIFO, no timeout,
        keep 1000 completed / 10000 failed jobs). An option passed, even with the
        built-in default's value, overrides ``default_job_options``.

        ``deduplication={"id": key, "ttl": ms, "extend": bool, "replace": bool}``:
        while the job holding ``key`` is active (see
        :class:`~conveyor.options.Deduplication`), adds nothing and returns it;
        a ``deduplicated`` event says so.

        ``dead_letter_queue="name"``: when the job fails for good, a copy (same
        name and data, ``job.dead_letter_of`` saying where from and why) is added
        to that queue for separate handling; the failed job stays in this
        queue's failed set (its own dead-letter set) too.

        ``group="tenant-123"``: workers take turns between groups with work
        (round-robin), so a busy group cannot starve a quiet one; see
        :meth:`set_group_concurrency` and :meth:`set_group_limit`.

        Concurrent adds on one queue share round trips: while one is in flight,
        the next gather and go as one script call (see "Concurrent producers" in
        docs/guides/adding-jobs.md); each caller still gets its own job or error."""
        options = _given((
            job_id, delay, priority, attempts, backoff, lifo, timeout, remove_on_complete,
            remove_on_fail, deduplication, dead_letter_queue, group,
        ))
        prepared = prepare_job(self, name, data, options)
        if not self._registered:
            await self._register_once()
        reply = await self._adds.add(new_job(*prepared))
        if reply[1] == 1:  # made (the usual case, inlined: it runs per add)
            return Job(self, text(reply[0]), prepared[0], data, prepared[2], reply[2])
        return await self._job_from_add(reply, prepared, data)

    async def add_bulk(self, jobs: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Add many jobs atomically in one round trip. Each item is a dict with
        ``name``, ``data`` and any option of :meth:`add`."""
        prepared_all, datas = prepare_bulk(self, jobs)
        if not prepared_all:
            return []
        if not self._registered:
            await self._register()
        batches = chunks([new_job(*prepared) for prepared in prepared_all])
        if len(batches) == 1:
            replies = await self.scripts.add_jobs(None, batches[0])
        else:
            calls = self.scripts.calls
            tokens = [calls.for_ids(job[0] for job in chunk) for chunk in batches]

            async def fill(pipe: Pipeline) -> None:
                for chunk, token in zip(batches, tokens, strict=True):
                    await self.scripts.add_jobs(pipe, chunk, token)

            parts = await atomic_and_wait(self.client, fill, "add_jobs",
                                          self.scripts.durability, self.name)
            replies = [reply for part in parts for reply in part]
            for token in tokens:
                calls.answered(token)
        return [
            await self._job_from_add(reply, prepared, data)
            for reply, prepared, data in zip(replies, prepared_all, datas, strict=True)
        ]

    def _created_job(
        self, reply: Sequence[Any], prepared: Prepared, data: Any
    ) -> Job | None:
        """The Job an add_jobs reply made, or None if the id existed (read it instead);
        the error Redis refused this job with is raised (its batch's others stand)."""
        created = int(reply[1])
        if created < 0:
            raise ResponseError(text(reply[2]))
        if not created:
            return None
        name, _, opts, _ = prepared
        return Job(self, text(reply[0]), name, data, opts, int(reply[2]))

    async def _job_from_add(
        self, reply: Sequence[Any], prepared: Prepared, data: Any
    ) -> Job:
        job = self._created_job(reply, prepared, data) or await self._read_job(text(reply[0]))
        if job is None:  # the id existed, and was removed before we could read it
            name, _, opts, _ = prepared
            job = Job(self, text(reply[0]), name, data, opts, 0)
        return job

    # -- reading ------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or ``None``. A job whose hash is corrupt comes
        back with what could be read, and ``job.corrupt`` saying what could not.
        An id no job can have (see :func:`~conveyor.options.validate_job_id`)
        is refused, as :meth:`add` refuses it."""
        return await self._read_job(validate_job_id(job_id))

    async def _read_job(self, job_id: str) -> Job | None:
        """:meth:`get_job` of an id read from Redis (a corrupt one is not the caller's error)."""
        try:
            fields = await read_fields(self, job_id)
        except ResponseError as exc:
            return unreadable_job(self, job_id, not_a_hash(exc))
        if fields is None:
            return None
        return Job.from_fields(self, job_id, fields)

    async def get_job_state(self, job_id: str) -> JobState | None:
        """The job's state: waiting, active, delayed, prioritized, completed, failed
        (``None`` when there is no such job)."""
        state = text(await self.scripts.get_state(validate_job_id(job_id)))
        return JobState(state) if state else None

    async def get_job_counts(self, *states: str) -> dict[str, int]:
        """Number of jobs per state (all states when none are named)."""
        wanted = states or STATES
        async with self.client.pipeline(transaction=False) as pipe:
            for state in wanted:
                key = self.keys.state_key(state)
                if state == JobState.WAITING:
                    pipe.llen(key)
                else:
                    pipe.zcard(key)
            counts = await pipe.execute()
        result = dict(zip(wanted, (int(c) for c in counts), strict=True))
        if JobState.WAITING in result:
            result[JobState.WAITING] += sum(group.waiting for group in await self.get_groups())
        return result

    async def get_jobs(
        self,
        states: str | Sequence[str],
        start: int = 0,
        end: int = -1,
        asc: bool = False,
    ) -> list[Job]:
        """Jobs in the given states, ``start``..``end`` (inclusive) of each state's
        ordering: newest first unless ``asc``. The wait list's order is the order
        jobs will be taken. A state named twice is listed once."""
        check_int("start", start, -MAX_COUNT, MAX_COUNT)
        check_int("end", end, -MAX_COUNT, MAX_COUNT)
        if isinstance(states, str):
            states = [states]
        states = list(dict.fromkeys(states))  # a state named twice lists its jobs once
        async with self.client.pipeline(transaction=False) as pipe:
            for state in states:
                key = self.keys.state_key(state)
                if state == JobState.WAITING:
                    if asc:
                        pipe.lrange(key, start, end)
                    else:
                        pipe.lrange(key, -(end + 1) if end >= 0 else 0, -(start + 1))
                elif asc:
                    pipe.zrange(key, start, end)
                else:
                    pipe.zrevrange(key, start, end)
            ranges = await pipe.execute()
        ids: list[str] = []
        for state, found in zip(states, ranges, strict=True):
            found = [text(i) for i in found]
            if state == JobState.WAITING and not asc:
                found.reverse()
            ids.extend(found)
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
                pipe.hget(self.keys.locks, job_id)
            replies = await pipe.execute(raise_on_error=False)
        jobs = []
        for i, job_id in enumerate(ids):
            if isinstance(replies[2 * i], ResponseError):  # one corrupt job, not the page
                jobs.append(unreadable_job(self, job_id, not_a_hash(replies[2 * i])))
                continue
            fields = with_lock(replies[2 * i], replies[2 * i + 1])
            if fields is not None:
                jobs.append(Job.from_fields(self, job_id, fields))
        return jobs

    async def get_deduplication_job_id(self, key: str) -> str | None:
        """The id of the job holding deduplication ``key``, while the key is held
        (a simple key is let go when its job finishes, a ttl key when it expires)."""
        value = await self.client.get(self.keys.deduplication(str(key)))
        return None if value is None else text(value)


#: The options of :meth:`Queue.add`, in the order :func:`_given` takes them.
_ADD_OPTIONS = (
    "job_id", "delay", "priority", "attempts", "backoff", "lifo", "timeout",
    "remove_on_complete", "remove_on_fail", "deduplication", "dead_letter_queue", "group",
)
_NONE_GIVEN = (DEFAULT,) * len(_ADD_OPTIONS)


def _given(values: tuple[Any, ...]) -> dict[str, Any]:
    """The options a caller set (``values`` of :data:`_ADD_OPTIONS`), so queue
    defaults fill the rest. The usual add sets none: one tuple comparison then
    (batched adds make this a tenth of an add's own time)."""
    if values == _NONE_GIVEN:
        return {}
    return {k: v for k, v in zip(_ADD_OPTIONS, values, strict=True) if v is not DEFAULT}
