"""The pricing platform's HTTP front (FastAPI): enqueue endpoints, job status,
``/api/jobs/metrics`` in the seed's shape, worker status, pause/resume, the
failed jobs and their retry; conveyor's dashboard is mounted at ``/dashboard/``.

Every ``/api/jobs`` endpoint needs ``Authorization: Bearer <token>``
(``$PRICING_API_TOKEN``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

from conveyor import JobNotFoundError, JobStateError, ValidationError

from .queue import (
    enqueue_calculation,
    enqueue_ingestion,
    enqueue_report,
    enqueue_webhook,
    get_all_queue_metrics,
    get_job_status,
    get_queue,
    retry_failed_jobs,
)
from .tasks import QUEUES, app
from .workers import get_worker_status

__all__ = ["create_web_app"]


class JobOptions(BaseModel):
    """The seed's job options."""

    priority: int = Field(0, ge=0, le=1000)
    delay: int = Field(0, ge=0)
    attempts: int | None = Field(None, ge=1)

    def kwargs(self) -> dict[str, Any]:
        return {"priority": self.priority, "delay": self.delay, "attempts": self.attempts}


class IndexValue(BaseModel):
    date: str
    value: float


class Ingestion(JobOptions):
    tenantId: str
    seriesCode: str
    asOfDate: str
    versionTag: str
    source: str
    data: list[IndexValue]


class Calculation(JobOptions):
    tenantId: str
    batchId: str


class Webhook(JobOptions):
    tenantId: str
    messageId: str
    eventType: str


class Report(JobOptions):
    tenantId: str
    reportType: str
    batchId: str
    format: str = Field(pattern="^(csv|pdf)$")
    userId: str


def _added(queue: str, job: Any) -> dict[str, Any]:
    return {"queue": queue, "jobId": job.id}


def create_web_app(token: str | None = None, *, redis_url: str | None = None,
                   dashboard: bool = True) -> FastAPI:
    """The FastAPI app; ``token`` defaults to ``$PRICING_API_TOKEN``, the Redis
    of conveyor's dashboard to ``$CONVEYOR_REDIS_URL``."""
    api_token = token or os.environ.get("PRICING_API_TOKEN", "")
    if not api_token:
        raise ValueError("set PRICING_API_TOKEN (the bearer token of /api/jobs)")
    jobs_ui = None
    if dashboard:
        from conveyor.web.app import create_app

        jobs_ui = create_app(redis_url or os.environ.get("CONVEYOR_REDIS_URL"),
                             queues=list(QUEUES))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if jobs_ui is not None:  # Starlette does not run a mounted app's lifespan
                await stack.enter_async_context(jobs_ui.router.lifespan_context(jobs_ui))
            yield
            await app.close()

    web = FastAPI(title="pricing jobs", lifespan=lifespan)
    if jobs_ui is not None:
        web.mount("/dashboard", jobs_ui)

    def bearer(authorization: str = Header("")) -> None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given, api_token):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    def queue_or_404(name: str) -> Any:
        try:
            return get_queue(name)
        except ValidationError as exc:
            raise HTTPException(404, str(exc)) from None

    @web.post("/api/ingestions", status_code=202)
    async def add_ingestion(body: Ingestion) -> dict[str, Any]:
        job = await enqueue_ingestion(
            tenant_id=body.tenantId, series_code=body.seriesCode, as_of_date=body.asOfDate,
            version_tag=body.versionTag, source=body.source,
            data=[v.model_dump() for v in body.data], **body.kwargs())
        return _added("ingestion", job)

    @web.post("/api/calculations", status_code=202)
    async def add_calculation(body: Calculation) -> dict[str, Any]:
        job = await enqueue_calculation(tenant_id=body.tenantId, batch_id=body.batchId,
                                        **body.kwargs())
        return _added("calculation", job)

    @web.post("/api/webhooks", status_code=202)
    async def add_webhook(body: Webhook) -> dict[str, Any]:
        job = await enqueue_webhook(tenant_id=body.tenantId, message_id=body.messageId,
                                    event_type=body.eventType, **body.kwargs())
        return _added("webhooks", job)

    @web.post("/api/reports", status_code=202)
    async def add_report(body: Report) -> dict[str, Any]:
        job = await enqueue_report(tenant_id=body.tenantId, report_type=body.reportType,
                                   batch_id=body.batchId, format=body.format,
                                   user_id=body.userId, **body.kwargs())
        return _added("reports", job)

    guarded = [Depends(bearer)]

    @web.get("/api/jobs/metrics", dependencies=guarded)
    async def metrics() -> dict[str, Any]:
        """The seed's response: waiting, active, completed, failed per queue."""
        every = await get_all_queue_metrics()
        return {"metrics": {name: {key: m[key] for key in
                                   ("waiting", "active", "completed", "failed")}
                            for name, m in every.items()}}

    @web.get("/api/jobs/workers", dependencies=guarded)
    async def workers() -> dict[str, Any]:
        return {"workers": await get_worker_status()}

    @web.post("/api/jobs/{queue}/pause", dependencies=guarded)
    async def pause(queue: str) -> dict[str, Any]:
        await queue_or_404(queue).pause()
        return {"queue": queue, "paused": True}

    @web.post("/api/jobs/{queue}/resume", dependencies=guarded)
    async def resume(queue: str) -> dict[str, Any]:
        await queue_or_404(queue).resume()
        return {"queue": queue, "paused": False}

    @web.get("/api/jobs/{queue}/failed", dependencies=guarded)
    async def failed(queue: str) -> dict[str, Any]:
        jobs = await queue_or_404(queue).get_dead_letter(0, 99)
        return {"jobs": [{"id": job.id, "name": job.name, "failedReason": job.failed_reason,
                          "attemptsMade": job.attempts_made} for job in jobs]}

    @web.post("/api/jobs/{queue}/retry-failed", dependencies=guarded)
    async def retry_failed(queue: str) -> dict[str, Any]:
        queue_or_404(queue)
        return {"queue": queue, "retried": await retry_failed_jobs(queue)}

    @web.post("/api/jobs/{queue}/{job_id}/retry", dependencies=guarded)
    async def retry(queue: str, job_id: str) -> dict[str, Any]:
        try:
            await queue_or_404(queue).retry_job(job_id)
        except JobNotFoundError:
            raise HTTPException(404, f"no job {job_id!r} in {queue}") from None
        except JobStateError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"queue": queue, "jobId": job_id, "retried": True}

    @web.get("/api/jobs/{queue}/{job_id}", dependencies=guarded)
    async def status(queue: str, job_id: str) -> dict[str, Any]:
        """The seed's ``getJobStatus``: ``{"state", "progress", "result", ...}``."""
        queue_or_404(queue)
        found = await get_job_status(queue, job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r} in {queue}")
        return found

    return web
