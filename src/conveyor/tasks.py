"""Tasks: functions as jobs, typed like the functions themselves.

A :class:`Task` is a function registered with :meth:`conveyor.app.Conveyor.task`.
Its jobs are named after it and their data is the call's arguments bound to
the function's parameters, as a dict of keyword arguments, so any producer
(``conveyor enqueue``, the REST API, another language) can make one. This
module holds what a task is and how a call becomes a job (argument checking,
job options, the trace context); :mod:`conveyor.app` holds the app that
registers, schedules and runs them. Every public name here is also importable
from :mod:`conveyor.app`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack

import orjson

from . import tracing
from ._util import is_async_callable
from .errors import ValidationError
from .job import Job
from .options import BackoffSpec, Duration, JobOptions, RetentionSpec, validate_queue_name
from .sync import SyncJob

if TYPE_CHECKING:
    from . import sync
    from .app import Conveyor
    from .queue import Queue

__all__ = [
    "Task",
    "TaskArgumentsError",
    "TaskCall",
    "TaskOptions",
    "current_job",
    "current_sync_job",
]

P = ParamSpec("P")
R = TypeVar("R")


class TaskOptions(TypedDict, total=False):
    """Job options a task (or one call, through ``with_options``) may set:
    those of :meth:`conveyor.Queue.add`."""

    job_id: str | None
    delay: Duration
    priority: int
    attempts: int
    backoff: BackoffSpec
    lifo: bool
    timeout: Duration | None
    remove_on_complete: RetentionSpec
    remove_on_fail: RetentionSpec
    deduplication: Mapping[str, Any] | None
    dead_letter_queue: str | None
    group: str | None


TASK_OPTIONS = TaskOptions.__optional_keys__


class TaskArgumentsError(ValidationError, TypeError):
    """The arguments of an ``enqueue`` do not fit the task's parameters (raised
    before anything is written; a ``TypeError`` as a wrong call would be)."""


#: The parameter a signature.bind() TypeError names ("missing a required argument: 'to'").
_QUOTED = re.compile(r"'([^']+)'")

#: The running job of an ``async def`` task, and of a plain ``def`` task: set by
#: the app's dispatcher and by a sandbox's child process around the call.
current_job_var: contextvars.ContextVar[Job] = contextvars.ContextVar("conveyor_job")
current_sync_job_var: contextvars.ContextVar[SyncJob] = contextvars.ContextVar(
    "conveyor_sync_job"
)


def current_job() -> Job:
    """The job an ``async def`` task is running for (to report progress or log)."""
    try:
        return current_job_var.get()
    except LookupError:
        raise RuntimeError("current_job() is only available inside an async task") from None


def current_sync_job() -> SyncJob:
    """The job a plain ``def`` task is running for, with blocking methods."""
    try:
        return current_sync_job_var.get()
    except LookupError:
        raise RuntimeError("current_sync_job() is only available inside a def task") from None


def check_options(options: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    """Refuse an option not in ``allowed`` or a bad value, naming the field."""
    for option in options:
        if option not in allowed:
            raise ValidationError(
                option, f"unknown {what} option; expected one of {', '.join(sorted(allowed))}"
            )
    JobOptions.parse(options)  # refuse bad values now, naming the field


def checked_queue_name(name: object) -> str:
    """A valid queue name, or a :class:`ValidationError` naming the ``queue`` field."""
    try:
        return validate_queue_name(name)
    except ValidationError as exc:
        raise ValidationError("queue", str(exc).split(": ", 1)[1], name) from None


class Task(Generic[P, R]):
    """A function registered with :meth:`Conveyor.task`. Calling it calls the
    function; :meth:`enqueue` makes a job that a worker runs it for."""

    def __init__(
        self, app: Conveyor, fn: Callable[P, R], *, name: str, queue: str,
        options: Mapping[str, Any], sandbox: bool = False,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.options = dict(options)
        #: Run in a child process of the worker (see conveyor.sandbox).
        self.sandbox = sandbox
        self.signature = inspect.signature(fn)
        self.is_async = is_async_callable(fn)
        self._var_keyword: str | None = None
        for param in self.signature.parameters.values():
            if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
                raise ValidationError(
                    param.name, f"{name}(): a task's arguments are stored by name, so it "
                    "cannot take positional-only parameters or *args"
                )
            if param.kind is param.VAR_KEYWORD:
                self._var_keyword = param.name
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def arguments(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The job data for this call: the arguments bound to the function's
        parameters, as keyword arguments. Raises :class:`TaskArgumentsError`."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            named = _QUOTED.search(str(exc))
            field = named.group(1) if named else "arguments"
            raise TaskArgumentsError(field, f"{self.name}() {exc}") from None
        data = dict(bound.arguments)
        if self._var_keyword is not None and self._var_keyword in data:
            data.update(data.pop(self._var_keyword))
        if tracing.TRACE_KEY in data:
            raise TaskArgumentsError(tracing.TRACE_KEY, "is reserved for the trace context")
        return data

    def with_options(self, **options: Unpack[TaskOptions]) -> TaskCall[P, R]:
        """The same task with these job options for the next enqueue
        (``delay``, ``job_id``, ``priority``...: see :meth:`conveyor.Queue.add`)."""
        return TaskCall(self, {**self.options, **_checked(options)})

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Add a job that runs this task with these arguments; returns it."""
        return await _enqueue(self, self.options, args, kwargs)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> SyncJob:
        """:meth:`enqueue` for synchronous code (Django, Flask, scripts): blocks
        until Redis has the job."""
        return _enqueue_sync(self, self.options, args, kwargs)


class TaskCall(Generic[P, R]):
    """A task with job options for one enqueue: ``task.with_options(...)``."""

    def __init__(self, task: Task[P, R], options: Mapping[str, Any]) -> None:
        self.task = task
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"<TaskCall {self.task.name!r} options={self.options!r}>"

    def with_options(self, **options: Unpack[TaskOptions]) -> TaskCall[P, R]:
        """These options on top of the ones given so far."""
        return TaskCall(self.task, {**self.options, **_checked(options)})

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """:meth:`Task.enqueue` with the options."""
        return await _enqueue(self.task, self.options, args, kwargs)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> SyncJob:
        """:meth:`Task.enqueue_sync` with the options."""
        return _enqueue_sync(self.task, self.options, args, kwargs)


def _checked(options: Mapping[str, Any]) -> Mapping[str, Any]:
    check_options(options, TASK_OPTIONS, "job")
    return options


async def _enqueue(
    task: Task[Any, Any], options: Mapping[str, Any], args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Job:
    data = task.arguments(*args, **kwargs)
    queue = task.app.queue(task.queue)
    if not tracing.ENABLED:
        return await _add(queue, task, data, options)
    with tracing.add_span(task.queue, task.name, task.app.tracer_provider) as (span, carrier):
        if carrier:
            data[tracing.TRACE_KEY] = carrier
        job = await _add(queue, task, data, options)
        tracing.set_job_id(span, job.id)
        return job


def _enqueue_sync(
    task: Task[Any, Any], options: Mapping[str, Any], args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> SyncJob:
    data = task.arguments(*args, **kwargs)
    queue = task.app.sync_queue(task.queue)
    if not tracing.ENABLED:
        return _add_sync(queue, task, data, options)
    with tracing.add_span(task.queue, task.name, task.app.tracer_provider) as (span, carrier):
        if carrier:
            data[tracing.TRACE_KEY] = carrier
        job = _add_sync(queue, task, data, options)
        tracing.set_job_id(span, job.id)
        return job


async def _add(
    queue: Queue, task: Task[Any, Any], data: dict[str, Any], options: Mapping[str, Any]
) -> Job:
    try:
        return await queue.add(task.name, data, **options)
    except ValidationError as exc:
        raise _name_argument(exc, data) from None


def _add_sync(
    queue: sync.Queue, task: Task[Any, Any], data: dict[str, Any], options: Mapping[str, Any]
) -> SyncJob:
    try:
        return queue.add(task.name, data, **options)
    except ValidationError as exc:
        raise _name_argument(exc, data) from None


def _name_argument(exc: ValidationError, data: Mapping[str, Any]) -> ValidationError:
    """Data that does not serialize: say which argument."""
    if exc.field != "data":
        return exc
    for name, value in data.items():
        try:
            orjson.dumps(value)
        except TypeError as err:
            return ValidationError(name, f"argument does not serialize to JSON: {err}", value)
    return exc
