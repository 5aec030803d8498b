"""Conveyor for synchronous code (Django, Flask, scripts, plain ``def`` processors).

:class:`Queue` offers the producer and admin calls of :class:`conveyor.Queue`
as blocking methods; it runs the asyncio client on one background event loop
per process. :class:`SyncJob` is what a plain ``def`` processor receives: the
job's fields plus blocking ``update_progress``, ``log`` and friends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

import redis

from ._prepare import Prepared, chunks, new_job, prepare_bulk, prepare_job
from ._queue_base import refuse_if_partitioned
from ._scripts import blocking_add_jobs, blocking_atomic_and_wait, blocking_call_and_wait
from .connection import Connection
from .keys import registry_key
from .options import OPTION_NAMES

if TYPE_CHECKING:
    from .admin import Progress
    from .groups import GroupInfo
    from .job import Dependencies, Job, JobState
    from .metrics import MetricKind, MetricsSeries, Timings
    from .options import JobOptions
    from .queue import Queue as AsyncQueue
    from .schedulers import JobScheduler
    from .workers import WorkerInfo

__all__ = ["Queue", "SyncJob"]

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="conveyor-sync", daemon=True
            ).start()
            _loop = loop
        return _loop


def _run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class _OfJob(Generic[T]):
    """A read-only attribute of a :class:`SyncJob`: the same attribute of the
    asyncio :class:`~conveyor.Job` behind it, typed as there."""

    def __init__(self, doc: str | None = None) -> None:
        self.__doc__ = doc
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _OfJob[T]: ...
    @overload
    def __get__(self, obj: SyncJob, owner: type | None = None) -> T: ...
    def __get__(self, obj: SyncJob | None, owner: type | None = None) -> T | _OfJob[T]:
        if obj is None:
            return self
        value: T = getattr(obj._job, self._name)
        return value


class SyncJob:
    """A job seen from synchronous code; its calls block until Redis answers."""

    __slots__ = ("_job", "_loop")

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        self._job = job
        self._loop = loop

    def __repr__(self) -> str:
        return repr(self._job)

    @property
    def job(self) -> Job:
        """The underlying asyncio :class:`~conveyor.Job`."""
        return self._job

    id: _OfJob[str] = _OfJob()
    name: _OfJob[str] = _OfJob()
    data: _OfJob[Any] = _OfJob()
    opts: _OfJob[JobOptions] = _OfJob()
    attempts_made: _OfJob[int] = _OfJob()
    attempts_started: _OfJob[int] = _OfJob()
    stalled_count: _OfJob[int] = _OfJob()
    delay: _OfJob[int] = _OfJob()
    priority: _OfJob[int] = _OfJob()
    parent_key: _OfJob[str | None] = _OfJob(
        "Key of the parent job's hash when this job is a child in a flow.")
    corrupt: _OfJob[str | None] = _OfJob(
        "What is wrong with the job's hash when a field of it does not parse.")
    progress: _OfJob[Any] = _OfJob()
    return_value: _OfJob[Any] = _OfJob()
    failed_reason: _OfJob[str | None] = _OfJob()
    stacktrace: _OfJob[list[str]] = _OfJob()
    timestamp: _OfJob[int] = _OfJob()
    processed_on: _OfJob[int | None] = _OfJob()
    finished_on: _OfJob[int | None] = _OfJob()

    def update_progress(self, progress: int | float | dict[str, Any]) -> None:
        _run(self._loop, self._job.update_progress(progress))

    def log(self, line: str) -> int:
        return _run(self._loop, self._job.log(line))

    def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        return _run(self._loop, self._job.get_logs(start, end))

    def get_state(self) -> JobState | None:
        return _run(self._loop, self._job.get_state())

    def refresh(self) -> SyncJob:
        _run(self._loop, self._job.refresh())
        return self

    def retry(self, *, reset_attempts: bool = False) -> None:
        _run(self._loop, self._job.retry(reset_attempts=reset_attempts))

    def remove(self, *, remove_children: bool = True) -> None:
        _run(self._loop, self._job.remove(remove_children=remove_children))

    def wait_until_finished(self, timeout: float | None = None) -> Any:
        return _run(self._loop, self._job.wait_until_finished(timeout))

    def promote(self) -> None:
        _run(self._loop, self._job.promote())

    def change_delay(self, delay: int | timedelta) -> int:
        return _run(self._loop, self._job.change_delay(delay))

    def change_priority(self, priority: int, *, lifo: bool = False) -> None:
        _run(self._loop, self._job.change_priority(priority, lifo=lifo))

    cancel_reason: _OfJob[str | None] = _OfJob()
    is_cancelled: _OfJob[bool] = _OfJob(
        "True once ``Queue.cancel`` reached the worker: a plain ``def`` processor "
        "cannot be interrupted, so a long loop should check this.")
    dead_letter_of: _OfJob[dict[str, Any] | None] = _OfJob()

    def update_data(self, data: Any) -> None:
        _run(self._loop, self._job.update_data(data))

    def move_to_delayed(self, delay: int | timedelta) -> int:
        return _run(self._loop, self._job.move_to_delayed(delay))

    def get_children_values(self) -> dict[str, Any]:
        return _run(self._loop, self._job.get_children_values())

    def get_ignored_children_failures(self) -> dict[str, str]:
        return _run(self._loop, self._job.get_ignored_children_failures())

    def get_dependencies(self) -> Dependencies:
        return _run(self._loop, self._job.get_dependencies())


class Queue:
    """Blocking twin of :class:`conveyor.Queue` (same arguments, same methods)."""

    def __init__(self, name: str, connection: Connection = None, **kwargs: Any) -> None:
        from .queue import Queue as AsyncQueue

        self._loop = _background_loop()

        async def create() -> AsyncQueue:
            return AsyncQueue(name, connection, **kwargs)

        self._queue = _run(self._loop, create())
        # Adding is what a web request does: it goes straight to Redis on a
        # blocking client, not through the background loop (a thread hop each way).
        self._client = self._queue.connector.sync_client(self._queue.keys.base)
        self._add_jobs = (
            None if self._client is None else blocking_add_jobs(self._client)
        )
        if kwargs.get("partitions") is not None:
            self._add_jobs = None  # a partitioned queue routes each add: on the loop

    @property
    def name(self) -> str:
        return self._queue.name

    @property
    def prefix(self) -> str:
        return self._queue.prefix

    @property
    def default_job_options(self) -> dict[str, Any]:
        return self._queue.default_job_options

    @property
    def keep_logs(self) -> int:
        return self._queue.keep_logs

    @property
    def max_data_bytes(self) -> int:
        return self._queue.max_data_bytes

    def _register(self) -> None:
        """As Queue._register, on the blocking client."""
        if not self._queue._registered and self._client is not None:
            key = registry_key(self._queue.prefix)
            if self._queue.connector.cluster:  # the registry is in another slot
                with self._queue.connector.sync_client(key) as client:  # type: ignore[union-attr]
                    client.sadd(key, self._queue.name)
                partitions = self._client.hget(self._queue.keys.meta, "partitions")
            else:
                with self._client.pipeline(transaction=False) as pipe:
                    pipe.sadd(key, self._queue.name)
                    pipe.hget(self._queue.keys.meta, "partitions")
                    _, partitions = pipe.execute()
            refuse_if_partitioned(self._queue.name, partitions)
            self._queue._registered = True

    @property
    def queue(self) -> AsyncQueue:
        """The underlying asyncio queue (use it only on the background loop)."""
        return self._queue

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _job(self, job: Job | None) -> SyncJob | None:
        return None if job is None else SyncJob(job, self._loop)

    def add(self, name: str, data: Any = None, **options: Any) -> SyncJob:
        if self._add_jobs is None:
            return SyncJob(_run(self._loop, self._queue.add(name, data, **options)), self._loop)
        for option in options:
            if option not in OPTION_NAMES:  # as the asyncio add() would say
                raise TypeError(f"add() got an unexpected keyword argument {option!r}")
        prepared = prepare_job(self._queue, name, data, options)
        self._register()
        calls = self._queue.scripts.calls
        job = new_job(*prepared)
        call = calls.for_ids([job[0]])
        [reply] = self._call_add(*self._queue.scripts.add_jobs_layout([job], call))
        calls.answered(call)
        return self._added(reply, prepared, data)

    def add_bulk(self, jobs: Iterable[Mapping[str, Any]]) -> list[SyncJob]:
        if self._add_jobs is None or self._client is None:
            return [SyncJob(j, self._loop) for j in _run(self._loop, self._queue.add_bulk(jobs))]
        prepared_all, datas = prepare_bulk(self._queue, jobs)
        if not prepared_all:
            return []
        self._register()
        layout = self._queue.scripts.add_jobs_layout
        batches = chunks([new_job(*prepared) for prepared in prepared_all])
        calls = self._queue.scripts.calls
        tokens = [calls.for_ids(job[0] for job in chunk) for chunk in batches]
        if len(batches) == 1:
            replies = self._call_add(*layout(batches[0], tokens[0]))
        else:
            add_jobs = self._add_jobs

            def fill(pipe: redis.client.Pipeline) -> None:
                for chunk, token in zip(batches, tokens, strict=True):
                    add_jobs(*layout(chunk, token), client=pipe)

            parts = blocking_atomic_and_wait(self._client, fill, "add_jobs",
                                             self._queue.scripts.durability, self.name)
            replies = [reply for part in parts for reply in part]
        for token in tokens:
            calls.answered(token)
        return [
            self._added(reply, prepared, data)
            for reply, prepared, data in zip(replies, prepared_all, datas, strict=True)
        ]

    def _call_add(self, keys: list[str], args: list[Any]) -> Any:
        """add_jobs on the blocking client (WAIT after it for a durable queue)."""
        assert self._add_jobs is not None and self._client is not None
        durability = self._queue.scripts.durability
        if durability is None:
            return self._add_jobs(keys, args)
        return blocking_call_and_wait(self._client, self._add_jobs, "add_jobs", keys, args,
                                      durability, self.name)

    def _added(
        self, reply: Sequence[Any], prepared: Prepared, data: Any
    ) -> SyncJob:
        job = self._queue._created_job(reply, prepared, data) or _run(
            self._loop, self._queue._job_from_add(reply, prepared, data)
        )  # the id existed: that job, as it is now
        return SyncJob(job, self._loop)

    def get_job(self, job_id: str) -> SyncJob | None:
        return self._job(_run(self._loop, self._queue.get_job(job_id)))

    def get_job_state(self, job_id: str) -> JobState | None:
        return _run(self._loop, self._queue.get_job_state(job_id))

    def get_job_counts(self, *states: str) -> dict[str, int]:
        return _run(self._loop, self._queue.get_job_counts(*states))

    def get_jobs(
        self, states: str | Sequence[str], start: int = 0, end: int = -1, asc: bool = False
    ) -> list[SyncJob]:
        jobs = _run(self._loop, self._queue.get_jobs(states, start, end, asc))
        return [SyncJob(j, self._loop) for j in jobs]

    def pause(self) -> None:
        _run(self._loop, self._queue.pause())

    def resume(self) -> None:
        _run(self._loop, self._queue.resume())

    def is_paused(self) -> bool:
        return _run(self._loop, self._queue.is_paused())

    def remove(self, job_id: str, *, remove_children: bool = True) -> bool:
        return _run(self._loop, self._queue.remove(job_id, remove_children=remove_children))

    def retry_job(self, job_id: str, *, reset_attempts: bool = False) -> None:
        _run(self._loop, self._queue.retry_job(job_id, reset_attempts=reset_attempts))

    def update_data(self, job_id: str, data: Any) -> None:
        _run(self._loop, self._queue.update_data(job_id, data))

    def clean(
        self, grace_ms: int | timedelta, limit: int = 0, state: str = "completed",
        *, progress: Progress | None = None,
    ) -> list[str]:
        return _run(self._loop, self._queue.clean(grace_ms, limit, state, progress=progress))

    def drain(self, delayed: bool = False) -> int:
        return _run(self._loop, self._queue.drain(delayed))

    def obliterate(self, force: bool = False) -> None:
        _run(self._loop, self._queue.obliterate(force))

    def retry_jobs(
        self, state: str = "failed", count: int = 1000, *, reset_attempts: bool = False,
        progress: Progress | None = None,
    ) -> int:
        return _run(self._loop, self._queue.retry_jobs(
            state, count, reset_attempts=reset_attempts, progress=progress))

    def promote_jobs(self, count: int = 1000) -> int:
        return _run(self._loop, self._queue.promote_jobs(count))

    def get_dead_letter(self, start: int = 0, end: int = -1) -> list[SyncJob]:
        jobs = _run(self._loop, self._queue.get_dead_letter(start, end))
        return [SyncJob(j, self._loop) for j in jobs]

    def get_dead_letter_count(self) -> int:
        return _run(self._loop, self._queue.get_dead_letter_count())

    def get_workers(self, start: int = 0, end: int = -1) -> list[WorkerInfo]:
        return _run(self._loop, self._queue.get_workers(start, end))

    def upsert_job_scheduler(self, scheduler_id: str, **options: Any) -> JobScheduler:
        """See :meth:`conveyor.Queue.upsert_job_scheduler` (same keyword arguments)."""
        return _run(self._loop, self._queue.upsert_job_scheduler(scheduler_id, **options))

    def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        return _run(self._loop, self._queue.get_job_scheduler(scheduler_id))

    def get_job_schedulers(self, start: int = 0, end: int = -1) -> list[JobScheduler]:
        return _run(self._loop, self._queue.get_job_schedulers(start, end))

    def remove_job_scheduler(self, scheduler_id: str) -> bool:
        return _run(self._loop, self._queue.remove_job_scheduler(scheduler_id))

    def run_job_scheduler_now(self, scheduler_id: str) -> str | None:
        return _run(self._loop, self._queue.run_job_scheduler_now(scheduler_id))

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        return _run(self._loop, self._queue.cancel(job_id, reason))

    def set_global_concurrency(self, n: int | None) -> None:
        _run(self._loop, self._queue.set_global_concurrency(n))

    def get_global_concurrency(self) -> int | None:
        return _run(self._loop, self._queue.get_global_concurrency())

    def rate_limit(self, delay: int | timedelta) -> None:
        _run(self._loop, self._queue.rate_limit(delay))

    def get_deduplication_job_id(self, key: str) -> str | None:
        return _run(self._loop, self._queue.get_deduplication_job_id(key))

    def remove_deduplication_key(self, key: str) -> bool:
        return _run(self._loop, self._queue.remove_deduplication_key(key))

    def set_group_concurrency(self, n: int | None) -> None:
        _run(self._loop, self._queue.set_group_concurrency(n))

    def set_group_limit(self, max: int | None, duration: int | timedelta = 1000) -> None:
        _run(self._loop, self._queue.set_group_limit(max, duration))

    def get_groups(self) -> list[GroupInfo]:
        return _run(self._loop, self._queue.get_groups())

    def get_group_jobs(self, group: str, start: int = 0, end: int = -1) -> list[str]:
        return _run(self._loop, self._queue.get_group_jobs(group, start, end))

    def get_metrics(
        self,
        kind: MetricKind,
        start: datetime | int | None = None,
        end: datetime | int | None = None,
    ) -> MetricsSeries:
        return _run(self._loop, self._queue.get_metrics(kind, start, end))

    def get_timings(self, minutes: int = 5) -> Timings:
        return _run(self._loop, self._queue.get_timings(minutes))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        _run(self._loop, self._queue.close())
