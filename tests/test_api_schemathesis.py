"""Property-based fuzzing of the REST API from its own OpenAPI schema (schemathesis):
whatever a client sends within or around the schema, the server never answers 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from conveyor import Queue
from conveyor.embedded import free_port
from conveyor.web import create_app

#: Cases per operation: enough to hit each branch, few enough to finish in seconds.
EXAMPLES = 25


async def _seed(redis_url: str) -> None:
    """The queue "email" of the schema's examples, with a delayed job "1" in it (again)."""
    async with Queue("email", redis_url) as email:
        await email.add("later", {"to": "ada@example.com"}, delay=600_000, job_id="1")
        await email.add("welcome", {"to": "bob@example.com"})
        await email.upsert_job_scheduler("tick", every=60_000)


@pytest.fixture
def api_schema(redis_url: str) -> Iterator[Any]:
    """The API served by a real uvicorn (in a thread) over the suite's Redis."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(redis_url), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/api/v1/openapi.json")
    finally:
        server.should_exit = True
        thread.join(10)


def strategies(operation: Any) -> Any:
    """Cases of one operation: anything the schema allows, and invalid input, each on
    random names and on the seeded queue and job (where most code runs)."""
    names = {p.name for p in operation.path_parameters}
    seeded = {k: v for k, v in (("queue", "email"), ("job_id", "1")) if k in names}
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    found = [operation.as_strategy(mode) for mode in modes]
    if seeded:
        found += [operation.as_strategy(mode, path_parameters=seeded) for mode in modes]
    return st.one_of(found)


def test_no_input_makes_the_server_fail(api_schema: Any, redis_url: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        asyncio.run(_seed(redis_url))

        @given(case=strategies(operation))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            response = case.call()
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
