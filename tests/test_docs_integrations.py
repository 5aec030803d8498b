"""The integration pages' example apps (docs/examples/), each run against the
private Redis: a request enqueues, a worker of the app's tasks runs the job,
and the app reports its result; FastAPI's also serves the mounted dashboard."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from helpers import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
def load(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """load(name): docs/examples/<name>.py imported fresh, with
    $CONVEYOR_REDIS_URL naming the test's Redis (as a deployment would)."""
    monkeypatch.setenv("CONVEYOR_REDIS_URL", redis_url)
    loaded: list[str] = []

    def import_example(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            f"docs_example_{name}", EXAMPLES / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        loaded.append(spec.name)
        spec.loader.exec_module(module)
        return module

    yield import_example
    for name in loaded:
        sys.modules.pop(name, None)


async def test_fastapi_example_enqueues_runs_and_mounts_the_dashboard(load: Any) -> None:
    example = load("fastapi_app")
    worker = asyncio.create_task(example.tasks.run(handle_signals=False))
    transport = httpx.ASGITransport(app=example.api)
    try:
        async with example.api.router.lifespan_context(example.api), httpx.AsyncClient(
                transport=transport, base_url="http://localhost") as client:
            made = await client.post("/images", json={"image_id": 7, "width": 128})
            assert made.status_code == 202
            job_id = made.json()["job_id"]

            async def done() -> bool:
                state = (await client.get(f"/images/jobs/{job_id}")).json()
                return bool(state["state"] == "completed")

            await wait_for(done)
            state = (await client.get(f"/images/jobs/{job_id}")).json()
            assert state["result"] == {"image_id": 7, "width": 128}
            refused = await client.post("/images", json={"image_id": "seven"})
            assert refused.status_code == 422
            assert (await client.get("/images/jobs/404")).status_code == 404
            # The dashboard and its API answer under the mount.
            assert (await client.get("/jobs/")).status_code == 200
            page = (await client.get("/jobs/api/v1/queues/thumbnails/jobs",
                                     params={"state": "completed"})).json()
            assert [row["id"] for row in page["data"]["jobs"]] == [job_id]
    finally:
        await example.tasks.stop()
        await worker
        await example.tasks.close()


async def test_flask_example_enqueues_once_per_address_and_reports(load: Any) -> None:
    example = load("flask_app")
    client = example.create_app().test_client()
    worker = asyncio.create_task(example.tasks.run(handle_signals=False))
    try:
        made = await asyncio.to_thread(client.post, "/signup", json={"email": "ada@example.com"})
        assert made.status_code == 202
        job_id = made.get_json()["job_id"]
        again = await asyncio.to_thread(client.post, "/signup", json={"email": "ada@example.com"})
        assert again.get_json()["job_id"] == job_id == "welcome-ada@example.com"

        async def done() -> bool:
            state = await asyncio.to_thread(client.get, f"/signup/{job_id}")
            return bool(state.get_json()["state"] == "completed")

        await wait_for(done)
        state = await asyncio.to_thread(client.get, f"/signup/{job_id}")
        assert state.get_json()["result"] == {"sent_to": "ada@example.com"}
        bad = await asyncio.to_thread(client.post, "/signup", json={"email": "nobody"})
        assert bad.status_code == 422
        missing = await asyncio.to_thread(client.get, "/signup/welcome-nobody")
        assert missing.status_code == 404
    finally:
        await example.tasks.stop()
        await worker
        await asyncio.to_thread(example.tasks.close_sync)
        await example.tasks.close()
