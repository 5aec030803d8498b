"""Optional OpenTelemetry spans for the task API (:mod:`conveyor.app`).

Installed with ``pip install conveyor[otel]`` (``opentelemetry-api``); without
it every hook here is skipped by one ``if ENABLED`` and costs nothing.

- ``Task.enqueue`` opens a PRODUCER span ``conveyor add <queue>`` and injects
  the W3C trace context (``traceparent``, ``tracestate``) into the job's data
  under the reserved key :data:`TRACE_KEY` (``"$trace"``, a key that can never
  be a Python keyword argument, so it never collides with a task parameter).
  Nothing is added when no tracer provider records the span (the API alone,
  without an SDK), so untraced applications keep their data as it was.
- The worker side of the task API takes the key out of the data before binding
  the arguments and opens a CONSUMER span ``conveyor process <queue>`` whose
  parent is the producer span: one trace covers the request that enqueued the
  job and every attempt that ran it. The span records the job id, name, queue
  and attempt number; an exception ends it with status ERROR and an
  ``exception`` event.

Spans follow OpenTelemetry's messaging conventions (``messaging.system`` is
``conveyor``). The tracer comes from the global provider unless a
:class:`~conveyor.app.Conveyor` was given its own ``tracer_provider``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the otel extra is not installed
    ENABLED = False
else:
    ENABLED = True

__all__ = ["ENABLED", "TRACE_KEY", "add_span", "process_span", "split_carrier"]

#: The key of a job's data that carries the trace context of its producer.
TRACE_KEY = "$trace"
_SYSTEM = "conveyor"


@functools.lru_cache(maxsize=16)
def _tracer(provider: Any) -> Any:
    from . import __version__

    return trace.get_tracer("conveyor", __version__, tracer_provider=provider)


@contextmanager
def add_span(queue: str, task: str, provider: Any = None) -> Iterator[Any]:
    """A PRODUCER span ``conveyor add <queue>`` for the enqueue of ``task``;
    yields ``(span, carrier)``: the trace context to store in the job (an empty
    dict when the span is not recorded)."""
    with _tracer(provider).start_as_current_span(
        f"{_SYSTEM} add {queue}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "add",
            "messaging.destination.name": queue,
            "conveyor.job.name": task,
        },
    ) as span:
        carrier: dict[str, str] = {}
        if span.is_recording():
            propagate.inject(carrier)
        yield span, carrier


def set_job_id(span: Any, job_id: str) -> None:
    """Record the id of the job an add made on its span."""
    span.set_attribute("messaging.message.id", job_id)


@contextmanager
def process_span(
    job: Job, carrier: Mapping[str, str] | None, provider: Any = None
) -> Iterator[Any]:
    """A CONSUMER span ``conveyor process <queue>`` around one attempt of
    ``job``, the child of the producer span whose context ``carrier`` holds."""
    parent = propagate.extract(carrier) if carrier else None
    with _tracer(provider).start_as_current_span(
        f"{_SYSTEM} process {job.queue.name}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.queue.name,
            "messaging.message.id": job.id,
            "conveyor.job.name": job.name,
            "conveyor.job.attempt": job.attempts_made + 1,
        },
    ) as span:
        try:
            yield span
        except asyncio.CancelledError:
            # Not an Exception, so OpenTelemetry would leave the span OK: a
            # timeout, a cancel or a forced shutdown ended the attempt.
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
            raise


def split_carrier(data: Mapping[str, Any]) -> tuple[dict[str, Any], Mapping[str, str] | None]:
    """The job's keyword arguments without :data:`TRACE_KEY`, and the trace context."""
    kwargs = dict(data)
    carrier = kwargs.pop(TRACE_KEY, None)
    return kwargs, carrier if isinstance(carrier, Mapping) else None
