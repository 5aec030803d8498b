"""Exceptions raised by conveyor.

::

    ConveyorError
     ├── ValidationError (also ValueError)   bad input, refused before Redis is touched
     ├── JobNotFoundError (also KeyError)    no job with that id in the queue
     ├── JobStateError                       the job is not in a state that allows the call
     ├── JobFailedError                      wait_until_finished(): the job failed
     ├── WaitTimeoutError (also TimeoutError) wait_until_finished(): gave up waiting
     ├── JobTimeoutError (also TimeoutError) an attempt ran past its ``timeout``
     └── SandboxCrashError                   a sandboxed processor's process died mid-attempt
    UnrecoverableError                        raise it in a processor to fail without retries
    RateLimitError                            raise it in a processor: the queue backs off
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

__all__ = [
    "ConveyorError",
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
