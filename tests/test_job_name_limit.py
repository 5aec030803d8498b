"""A job name is at most 255 characters (MAX_JOB_NAME), on every way to make a
job: refused before Redis is touched with a ValidationError naming the field,
a 422 naming it over REST, one line in the CLI."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from conveyor import Conveyor, FlowProducer, Queue, ValidationError
from conveyor import sync as conveyor_sync
from conveyor.cli import main
from conveyor.options import MAX_JOB_NAME
from web_support import api_client

LONGEST = "é" * MAX_JOB_NAME  # characters, not bytes: 510 bytes of UTF-8
TOO_LONG = "n" * (MAX_JOB_NAME + 1)


def _refused(info: pytest.ExceptionInfo[ValidationError], field: str) -> None:
    assert info.value.field == field
    assert f"more than the limit of {MAX_JOB_NAME}" in str(info.value)
    assert TOO_LONG not in str(info.value)  # the message does not echo the name


async def test_queue_add_refuses_a_long_name_and_takes_the_longest(
    queue: Queue, redis: aioredis.Redis
) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add(TOO_LONG)
    _refused(info, "name")
    assert await redis.keys("*") == []
    job = await queue.add(LONGEST)
    assert (await queue.get_job(job.id)).name == LONGEST  # type: ignore[union-attr]


async def test_add_bulk_names_the_item(queue: Queue, redis: aioredis.Redis) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.add_bulk([{"name": "ok"}, {"name": TOO_LONG}])
    _refused(info, "jobs[1].name")
    assert await redis.keys("*") == []


def test_the_blocking_queue_refuses_it(redis_url: str, queue_name: str) -> None:
    with conveyor_sync.Queue(queue_name, redis_url) as queue:
        with pytest.raises(ValidationError) as info:
            queue.add(TOO_LONG)
        _refused(info, "name")
        with pytest.raises(ValidationError) as info:
            queue.add_bulk([{"name": TOO_LONG}])
        _refused(info, "jobs[0].name")


async def test_a_flow_names_the_node(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with FlowProducer(connection=redis_url) as flow:
        with pytest.raises(ValidationError) as info:
            await flow.add({"name": "parent", "queue_name": queue_name,
                            "children": [{"name": TOO_LONG, "queue_name": queue_name}]})
    _refused(info, "children[0].name")
    assert await redis.keys("*") == []


async def test_a_schedulers_job_name(queue: Queue, redis: aioredis.Redis) -> None:
    with pytest.raises(ValidationError) as info:
        await queue.upsert_job_scheduler("tick", every=60_000, job_name=TOO_LONG)
    _refused(info, "job_name")
    assert await redis.keys("*") == []


async def test_a_tasks_name(redis_url: str) -> None:
    async with Conveyor(redis_url) as app:
        with pytest.raises(ValidationError) as info:
            @app.task(name=TOO_LONG)
            async def work() -> None:
                pass
    _refused(info, "name")


async def test_rest_enqueue_answers_422_naming_the_field(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with api_client(redis_url) as client:
        response = await client.post(f"/api/v1/queues/{queue_name}/jobs",
                                     json={"name": TOO_LONG})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error" and error["field"] == "name"
        assert await redis.keys("*") == []
        response = await client.post(f"/api/v1/queues/{queue_name}/jobs",
                                     json={"name": LONGEST})
        assert response.status_code == 201, response.text
        assert response.json()["data"]["name"] == LONGEST


def test_cli_enqueue_is_one_line(redis_url: str, queue_name: str) -> None:
    result = CliRunner().invoke(main, ["enqueue", queue_name, TOO_LONG, "--redis", redis_url])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: name: job name is 256 characters")
