"""Failed attempts reported to Sentry (``pip install 'conveyor[sentry]'``).

::

    import sentry_sdk
    from conveyor.integrations.sentry import ConveyorIntegration

    sentry_sdk.init(dsn="https://...", integrations=[ConveyorIntegration()])

Every :class:`~conveyor.Worker` made after ``sentry_sdk.init`` reports the
exception of each failed attempt through its ``failed`` listener, as an
unhandled error tagged ``conveyor.queue``, ``conveyor.job.name``,
``conveyor.job.id`` and ``conveyor.job.attempt``, with a ``conveyor job``
context that also says how many attempts the job has and whether this one was
its last. A job cancelled by an operator is not an error and is not reported.
``ConveyorIntegration(every_attempt=False)`` reports only a job's last failed
attempt (the one after which it is failed for good).

A worker made before ``sentry_sdk.init``, or made without the integration, can
be given the listener itself: ``worker.on("failed", report_failure)``.

Nothing here is imported by conveyor itself: without this integration a worker
has no ``failed`` listener for Sentry, and pays nothing.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.integrations import Integration
from sentry_sdk.utils import capture_internal_exceptions, event_from_exception

from ..worker import Worker

if TYPE_CHECKING:
    from ..job import Job

__all__ = ["ConveyorIntegration", "report_failure"]


class ConveyorIntegration(Integration):
    """Reports the failed attempts of every worker made after ``sentry_sdk.init``."""

    identifier = "conveyor"
    origin = f"auto.queue.{identifier}"

    def __init__(self, *, every_attempt: bool = True) -> None:
        #: False: only a job's last failed attempt is reported, not its retried ones.
        self.every_attempt = every_attempt

    @staticmethod
    def setup_once() -> None:
        """Give every worker made from now on the :func:`report_failure` listener."""
        made = Worker.__init__

        @functools.wraps(made)
        def __init__(self: Worker, *args: Any, **kwargs: Any) -> None:
            made(self, *args, **kwargs)
            self.on("failed", report_failure)

        Worker.__init__ = __init__  # type: ignore[method-assign]


def report_failure(job: Job, error: BaseException) -> None:
    """A worker's ``failed`` listener: send ``error`` to Sentry with ``job``'s
    id, queue, name and attempt (as tags and as the ``conveyor job`` context)."""
    client = sentry_sdk.get_client()
    if not client.is_active() or job.cancel_reason is not None:
        return
    integration = client.get_integration(ConveyorIntegration)
    final = job.finished_on is not None  # the worker sets it when no attempt is left
    if integration is not None and not integration.every_attempt and not final:
        return
    with capture_internal_exceptions(), sentry_sdk.new_scope() as scope:
        queue = job.queue.name
        tags = {
            "conveyor.queue": queue,
            "conveyor.job.name": job.name,
            "conveyor.job.id": job.id,
            "conveyor.job.attempt": str(job.attempts_made),
        }
        for key, value in tags.items():
            scope.set_tag(key, value)
        scope.set_context("conveyor job", {
            "id": job.id,
            "queue": queue,
            "name": job.name,
            "attempt": job.attempts_made,
            "attempts": job.opts.attempts,
            "final": final,
        })
        scope.set_transaction_name(f"{queue}:{job.name}")
        event, hint = event_from_exception(
            error,
            client_options=client.options,
            mechanism={"type": ConveyorIntegration.identifier, "handled": False},
        )
        sentry_sdk.capture_event(event, hint=hint)
