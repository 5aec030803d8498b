"""The :class:`Inspector`: the inspection and administration layer that the
CLI, the REST API and the dashboard share (queue summaries, job pages and
details, health, throughput, and the admin actions), answering with the views
of :mod:`conveyor.inspection.views`.

Every read costs a bounded number of Redis commands, pipelined: counts come from
the state sets' cardinalities, never from reading jobs, and lists read only
what their rows show (:mod:`conveyor.inspection.reads`). Queues are found in
the registry ``<prefix>:queues`` (plus any named explicitly);
:meth:`Inspector.discover` finds older queues with one SCAN and adds them to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from .._cluster import ConnectorOwner, connect, pipelined
from .._render import epoch_ms, iso
from .._stream import text
from ..admin import BATCH, CLEANABLE_STATES
from ..connection import Connection, time_ms
from ..errors import ConveyorError, JobNotFoundError, ValidationError
from ..job import Job
from ..keys import (
    FINISHED,
    STATES,
    JobState,
    delayed_due,
    glob_escape,
    parse_queue_key,
    registry_key,
    validate_prefix,
)
from ..metrics import MINUTE_MS
from ..options import OPTION_NAMES, check_int, validate_job_id, validate_queue_name
from ..partitions import PartitionedQueue, partition_names
from ..queue import Queue
from ..workers import WorkerInfo
from .attempts import attempt_records, read_history
from .health import RATE_MINUTES, HealthThresholds, judge, worst
from .reads import read_alerts, read_page, ready_ends
from .scheduler_runs import last_runs
from .search import JobQuery, SearchPage, search_jobs
from .views import (
    Dashboard,
    HealthStatus,
    JobDetail,
    JobPage,
    JobSummary,
    QueueHealth,
    QueueSummary,
    SchedulerInfo,
    Throughput,
)

__all__ = ["ALERTS", "DETAIL_LOG_LINES", "MAX_THROUGHPUT_MINUTES", "Inspector", "Progress",
           "QueueNotFoundError"]

#: progress(done, total) of a bulk action, called after every batch.
Progress = Callable[[int, int], None]

#: Most minutes :meth:`Inspector.throughput` returns (a day).
MAX_THROUGHPUT_MINUTES = 1440
#: Log lines a job detail carries (the newest).
DETAIL_LOG_LINES = 200
#: Recent failures the dashboard lists, over all queues.
ALERTS = 20
#: Queues summarized at once (each summary pipelines a handful of commands).
_PARALLEL_QUEUES = 8
#: Admin-only job options that ``enqueue`` refuses (they belong to flows).
_FLOW_OPTIONS = frozenset({"fail_parent_on_failure", "ignore_dependency_on_failure"})


class QueueNotFoundError(ConveyorError, LookupError):
    """No queue of this name: it is not in the registry and has no keys."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"queue {name!r} not found")


# -- the inspector --------------------------------------------------------------------


class Inspector(ConnectorOwner):
    """Reads and administers the queues under one prefix on one Redis.

    ``connection`` is a URL, a ``redis.asyncio.Redis`` (used as is, not closed),
    a Redis Cluster (see :class:`~conveyor.Connector`) or ``None`` for
    ``$CONVEYOR_REDIS_URL`` / ``redis://localhost:6379/0``.
    ``queues`` are listed even before anything names them in the registry.
    Methods taking a queue name raise :class:`QueueNotFoundError` for a queue
    that does not exist, and :class:`JobNotFoundError` for a missing job.
    ``async with`` it, or ``await close()`` (closes a client it opened).
    """

    def __init__(
        self,
        connection: Connection = None,
        *,
        prefix: str = "conveyor",
        queues: Sequence[str] | None = None,
        thresholds: HealthThresholds | None = None,
    ) -> None:
        self.prefix = validate_prefix(prefix)
        self.connector, self._owns_connector = connect(connection)
        self._registry = registry_key(self.prefix)
        #: The client of the registry (on a cluster, its slot's master).
        self.client = self.connector.client_for(self._registry)
        self.explicit_queues = [validate_queue_name(name) for name in queues or ()]
        self.thresholds = thresholds or HealthThresholds()
        self._queues: dict[str, Queue] = {}
        self._discovered = False
        self._limit = asyncio.Semaphore(_PARALLEL_QUEUES)

    # -- queues -------------------------------------------------------------------

    def queue(self, name: str) -> Queue:
        """The :class:`Queue` ``name`` (cached; all share this inspector's client)."""
        found = self._queues.get(name)
        if found is None:
            found = self._queues[name] = Queue(name, self.connector, prefix=self.prefix)
        return found

    async def queue_names(self) -> list[str]:
        """Every known queue, sorted: the registry and the queues named explicitly.
        While the registry is empty (queues made before it existed), the first
        call runs :meth:`discover`."""
        members = await self.client.smembers(self._registry)
        if not members and not self._discovered:
            return await self.discover()
        return sorted({text(m) for m in members} | set(self.explicit_queues))

    async def discover(self) -> list[str]:
        """SCAN once for queues missing from the registry, add them to it, and
        return every known queue (sorted)."""
        found: set[str] = set()
        # One pass over the keyspace (of each master) for the meta, events and
        # id keys of any queue.
        match = f"{glob_escape(self.prefix)}:{{*:[mei][evd]*"
        for client in await self.connector.node_clients():
            async for raw in client.scan_iter(match=match, count=BATCH):
                try:
                    prefix, name, part = parse_queue_key(text(raw))
                except ValueError:
                    continue
                if prefix == self.prefix and part in ("meta", "events", "id") and (
                        _valid_name(name)):
                    found.add(name)
        found -= await self._partitions_among(found)
        if found:
            await self.client.sadd(self._registry, *sorted(found))
        self._discovered = True
        members = await self.client.smembers(self._registry)
        return sorted({text(m) for m in members} | found | set(self.explicit_queues))

    async def _partitions_among(self, names: set[str]) -> set[str]:
        """The names in ``names`` that are partitions of a partitioned queue
        (listed as their logical queue, never on their own)."""
        bases = sorted({name.rpartition("#")[0] for name in names if "#" in name} & names)
        if not bases:
            return set()
        queues = [self.queue(base) for base in bases]
        counts = await pipelined([
            (q.client, _command("hget", q.keys.meta, "partitions"))
            for q in queues])
        for reply in counts:
            if isinstance(reply, Exception):
                raise reply
        return {part for base, n in zip(bases, counts, strict=True) if n is not None
                for part in partition_names(base, int(n))}

    async def existing(self, name: str) -> Queue:
        """The queue ``name`` (partitioned if it is), or QueueNotFoundError if
        nothing knows it."""
        return await self._existing(name)

    async def _existing(self, name: str) -> Queue:
        """The queue ``name``, or QueueNotFoundError if nothing knows it."""
        if not _valid_name(name):
            raise QueueNotFoundError(name)
        queue = self.queue(name)
        k = queue.keys
        registered, keys, partitions = await pipelined([
            (self.client, lambda pipe: pipe.sismember(self._registry, name)),
            (queue.client, lambda pipe: pipe.exists(
                k.meta, k.id, k.events, k.wait, k.prioritized, k.delayed, k.active,
                k.completed, k.failed, k.state_key("waiting-children"), k.schedulers,
                k.workers)),
            (queue.client, lambda pipe: pipe.hget(k.meta, "partitions")),
        ])
        for reply in (registered, keys, partitions):
            if isinstance(reply, Exception):
                raise reply
        if not registered and not keys and name not in self.explicit_queues:
            raise QueueNotFoundError(name)
        return self._partitioned(queue, partitions)

    def _partitioned(self, queue: Queue, partitions: Any) -> Queue:
        """``queue`` as the partitioned queue its meta says it is (cached), if it is one."""
        if partitions is None or isinstance(queue, PartitionedQueue):
            return queue
        found = self._queues[queue.name] = Queue(
            queue.name, self.connector, prefix=self.prefix, partitions=int(partitions))
        return found

    # -- summaries ------------------------------------------------------------------

    async def summary(self, name: str) -> QueueSummary:
        """Counts, workers, rates and timings of one queue."""
        queue = await self._existing(name)
        k = queue.keys
        async with queue.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hmget(k.meta, ["paused", "concurrency"])
            pipe.zrevrange(k.completed, 0, 0, withscores=True)
            now_reply, (paused, concurrency), newest = await pipe.execute()
        now = time_ms(now_reply)
        since = now - (RATE_MINUTES - 1) * MINUTE_MS
        counts, completed, failed, timings, workers = await asyncio.gather(
            queue.get_job_counts(), queue.get_metrics("completed", since, now),
            queue.get_metrics("failed", since, now), queue.get_timings(RATE_MINUTES),
            queue.get_workers(),
        )
        named = {state.replace("-", "_"): counts[state] for state in STATES}
        return QueueSummary(
            name=name, counts=named, total=sum(named.values()), workers=len(workers),
            completed_per_min=round(completed.total / RATE_MINUTES, 3),
            failed_per_min=round(failed.total / RATE_MINUTES, 3),
            wait_p50_ms=timings.wait.p50, wait_p95_ms=timings.wait.p95,
            processing_p50_ms=timings.processing.p50, processing_p95_ms=timings.processing.p95,
            last_completed_ms=(await queue.last_completed_ms()
                               if isinstance(queue, PartitionedQueue)
                               else int(newest[0][1]) if newest else None),
            global_concurrency=None if concurrency is None else int(concurrency),
            is_paused=paused is not None,
        )

    async def summaries(self) -> list[QueueSummary]:
        """The summary of every known queue, by name."""
        async def one(name: str) -> QueueSummary | None:
            async with self._limit:
                try:
                    return await self.summary(name)
                except QueueNotFoundError:  # deleted since it was listed
                    return None

        found = await asyncio.gather(*(one(name) for name in await self.queue_names()))
        return [summary for summary in found if summary is not None]

    # -- jobs -----------------------------------------------------------------------------

    async def jobs(self, name: str, state: str, *, start: int = 0, count: int = 20) -> JobPage:
        """``count`` jobs in ``state`` from ``start``, newest first ("waiting":
        the wait list, in reverse order of running), and the state's total. Rows
        carry previews: see :class:`JobSummary`'s ``*_truncated``."""
        state = _state(state)
        check_int("start", start, 0)
        check_int("count", count, 1, 1000)
        queue = await self._existing(name)
        total, rows = await read_page(queue, state, start, count)
        return JobPage(name, state, start, count, total, rows)

    async def search(self, name: str, state: str, query: JobQuery | None = None, *,
                     cursor: str | None = None, count: int = 20, scan: int = 1000) -> SearchPage:
        """Jobs in ``state`` matching ``query``, a bounded step at a time: see
        :func:`conveyor.inspection.search.search_jobs`."""
        queue = await self._existing(name)
        return await search_jobs(queue, state, query, cursor=cursor, count=count, scan=scan)

    async def job(self, name: str, job_id: str) -> JobDetail:
        """Everything about one job."""
        job_id = validate_job_id(job_id)  # before the queue: a 422 whether or not it exists
        queue = await self._existing(name)
        job = await queue.get_job(job_id)
        if job is None:
            raise JobNotFoundError(name, job_id)
        state, logs, logs_total, delayed_score, history = await asyncio.gather(
            queue.get_job_state(job_id),
            job.get_logs(-DETAIL_LOG_LINES, -1),
            job.queue.client.llen(job.queue.keys.logs(job_id)),  # job.queue: its partition
            job.queue.client.zscore(job.queue.keys.delayed, job_id),
            read_history(job),
        )
        due = None if delayed_score is None else delayed_due(delayed_score)
        return JobDetail(
            queue=name, summary=JobSummary.from_job(job, state, due), data=job.data,
            opts=job.opts.to_json(), return_value=job.return_value,
            stacktrace=list(job.stacktrace), logs=logs, logs_total=int(logs_total),
            parent_key=job.parent_key, dead_letter_of=job.dead_letter_of,
            timeline=_timeline(job, state, due),
            attempt_timeline=attempt_records(job, state, history),
        )

    # -- actions -----------------------------------------------------------------------

    async def retry(self, name: str, job_id: str) -> None:
        """Send a failed or completed job back to waiting (JobStateError otherwise)."""
        job_id = validate_job_id(job_id)
        queue = await self._existing(name)
        await queue.retry_job(job_id)

    async def retry_all(
        self, name: str, state: str = "failed", *, progress: Progress | None = None
    ) -> int:
        """Send every ``failed`` (or ``completed``) job back to waiting, in atomic
        batches of at most 1,000; returns how many. Jobs finishing again while
        it runs are not retried twice."""
        if state not in FINISHED:
            raise ValidationError("state", f"must be 'failed' or 'completed', got {state!r}", state)
        queue = await self._existing(name)
        total = (await queue.get_job_counts(state))[state]

        def report(done: int) -> None:
            if progress is not None:
                progress(done, max(total, done))

        return await queue.retry_jobs(state, BATCH, progress=report)

    async def clean(
        self,
        name: str,
        *,
        state: str = "completed",
        grace_ms: int = 0,
        limit: int | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Remove jobs in ``state`` at least ``grace_ms`` old (up to ``limit``),
        in batches of at most 1,000; returns how many. See ``Queue.clean``."""
        if state not in CLEANABLE_STATES:
            raise ValidationError(
                "state", f"cannot clean {state!r}; one of {', '.join(CLEANABLE_STATES)}", state
            )
        check_int("grace_ms", grace_ms, 0)
        if limit is not None:
            check_int("limit", limit, 1)
        queue = await self._existing(name)
        key = queue.keys.state_key(state)
        present = await (queue.get_job_counts(state) if isinstance(queue, PartitionedQueue)
                         else queue.client.llen(key) if state == JobState.WAITING
                         else queue.client.zcard(key))
        if isinstance(present, dict):
            present = present[state]
        # Bounded by what was there at the start, so a busy queue cannot keep it going.
        total = int(present) if limit is None else min(limit, int(present))
        if not total:
            return 0

        def report(done: int) -> None:
            if progress is not None:
                progress(done, total)

        return len(await queue.clean(grace_ms, total, state, progress=report))

    async def pause(self, name: str) -> None:
        """Stop workers from starting the queue's jobs; adds still land."""
        await (await self._existing(name)).pause()

    async def resume(self, name: str) -> None:
        """Let workers start the queue's jobs again."""
        await (await self._existing(name)).resume()

    async def promote(self, name: str, job_id: str) -> None:
        """Run a delayed job now (JobStateError if it is not delayed)."""
        job_id = validate_job_id(job_id)
        queue = await self._existing(name)
        job = await queue.get_job(job_id)
        if job is None:
            raise JobNotFoundError(name, job_id)
        await job.promote()

    async def remove(self, name: str, job_id: str) -> None:
        """Delete a job (JobStateError while a worker holds it)."""
        job_id = validate_job_id(job_id)
        queue = await self._existing(name)
        if not await queue.remove(job_id):
            raise JobNotFoundError(name, job_id)

    async def enqueue(
        self, name: str, job_name: str, data: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> Job:
        """Add a job (the queue need not exist yet); ``options`` are those of
        ``Queue.add`` (``delay``, ``priority``, ``attempts``, ``job_id``, ...)."""
        options = dict(options or {})
        for option in options:
            if option not in OPTION_NAMES or option in _FLOW_OPTIONS:
                raise ValidationError(f"options.{option}", "unknown job option", option)
        queue = self.queue(validate_queue_name(name))
        partitions = await queue.client.hget(queue.keys.meta, "partitions")
        return await self._partitioned(queue, partitions).add(job_name, data, **options)

    async def job_summary(self, name: str, job: Job) -> JobSummary:
        """A job (say, one :meth:`enqueue` returned) as a summary with its state now."""
        return JobSummary.from_job(job, await self.queue(name).get_job_state(job.id))

    # -- schedulers and workers -----------------------------------------------------------

    async def schedulers(self, name: str) -> list[SchedulerInfo]:
        """The queue's job schedulers, soonest next job first."""
        queue = await self._existing(name)
        found = await queue.get_job_schedulers()
        runs = await asyncio.gather(*(last_runs(queue, s) for s in found))
        return [
            SchedulerInfo(
                id=s.id, every_ms=s.every, cron=s.cron, tz=s.tz, next_run_ms=epoch_ms(s.next_run),
                count=s.count, limit=s.limit, start_date_ms=epoch_ms(s.start_date),
                end_date_ms=epoch_ms(s.end_date), missed=s.missed, job_name=s.job_name,
                data=s.data, opts=s.opts.to_json(), last_runs=r,
            )
            for s, r in zip(found, runs, strict=True)
        ]

    async def workers(self, name: str) -> list[WorkerInfo]:
        """The queue's live workers, oldest first."""
        return await (await self._existing(name)).get_workers()

    # -- metrics and health ---------------------------------------------------------------

    async def throughput(self, name: str, minutes: int = 60) -> Throughput:
        """Jobs completed and failed (for good) in each of the last ``minutes``
        minutes (this one included), oldest first."""
        check_int("minutes", minutes, 1, MAX_THROUGHPUT_MINUTES)
        queue = await self._existing(name)
        now = time_ms(await queue.client.time())
        since = now - (minutes - 1) * MINUTE_MS
        completed, failed = await asyncio.gather(
            queue.get_metrics("completed", since, now), queue.get_metrics("failed", since, now)
        )
        points = []
        for (at, done), (_, lost) in zip(completed.points, failed.points, strict=True):
            ms = epoch_ms(at)
            points.append({"at": iso(ms), "at_ms": ms, "completed": done, "failed": lost})
        return Throughput(name, points)

    async def health(self, name: str) -> QueueHealth:
        """The queue's health by the inspector's :class:`HealthThresholds`."""
        return await self._health(await self.summary(name))

    async def _health(self, summary: QueueSummary) -> QueueHealth:
        return await judge(summary, self.thresholds, lambda: self._stalled(summary))

    async def _stalled(self, summary: QueueSummary) -> bool:
        """Has the oldest waiting job waited stalled_minutes with no job completed since?"""
        window = self.thresholds.stalled_minutes * MINUTE_MS
        now, ends = await ready_ends(self.queue(summary.name))
        if summary.last_completed_ms is not None and now - summary.last_completed_ms < window:
            return False
        if not ends:
            return False
        replies = await pipelined([
            (part.client, _command("hget", part.keys.job(job_id), "ts")) for part, job_id in ends])
        # A corrupt job (its key not a hash, its ts not a number) has no say.
        added = [int(ts) for ts in replies if isinstance(ts, bytes | str) and text(ts).isdigit()]
        return bool(added) and now - min(added) >= window

    async def dashboard(self) -> Dashboard:
        """Every queue's health, counts and performance, and the newest failures."""
        summaries = await self.summaries()
        health = list(await asyncio.gather(*(self._health(s) for s in summaries)))
        status: HealthStatus = worst(h.status for h in health)
        return Dashboard(status, health, summaries, await self._alerts(summaries))

    async def _alerts(self, summaries: Sequence[QueueSummary]) -> list[dict[str, Any]]:
        """The ALERTS newest failed jobs over all queues (2 pipelined round trips)."""
        names: list[str] = []
        parts: dict[str, tuple[str, Queue]] = {}  # a partition's name -> (its queue's, it)
        for summary in summaries:
            queue = self.queue(summary.name)
            if not summary.counts["failed"]:
                continue
            if isinstance(queue, PartitionedQueue):
                parts.update((p.name, (queue.name, p)) for p in queue.partitions)
                names += [p.name for p in queue.partitions]
            else:
                names.append(queue.name)
        alerts = await read_alerts(
            lambda n: parts[n][1] if n in parts else self.queue(n), names, ALERTS)
        for alert in alerts:
            alert["queue"] = parts.get(alert["queue"], (alert["queue"],))[0]
        return alerts


# -- helpers ------------------------------------------------------------------------------


def _command(name: str, *args: Any) -> Callable[[Pipeline], Any]:
    """A call for :func:`pipelined`: queue command ``name`` with ``args``."""
    return lambda pipe: getattr(pipe, name)(*args)


def _timeline(job: Job, state: str | None, due: int | None) -> list[dict[str, Any]]:
    """What happened to the job when, from its own fields (no event reads);
    ``due``: when a delayed job is due (its delay may have changed since it was added)."""
    events: list[tuple[str, int]] = [("added", job.timestamp)]
    if due is not None:
        events.append(("delayed until", due))
    elif job.opts.delay:
        events.append(("delayed until", job.timestamp + job.opts.delay))
    if job.processed_on is not None:
        events.append(("started", job.processed_on))
    if job.finished_on is not None:
        final = state if state in FINISHED else "finished"
        events.append((final or "finished", job.finished_on))
    if job.dead_letter_of and isinstance(job.dead_letter_of.get("failed_on"), int):
        events.append(("failed in " + str(job.dead_letter_of.get("queue")),
                       job.dead_letter_of["failed_on"]))
    events.sort(key=lambda e: e[1])
    return [{"event": event, "at_ms": at, "at": iso(at)} for event, at in events]


def _state(state: object) -> str:
    if not isinstance(state, str) or state.replace("_", "-") not in STATES:
        raise ValidationError("state", f"unknown job state {state!r}; expected one of "
                              f"{', '.join(STATES)}", state)
    return state.replace("_", "-")


def _valid_name(name: str) -> bool:
    try:
        validate_queue_name(name)
    except ValidationError:
        return False
    return True

