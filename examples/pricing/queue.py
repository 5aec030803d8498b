"""Enqueueing and reading the pricing jobs (the seed's ``lib/queue/queue``).

``enqueue_*`` add a job with the seed's options: a deterministic job id for
idempotency, ``priority`` (the seed's scale: 1..1000, higher first, default 0),
``delay`` (ms), ``attempts``. ``get_job_status`` and the metrics functions give
what the HTTP front and an operator read.
"""

from __future__ import annotations

from typing import Any

from conveyor import Job, Queue, ValidationError

from .tasks import (
    QUEUES,
    app,
    deliver_webhook,
    generate_report,
    ingest_index_data,
    run_calculation,
)

__all__ = [
    "calc_job_id", "clean_old_jobs", "enqueue_calculation", "enqueue_ingestion",
    "enqueue_report", "enqueue_webhook", "get_all_queue_metrics", "get_job_status",
    "get_queue", "get_queue_metrics", "queue_depth_warnings", "retry_failed_jobs",
]

#: The seed's priority scale: 1..1000, higher runs first, 0 (the default) last.
MAX_PRIORITY = 1000
WEEK_MS = 7 * 24 * 3600 * 1000


def conveyor_priority(priority: int) -> int:
    """conveyor's priority for the seed's: 1 is conveyor's highest and runs
    first, so seed 1000 -> 1 and seed 0 -> 1001. Every job gets one, because
    conveyor runs jobs without a priority before prioritized ones."""
    if not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise ValidationError("priority", f"must be an int in 0..{MAX_PRIORITY}, got "
                              f"{priority!r}")
    return MAX_PRIORITY + 1 - priority


def _options(job_id: str, priority: int, delay: int, attempts: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {"job_id": job_id, "priority": conveyor_priority(priority),
                               "delay": delay}
    if attempts is not None:
        options["attempts"] = attempts
    return options


def calc_job_id(tenant_id: str, batch_id: str) -> str:
    """The calculation's idempotency key: ``calc-<tenant>-<batch>``."""
    return f"calc-{tenant_id}-{batch_id}"


def get_queue(name: str) -> Queue:
    """One of the four queues (``ingestion``, ``calculation``, ``webhooks``, ``reports``)."""
    if name not in QUEUES:
        raise ValidationError("queue", f"unknown queue {name!r}; one of {', '.join(QUEUES)}")
    return app.queue(name)


async def enqueue_ingestion(*, tenant_id: str, series_code: str, as_of_date: str,
                            version_tag: str, source: str, data: list[dict[str, Any]],
                            priority: int = 0, delay: int = 0,
                            attempts: int | None = None) -> Job:
    """Load index values; one job per tenant, series, date and version."""
    job_id = f"ingest-{tenant_id}-{series_code}-{as_of_date}-{version_tag}"
    return await ingest_index_data.with_options(
        **_options(job_id, priority, delay, attempts)).enqueue(
        tenant_id=tenant_id, series_code=series_code, as_of_date=as_of_date,
        version_tag=version_tag, source=source, data=data)


async def enqueue_calculation(*, tenant_id: str, batch_id: str, priority: int = 0,
                              delay: int = 0, attempts: int | None = None) -> Job:
    """Run a batch's PAM calculation; a second enqueue of the batch returns the first job."""
    return await run_calculation.with_options(
        **_options(calc_job_id(tenant_id, batch_id), priority, delay, attempts)).enqueue(
        tenant_id=tenant_id, batch_id=batch_id)


async def enqueue_webhook(*, tenant_id: str, message_id: str, event_type: str,
                          priority: int = 0, delay: int = 0,
                          attempts: int | None = None) -> Job:
    """Deliver an outbox message; one job per message."""
    return await deliver_webhook.with_options(
        **_options(f"webhook-{message_id}", priority, delay, attempts)).enqueue(
        tenant_id=tenant_id, message_id=message_id, event_type=event_type)


async def enqueue_report(*, tenant_id: str, report_type: str, batch_id: str, format: str,
                         user_id: str, priority: int = 0, delay: int = 0,
                         attempts: int | None = None) -> Job:
    """Render a batch's report; one job per tenant, report type, batch and format."""
    job_id = f"report-{tenant_id}-{report_type}-{batch_id}-{format}"
    return await generate_report.with_options(
        **_options(job_id, priority, delay, attempts)).enqueue(
        tenant_id=tenant_id, report_type=report_type, batch_id=batch_id, format=format,
        user_id=user_id)


async def get_job_status(queue: str, job_id: str) -> dict[str, Any] | None:
    """``{"state", "progress", "result"}`` of a job (plus ``failedReason`` and
    ``attemptsMade`` once it failed), or ``None`` for an unknown job."""
    job = await get_queue(queue).get_job(job_id)
    if job is None:
        return None
    state = await job.get_state()
    status: dict[str, Any] = {
        # A prioritized job waits like any other: the seed's states have no "prioritized".
        "state": "waiting" if state == "prioritized" else state,
        "progress": job.progress if job.progress is not None else 0,
        "result": job.return_value,
        "attemptsMade": job.attempts_made,
    }
    if job.failed_reason:
        status["failedReason"] = job.failed_reason
    return status


async def get_queue_metrics(name: str) -> dict[str, int]:
    """``{"waiting", "active", "completed", "failed", "delayed", "paused"}`` of a queue;
    as in BullMQ, a paused queue's waiting jobs count as ``paused``."""
    queue = get_queue(name)
    counts = await queue.get_job_counts()
    waiting = counts.get("waiting", 0) + counts.get("prioritized", 0)
    paused = await queue.is_paused()
    return {"waiting": 0 if paused else waiting, "active": counts.get("active", 0),
            "completed": counts.get("completed", 0), "failed": counts.get("failed", 0),
            "delayed": counts.get("delayed", 0), "paused": waiting if paused else 0}


async def get_all_queue_metrics() -> dict[str, dict[str, int]]:
    """:func:`get_queue_metrics` of every queue, by name."""
    return {name: await get_queue_metrics(name) for name in QUEUES}


async def retry_failed_jobs(name: str) -> int:
    """Send every failed job of a queue back to run again (the seed's "retry all
    failed jobs"); how many."""
    return await get_queue(name).retry_jobs("failed")


def queue_depth_warnings(metrics: dict[str, dict[str, int]],
                         threshold: int = 1000) -> list[str]:
    """The seed's queue-depth check (run each minute by ``__main__``); jobs
    held by a paused queue wait too."""
    depth = {name: data["waiting"] + data.get("paused", 0) for name, data in metrics.items()}
    return [f"Queue {name} has {n} waiting jobs" for name, n in depth.items() if n > threshold]


async def clean_old_jobs(completed_grace_ms: int = WEEK_MS,
                         failed_grace_ms: int = 30 * 24 * 3600 * 1000,
                         limit: int = 1000) -> dict[str, int]:
    """The seed's cleanup: completed jobs older than 7 days and failed ones older
    than 30 days leave every queue; how many went, per queue."""
    removed: dict[str, int] = {}
    for name in QUEUES:
        queue = get_queue(name)
        gone = await queue.clean(completed_grace_ms, limit, "completed")
        gone += await queue.clean(failed_grace_ms, limit, "failed")
        removed[name] = len(gone)
    return removed
