"""The task app: tasks registered, scheduled and run.

::

    app = Conveyor("redis://localhost:6379/0")

    @app.task(queue="email", attempts=3, backoff={"type": "exponential", "delay": 2000})
    async def send_email(to: str, subject: str) -> dict[str, bool]:
        ...

    job = await send_email.enqueue(to="ada@example.com", subject="Hi")

    @app.cron("0 9 * * *", tz="Europe/Berlin")     # = app.schedule(cron=..., tz=...)
    @app.task(queue="reports")
    async def daily_report() -> None: ...

    await app.run(["email", "reports"], concurrency=50)   # or: conveyor worker module:app

What a task is and how a call becomes a job is :mod:`conveyor.tasks` (its
names are importable from here too). One :class:`~conveyor.Worker` per queue
runs every task of that queue, choosing the function by the job's name.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypedDict, TypeVar, Unpack, overload

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import tracing
from ._attempt import Attempts
from ._cluster import Connector, connect
from ._run_limits import share_limits
from ._schedule import MissedPolicy, check_scheduler_id, parse_schedule
from .connection import REDIS_DOWN, AsyncClosing, Connection
from .errors import UnrecoverableError, ValidationError
from .job import Job
from .keys import validate_prefix
from .options import BackoffSpec, Duration, RetentionSpec, validate_job_name
from .queue import Queue
from .sandbox import SandboxPool, make_pool, task_reference
from .schedulers import JobScheduler
from .sync import SyncJob
from .tasks import (
    TASK_OPTIONS,
    Task,
    TaskArgumentsError,
    TaskCall,
    TaskOptions,
    check_options,
    checked_queue_name,
    current_job,
    current_job_var,
    current_sync_job,
    current_sync_job_var,
)
from .worker import Worker

if TYPE_CHECKING:
    from . import sync

__all__ = [
    "Conveyor",
    "ScheduleArguments",
    "ScheduleOptions",
    "Task",
    "TaskArgumentsError",
    "TaskCall",
    "TaskOptions",
    "current_job",
    "current_sync_job",
]

log = logging.getLogger("conveyor.app")

P = ParamSpec("P")
R = TypeVar("R")


class ScheduleOptions(TypedDict, total=False):
    """Job options a cron or interval schedule may set for its jobs (a
    schedule sets ``job_id`` and ``delay`` itself, and makes one job per slot)."""

    priority: int
    attempts: int
    backoff: BackoffSpec
    lifo: bool
    timeout: Duration | None
    remove_on_complete: RetentionSpec
    remove_on_fail: RetentionSpec
    dead_letter_queue: str | None
    group: str | None


class ScheduleArguments(ScheduleOptions, total=False):
    """What :meth:`Conveyor.cron` and :meth:`Conveyor.every` pass on to
    :meth:`Conveyor.schedule`: its arguments but the timing, and job options."""

    queue: str | None
    scheduler_id: str | None
    kwargs: Mapping[str, Any] | None
    start_date: datetime | int | None
    end_date: datetime | int | None
    limit: int | None
    immediately: bool
    missed: MissedPolicy


SCHEDULE_OPTIONS = ScheduleOptions.__optional_keys__
#: What configure_worker may set: the Worker's options but those the app owns.
WORKER_OPTIONS = frozenset(inspect.signature(Worker.__init__).parameters) - {
    "self", "queue_name", "processor", "connection", "prefix"
}


@dataclass(frozen=True, slots=True)
class _Schedule:
    task: Task[Any, Any]
    scheduler_id: str
    every: int | timedelta | None
    cron: str | None
    tz: str
    kwargs: dict[str, Any]
    start_date: datetime | int | None
    end_date: datetime | int | None
    limit: int | None
    immediately: bool
    missed: MissedPolicy
    options: dict[str, Any]

    async def upsert(self, queue: Queue) -> JobScheduler:
        # The task's job options apply, but those a schedule sets or refuses.
        defaults = {k: v for k, v in self.task.options.items() if k in SCHEDULE_OPTIONS}
        return await queue.upsert_job_scheduler(
            self.scheduler_id, every=self.every, cron=self.cron, tz=self.tz,
            start_date=self.start_date, end_date=self.end_date, limit=self.limit,
            immediately=self.immediately, missed=self.missed, job_name=self.task.name,
            data=self.kwargs, **{**defaults, **self.options},
        )


class Conveyor(AsyncClosing):
    """An application's tasks, their schedules and the connection they share.

    ``connection`` is a URL, a ``redis.asyncio.Redis`` (used as is, not closed)
    or ``None`` for ``$CONVEYOR_REDIS_URL`` / ``redis://localhost:6379/0``; it
    can be replaced (``app.connection = url``) until the app is first used.
    Tasks without a ``queue`` go to ``default_queue``. ``tracer_provider``: an
    OpenTelemetry provider for the spans of :mod:`conveyor.tracing` (default:
    the global one).
    """

    def __init__(
        self,
        connection: Connection = None,
        *,
        prefix: str = "conveyor",
        default_queue: str = "default",
        tracer_provider: Any = None,
    ) -> None:
        self.connection = connection
        self.prefix = validate_prefix(prefix)
        self.default_queue = checked_queue_name(default_queue)
        self.tracer_provider = tracer_provider
        self._tasks: dict[str, dict[str, Task[Any, Any]]] = {}  # queue -> name -> task
        self._schedules: dict[tuple[str, str], _Schedule] = {}
        self._connector: Connector | None = None
        self._owns_connector = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, Queue] = {}
        self._sync_queues: dict[str, sync.Queue] = {}
        self._sync_lock = threading.Lock()
        self._workers: list[Worker] = []
        self._worker_options: dict[str, dict[str, Any]] = {}  # queue -> Worker options

    def __repr__(self) -> str:
        return f"<Conveyor tasks={len(self.tasks)} queues={self.queue_names()}>"

    # -- registering ----------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...

    @overload
    def task(
        self, *, queue: str | None = None, name: str | None = None, sandbox: bool = False,
        **options: Unpack[TaskOptions],
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, fn: Callable[..., Any] | None = None, *, queue: str | None = None,
        name: str | None = None, sandbox: bool = False, **options: Unpack[TaskOptions],
    ) -> Any:
        """Register a function (``async def`` or plain ``def``) as a task:
        ``@app.task`` or ``@app.task(queue="email", attempts=3, ...)`` with any
        job option of :meth:`conveyor.Queue.add` as the task's default. The
        task's name (default: the function's ``__name__``) names its jobs; it
        must be unique on its queue. A plain ``def`` runs in a worker thread;
        with ``sandbox=True`` either kind runs in a child process of the worker,
        which a timeout or cancel kills (see :mod:`conveyor.sandbox`)."""
        queue_name = self.default_queue if queue is None else checked_queue_name(queue)
        check_options(options, TASK_OPTIONS, "task")
        if not isinstance(sandbox, bool):
            raise ValidationError("sandbox", f"must be a bool, got {sandbox!r}")

        def register(fn: Callable[P, R]) -> Task[P, R]:
            if isinstance(fn, Task):
                raise ValidationError("fn", f"{fn.name!r} is already a task")
            task_name = fn.__name__ if name is None else name
            if not isinstance(task_name, str) or not task_name:
                raise ValidationError("name", f"must be a non-empty str, got {task_name!r}")
            validate_job_name(task_name)  # a task's name is its jobs' name
            on_queue = self._tasks.setdefault(queue_name, {})
            if task_name in on_queue:
                raise ValidationError(
                    "name", f"a task named {task_name!r} is already registered on queue "
                    f"{queue_name!r}"
                )
            if sandbox:  # checked now; the module's attribute is set after the decorator
                task_reference(fn, checked=False)
            task = Task(
                self, fn, name=task_name, queue=queue_name, options=options, sandbox=sandbox
            )
            on_queue[task_name] = task
            return task

        return register if fn is None else register(fn)

    def schedule(
        self,
        *,
        cron: str | None = None,
        every: int | timedelta | None = None,
        tz: str = "UTC",
        queue: str | None = None,
        scheduler_id: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        start_date: datetime | int | None = None,
        end_date: datetime | int | None = None,
        limit: int | None = None,
        immediately: bool = False,
        missed: MissedPolicy = "run_once",
        **options: Unpack[ScheduleOptions],
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Run a task on a schedule: exactly one of ``cron`` (5 fields, or 6
        with seconds first, read in the IANA time zone ``tz``) and ``every`` (ms
        or ``timedelta``), on the task's queue, with the arguments ``kwargs``.
        Decorates a task, or a function that it makes a task of (on ``queue``).
        The scheduler (id: ``scheduler_id``, default the task's name) is upserted
        whenever a worker of the queue starts; see
        :meth:`conveyor.Queue.upsert_job_scheduler` for the other arguments."""
        parse_schedule(every, cron, tz, start_date, end_date, limit, missed)  # refuse it now
        if not isinstance(immediately, bool):
            raise ValidationError("immediately", f"must be a bool, got {immediately!r}")
        check_options(options, SCHEDULE_OPTIONS, "schedule")
        if queue is not None:
            queue = checked_queue_name(queue)

        def register(fn: Callable[P, R]) -> Task[P, R]:
            if isinstance(fn, Task):
                task: Task[P, R] = fn
                if queue is not None and queue != task.queue:
                    raise ValidationError(
                        "queue", f"the schedule of task {task.name!r} runs on the task's "
                        f"queue {task.queue!r}, not {queue!r}"
                    )
            else:
                task = self.task(queue=queue)(fn)
            sid = check_scheduler_id(task.name if scheduler_id is None else scheduler_id)
            if (task.queue, sid) in self._schedules:
                raise ValidationError(
                    "scheduler_id", f"{sid!r} is already scheduled on queue {task.queue!r}; "
                    "give each schedule of a task its own scheduler_id"
                )
            data = task.arguments(**(kwargs or {}))
            self._schedules[task.queue, sid] = _Schedule(
                task, sid, every, cron, tz, data, start_date, end_date, limit, immediately,
                missed, dict(options),
            )
            return task

        return register

    def cron(
        self, expression: str, *, tz: str = "UTC", **arguments: Unpack[ScheduleArguments]
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """:meth:`schedule` with ``cron=expression``."""
        return self.schedule(cron=expression, tz=tz, **arguments)

    def every(
        self, interval: int | timedelta, **arguments: Unpack[ScheduleArguments]
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """:meth:`schedule` with ``every=interval`` (ms or ``timedelta``)."""
        return self.schedule(every=interval, **arguments)

    # -- what is registered ---------------------------------------------------

    @property
    def tasks(self) -> list[Task[Any, Any]]:
        """Every registered task."""
        return [task for on_queue in self._tasks.values() for task in on_queue.values()]

    def queue_names(self) -> list[str]:
        """The queues that have tasks, sorted."""
        return sorted(name for name, on_queue in self._tasks.items() if on_queue)

    def get_task(self, queue: str, name: str) -> Task[Any, Any] | None:
        """The task ``name`` of ``queue``, or ``None``."""
        return self._tasks.get(queue, {}).get(name)

    # -- connections ----------------------------------------------------------

    def queue(self, name: str) -> Queue:
        """The :class:`~conveyor.Queue` ``name`` on the app's connection (one
        Connector shared by every queue of the app, made on first use)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A client belongs to the loop it first ran on (a script may call
            # asyncio.run() more than once): start afresh on a new loop.
            self._connector, self._loop, self._queues = None, loop, {}
        if self._connector is None:
            self._connector, self._owns_connector = connect(self.connection)
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = Queue(name, self._connector, prefix=self.prefix)
        return queue

    def sync_queue(self, name: str) -> sync.Queue:
        """The blocking :class:`conveyor.sync.Queue` ``name`` (for ``enqueue_sync``)."""
        from . import sync

        if isinstance(self.connection, Redis | RedisCluster | Connector):
            raise ValidationError(
                "connection", "enqueue_sync needs a Conveyor made with a URL (or None): "
                "an asyncio client cannot be used from synchronous code"
            )
        with self._sync_lock:
            queue = self._sync_queues.get(name)
            if queue is None:
                queue = self._sync_queues[name] = sync.Queue(
                    name, self.connection, prefix=self.prefix
                )
            return queue

    async def close(self) -> None:
        """Close the connections the app opened."""
        for queue in self._queues.values():
            await queue.close()
        if self._connector is not None and self._owns_connector:
            await self._connector.aclose()
        self._connector, self._queues = None, {}
        self.close_sync()

    def close_sync(self) -> None:
        """Close the blocking queues of ``enqueue_sync``."""
        with self._sync_lock:
            queues, self._sync_queues = self._sync_queues, {}
        for queue in queues.values():
            queue.close()

    # -- running --------------------------------------------------------------

    async def upsert_schedulers(self, queues: Iterable[str] | None = None) -> list[JobScheduler]:
        """Create or update the schedulers of the app's cron and interval
        schedules (of ``queues`` only, when given). Workers do it at start."""
        wanted = None if queues is None else set(queues)
        return [
            await schedule.upsert(self.queue(queue))
            for (queue, _), schedule in self._schedules.items()
            if wanted is None or queue in wanted
        ]

    def configure_worker(self, queue: str, **options: Any) -> None:
        """Settings of every worker of ``queue``, wherever it runs (:meth:`worker`,
        :meth:`run`, ``conveyor worker``): any option of :class:`~conveyor.Worker`
        but the queue, processor, connection and prefix, e.g. ``concurrency``,
        ``limiter``, ``backoff_strategy``, ``lock_duration``. Calling it again
        replaces the queue's settings; arguments of ``worker``/``run`` (and
        ``conveyor worker --concurrency``) win over them."""
        queue = checked_queue_name(queue)
        unknown = sorted(set(options) - WORKER_OPTIONS)
        if unknown:
            raise ValidationError(
                unknown[0], f"not an option of a worker; they are: "
                f"{', '.join(sorted(WORKER_OPTIONS))}"
            )
        self._worker_options[queue] = dict(options)

    def worker_options(self, queue: str) -> dict[str, Any]:
        """The settings :meth:`configure_worker` gave ``queue`` (a copy; ``{}`` if none)."""
        return dict(self._worker_options.get(queue, {}))

    def worker(self, queue: str, *, concurrency: int | None = None, **options: Any) -> Worker:
        """A :class:`~conveyor.Worker` running the tasks of ``queue``; it upserts
        the queue's schedulers when it starts. ``options`` are those of
        :class:`~conveyor.Worker`, over the queue's :meth:`configure_worker`
        settings; ``concurrency`` defaults to the configured one, else 1.
        ``sandbox=True`` runs every task of the queue in child processes (else
        only the tasks registered with ``sandbox=True``)."""
        queue = checked_queue_name(queue)
        connection = self.connection
        options = {**self._worker_options.get(queue, {}), **options}
        configured = options.pop("concurrency", 1)
        concurrency = configured if concurrency is None else concurrency
        options.setdefault("prefix", self.prefix)
        sandbox_all = options.pop("sandbox", False)
        tasks = self._tasks.get(queue, {}).values()
        pool = make_pool(
            sandbox_all or any(task.sandbox for task in tasks), concurrency,
            options.pop("max_jobs_per_child", None), options.pop("max_memory_per_child", None),
        )
        return _TaskWorker(
            self, queue, _Dispatcher(self, queue, pool, sandbox_all),
            connection=connection, concurrency=concurrency, **options,
        )

    async def run(
        self, queues: Iterable[str] | None = None, *, concurrency: int | None = None,
        default_concurrency: int = 1, **options: Any
    ) -> None:
        """Run one worker per queue (default: every queue with tasks) until
        SIGTERM/SIGINT or cancellation; ``options`` are those of
        :class:`~conveyor.Worker`, over each queue's :meth:`configure_worker`
        settings. ``concurrency`` applies to every queue; without it each queue
        has its configured concurrency, else ``default_concurrency``. With
        ``max_jobs`` the workers stop after that many jobs in all."""
        names = self.resolve_queues(queues)
        workers = [
            self.worker(
                name, concurrency=concurrency if concurrency is not None
                else self.worker_options(name).get("concurrency", default_concurrency),
                **options,
            )
            for name in names
        ]
        share_limits(workers)
        self._workers.extend(workers)
        runs = [asyncio.create_task(w.run(), name=f"conveyor-{w.name}") for w in workers]
        try:
            await asyncio.gather(*runs)
        finally:
            # One worker failing, or run() cancelled, stops the others too.
            await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
            await asyncio.gather(*runs, return_exceptions=True)
            for worker in workers:
                self._workers.remove(worker)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the workers of :meth:`run` as :meth:`conveyor.Worker.close`
        does (running jobs finish; after ``timeout`` seconds they are handed
        back to their queue); ``run`` then returns."""
        await asyncio.gather(*(w.close(timeout) for w in list(self._workers)))

    @property
    def running(self) -> bool:
        """Whether :meth:`run` has workers (they may still be starting)."""
        return bool(self._workers)

    def resolve_queues(self, queues: Iterable[str] | None = None) -> list[str]:
        """The queues a worker of the app serves: ``queues`` checked (each must
        have tasks), or every queue with tasks. Raises :class:`ValidationError`."""
        known = self.queue_names()
        if not known:
            raise ValidationError("tasks", "the app has no tasks")
        if queues is None:
            return known
        names = list(dict.fromkeys(checked_queue_name(q) for q in queues))
        if not names:
            raise ValidationError("queues", "name at least one queue")
        for name in names:
            if name not in known:
                raise ValidationError(
                    "queues", f"no task runs on queue {name!r}; the app's queues: "
                    f"{', '.join(known)}", name
                )
        return names


class _Dispatcher:
    """A worker's processor: runs the task a job names with the job's data."""

    #: The worker's attempts (set by _TaskWorker): plain ``def`` tasks run on its
    #: thread pool, as a plain ``def`` processor would.
    attempts: Attempts

    def __init__(
        self, app: Conveyor, queue: str, pool: SandboxPool | None = None,
        sandbox_all: bool = False,
    ) -> None:
        self.app = app
        self.queue = queue
        self._pool = pool
        self._sandbox_all = sandbox_all
        self._targets: dict[str, str] = {}  # task name -> "module:function"

    async def __call__(self, job: Job) -> Any:
        if not tracing.ENABLED:
            return await self._run(job, job.data)
        data = job.data
        carrier = None
        if isinstance(data, Mapping):
            data, carrier = tracing.split_carrier(data)
        with tracing.process_span(job, carrier, self.app.tracer_provider):
            return await self._run(job, data)

    async def _run(self, job: Job, data: Any) -> Any:
        task = self.app.get_task(self.queue, job.name)
        if task is None:
            known = ", ".join(sorted(self.app._tasks.get(self.queue, {}))) or "none"
            raise UnrecoverableError(
                f"no task named {job.name!r} on queue {self.queue!r} (its tasks: {known})"
            )
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise UnrecoverableError(
                f"the data of a {task.name!r} job must be a JSON object of keyword "
                f"arguments, got {type(data).__name__}"
            )
        kwargs = {k: v for k, v in data.items() if k != tracing.TRACE_KEY}
        try:
            task.signature.bind(**kwargs)
        except TypeError as exc:
            raise UnrecoverableError(f"arguments do not fit {task.name}(): {exc}") from None
        if self._pool is not None and (task.sandbox or self._sandbox_all):
            target = self._targets.get(task.name)
            if target is None:
                target = self._targets[task.name] = task_reference(task.fn)
            return await self._pool.run(job, target, kwargs)
        if task.is_async:
            token = current_job_var.set(job)
            try:
                return await task.fn(**kwargs)
            finally:
                current_job_var.reset(token)
        context = contextvars.copy_context()  # the trace's span, into the thread
        context.run(current_sync_job_var.set, SyncJob(job, asyncio.get_running_loop()))
        result = await self.attempts.in_thread(
            context.run, functools.partial(task.fn, **kwargs)
        )
        if inspect.isawaitable(result):  # a plain def wrapping an async function
            result = await result
        return result

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class _TaskWorker(Worker):
    """A worker of an app's queue: upserts the queue's schedulers as it starts."""

    def __init__(
        self, app: Conveyor, queue: str, dispatcher: _Dispatcher, **options: Any
    ) -> None:
        super().__init__(queue, dispatcher, **options)
        self.app = app
        self._dispatcher = dispatcher
        dispatcher.attempts = self._attempts

    async def run(self) -> None:
        try:
            await self._upsert_schedulers()
            await super().run()
        finally:
            await self._dispatcher.close()

    async def _upsert_schedulers(self) -> None:
        """Upsert the queue's schedules, waiting for Redis as the worker does
        (a worker may start before Redis is up)."""
        delay = 0.1
        for (queue, _), schedule in list(self.app._schedules.items()):
            while queue == self.queue.name and not self._closing:
                try:
                    await schedule.upsert(self.queue)
                    break
                except REDIS_DOWN as exc:
                    if delay == 0.1:
                        log.warning("schedulers of %r: no connection to Redis (%s); "
                                    "trying again", queue, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
