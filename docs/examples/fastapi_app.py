"""conveyor in a FastAPI app: one Conveyor for the process, opened and closed
by the lifespan; a route that enqueues; the dashboard mounted at /jobs/.

Run:  uvicorn docs.examples.fastapi_app:api      (Redis from $CONVEYOR_REDIS_URL)
Work: conveyor worker docs.examples.fastapi_app:tasks
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from conveyor.app import Conveyor
from conveyor.web import create_app

# Conveyor() reads $CONVEYOR_REDIS_URL (else redis://localhost:6379/0).
tasks = Conveyor()


@tasks.task(queue="thumbnails", attempts=3, backoff={"type": "exponential", "delay": 1000})
async def make_thumbnail(image_id: int, width: int = 256) -> dict[str, int]:
    return {"image_id": image_id, "width": width}


class Upload(BaseModel):
    image_id: int
    width: int = 256


def build_api() -> FastAPI:
    dashboard = create_app(tasks.connection)

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        # A mounted app's own lifespan is not run by Starlette: run it here.
        async with dashboard.router.lifespan_context(dashboard):
            yield
        await tasks.close()

    api = FastAPI(lifespan=lifespan)
    api.mount("/jobs", dashboard)

    @api.post("/images", status_code=202)
    async def upload(body: Upload) -> dict[str, str]:
        job = await make_thumbnail.enqueue(image_id=body.image_id, width=body.width)
        return {"job_id": job.id}

    @api.get("/images/jobs/{job_id}")
    async def job_state(job_id: str) -> dict[str, object]:
        job = await tasks.queue("thumbnails").get_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} in queue thumbnails")
        return {"state": await job.get_state(), "result": job.return_value}

    return api


api = build_api()
