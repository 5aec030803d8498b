"""Exceptions raised by conveyor.

::

    ConveyorError
     ├── ValidationError (also ValueError)   bad input, refused before Redis is touched
     ├── JobNotFoundError (also KeyError)    no job with that id in the queue
     ├── JobStateError                       the job is not in a state that allows the call
     ├── JobFailedError                      wait_until_finished(): the job failed
     ├── WaitTimeoutError (also TimeoutError) wait_until_finished(): gave up waiting
     ├── JobTimeoutError (also TimeoutError) an attempt ran past its ``timeout``
     ├── DurabilityError                     a durable add was written on the master but
     │                                       fewer replicas than asked confirmed it
     └── SandboxCrashError                   a sandboxed processor's process died mid-attempt
    UnrecoverableError                        raise it in a processor to fail without retries
    RateLimitError                            raise it in a processor: the queue backs off

A script that refuses a call replies with a code (see each script's header);
:data:`SCRIPT_ERRORS` says which error each code of each script stands for, and
:func:`script_error` builds it. ``conveyor._scripts`` raises them, so no caller
decodes a code of its own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

__all__ = [
    "ConveyorError",
    "DurabilityError",
    "JobFailedError",
    "JobNotFoundError",
    "JobStateError",
    "JobTimeoutError",
    "RateLimitError",
    "SandboxCrashError",
    "UnrecoverableError",
    "ValidationError",
    "WaitTimeoutError",
]


class ConveyorError(Exception):
    """Base class of every error conveyor raises."""


class ValidationError(ConveyorError, ValueError):
    """An argument was refused; ``field`` names it."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        self.field = field
        self.value = value
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:  # a sandboxed processor's error crosses processes
        return type(self), (self.field, self.message, self.value)


class JobNotFoundError(ConveyorError, KeyError):
    """No job with this id exists in the queue."""

    def __init__(self, queue: str, job_id: str) -> None:
        self.queue = queue
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found in queue {queue!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.queue, self.job_id)

    def __str__(self) -> str:
        return str(self.args[0])


class JobStateError(ConveyorError):
    """The job's state does not allow the operation (e.g. removing an active job)."""


class JobFailedError(ConveyorError):
    """The awaited job failed; ``failed_reason`` and ``stacktrace`` say why."""

    def __init__(self, job_id: str, failed_reason: str | None, stacktrace: list[str]) -> None:
        self.job_id = job_id
        self.failed_reason = failed_reason
        self.stacktrace = stacktrace
        super().__init__(f"job {job_id!r} failed: {failed_reason}")


class WaitTimeoutError(ConveyorError, TimeoutError):
    """``wait_until_finished`` gave up before the job finished."""


class JobTimeoutError(ConveyorError, TimeoutError):
    """An attempt ran longer than the job's ``timeout``."""


class DurabilityError(ConveyorError):
    """A durable add (``Queue(durable=n)``) was written on the master, but fewer
    than ``n`` replicas confirmed it within ``durable_timeout``: the jobs exist on
    the master now, and would be lost if it failed over before they replicated.
    ``acked`` is how many replicas did confirm, ``job_ids`` the jobs of the call
    (adding them again with the same ids is safe: an existing id adds nothing)."""

    def __init__(self, queue: str, wanted: int, acked: int, job_ids: list[str]) -> None:
        self.queue = queue
        self.wanted = wanted
        self.acked = acked
        self.job_ids = job_ids
        shown = ", ".join(job_ids[:5]) + (f" and {len(job_ids) - 5} more" if len(job_ids) > 5
                                          else "")
        super().__init__(
            f"queue {queue!r}: job(s) {shown} added on the master but confirmed by {acked} "
            f"of the {wanted} replica(s) asked for; not durable across a failover yet")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.queue, self.wanted, self.acked, self.job_ids)


class SandboxCrashError(ConveyorError):
    """The process running a sandboxed processor died during the attempt
    (``os._exit``, a segfault, the kernel's OOM killer); the attempt fails."""


class UnrecoverableError(Exception):
    """Raised by a processor to fail the job at once, skipping remaining attempts."""


class RateLimitError(Exception):
    """Raised by a processor that hit an external rate limit: the job goes back to
    the head of the queue without using an attempt, and every worker of the queue
    waits ``delay`` (ms or timedelta) before starting another job."""

    def __init__(self, delay: int | timedelta = 1000) -> None:
        from .options import to_ms

        self.delay: int = to_ms("delay", delay) or 0
        super().__init__(f"rate limited for {self.delay} ms")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.delay,)


# -- script reply codes --------------------------------------------------------------

_NOT_FOUND = (JobNotFoundError, "")
_LOCKED_CHILD = "job {job_id!r} has a pending child active and locked by a worker; "
_NOT_DELAYED = "job {job_id!r} is {state}; only a delayed job can be "

#: (script, reply code) -> (error, message) for every code by which a script
#: refuses a call. A message names ``{job_id}``, ``{queue}``, ``{state}`` (the
#: job's state, read when the error is raised) or what the script's caller adds.
SCRIPT_ERRORS: dict[tuple[str, int], tuple[type[ConveyorError], str]] = {
    ("add_log", -1): _NOT_FOUND,
    ("update_progress", 0): _NOT_FOUND,
    ("update_data", 0): _NOT_FOUND,
    ("update_data", -1): (
        JobStateError, "job {job_id!r} is {state}; only the data of a job that has not "
        "started (waiting, prioritized, delayed) can be edited"
    ),
    ("change_priority", 0): _NOT_FOUND,
    ("promote_job", 0): _NOT_FOUND,
    ("promote_job", -1): (JobStateError, _NOT_DELAYED + "promoted"),
    ("change_delay", 0): _NOT_FOUND,
    ("change_delay", -1): (JobStateError, _NOT_DELAYED + "given a new delay"),
    ("retry_job", 0): _NOT_FOUND,
    ("retry_job", -1): (
        JobStateError, "job {job_id!r} is {state}, only failed or completed jobs retry"
    ),
    ("cancel_job", 0): _NOT_FOUND,
    ("cancel_job", -2): (JobStateError, _LOCKED_CHILD + "cancel that child first"),
    ("remove_job", -1): (JobStateError, "job {job_id!r} is active and locked by a worker"),
    ("remove_job", -2): (
        JobStateError, _LOCKED_CHILD + "remove(..., remove_children=False) keeps its children"
    ),
    ("remove_job", -3): (
        JobStateError,
        "job {job_id!r} is the pending job of a job scheduler; "
        "remove_job_scheduler() removes the scheduler and this job",
    ),
    ("move_to_delayed", 0): (
        JobStateError, "job {job_id!r}: the lock is lost; it was taken over"
    ),
    ("obliterate", -1): (
        JobStateError,
        "queue {queue!r} has active jobs; obliterate(force=True) deletes them too",
    ),
    ("add_flow", -1): (
        JobStateError, "{path}: job {job_id!r} exists in queue {queue!r}; nothing was added"
    ),
}


def script_error(
    script: str, code: int, queue: str, job_id: str = "", **context: object
) -> ConveyorError | None:
    """The error that reply ``code`` of ``script`` stands for (None: the code is
    no refusal), its message filled from the queue, the job id and ``context``."""
    entry = SCRIPT_ERRORS.get((script, code))
    if entry is None:
        return None
    kind, message = entry
    if kind is JobNotFoundError:
        return JobNotFoundError(queue, job_id)
    return kind(message.format(queue=queue, job_id=job_id, **context))
