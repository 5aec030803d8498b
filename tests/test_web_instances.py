"""Several Redis instances in one dashboard (issue 16, item 10): two private
redis-servers, one of them with a prefix of its own, addressed by
``?instance=NAME`` (create_app(instances=...), ``conveyor dashboard --redis
NAME=URL --prefix NAME=PREFIX``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from conveyor import Queue
from conveyor.cli import main
from conveyor.embedded import RedisServer
from conveyor.web import Instance, create_app
from redis_server import flushed, free_port
from test_web_tokens import serving
from web_support import API, asgi_client, data, error


@pytest.fixture(scope="module")
def second_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def second_url(second_server: RedisServer) -> str:
    return flushed(second_server)


async def add(url: str, queue: str, prefix: str = "conveyor") -> None:
    q = Queue(queue, url, prefix=prefix)
    try:
        await q.add("x", {})
    finally:
        await q.close()


def names(response: httpx.Response) -> list[str]:
    return [row["name"] for row in data(response)]


async def test_each_instance_is_addressed_by_a_query_parameter(
    redis_url: str, second_url: str
) -> None:
    await add(redis_url, "billing-emails")
    await add(second_url, "search-index", prefix="search")
    await add(second_url, "unprefixed")  # same server, the default prefix: not shown
    app = create_app(instances={"billing": redis_url,
                                "search": Instance(second_url, prefix="search")})
    try:
        async with asgi_client(app) as client:
            assert data(await client.get(f"{API}/instances")) == [
                {"name": "billing", "prefix": "conveyor", "default": True},
                {"name": "search", "prefix": "search", "default": False},
            ]
            assert names(await client.get(f"{API}/queues")) == ["billing-emails"]
            assert names(await client.get(f"{API}/queues?instance=billing")) == [
                "billing-emails"]
            assert names(await client.get(f"{API}/queues?instance=search")) == ["search-index"]
            # A state change lands on the addressed instance only.
            paused = await client.post(f"{API}/queues/search-index/pause?instance=search")
            assert data(paused)["is_paused"] is True
            error(await client.post(f"{API}/queues/search-index/pause"), 404, "queue_not_found")
            metrics = (await client.get("/metrics?instance=search")).text
            assert "search-index" in metrics and "billing-emails" not in metrics
            # The seed family too: the same dependency hands every route its Inspector.
            seed = data(await client.get(f"{API}/queue/metrics?instance=search"))
            assert [q["queueName"] for q in seed["queues"]] == ["search-index"]
            for path in (f"{API}/queues?instance=nope", "/metrics?instance=nope"):
                found = error(await client.get(path), 404, "instance_not_found")
                assert found["field"] == "instance" and "'nope'" in found["message"]
            schema = app.openapi()["paths"][f"{API}/queues/{{queue}}/jobs"]["get"]
            assert "instance" in [p["name"] for p in schema["parameters"]]
    finally:
        await app.state.conveyor.close()
    q = Queue("search-index", second_url, prefix="search")
    try:
        assert await q.is_paused()
    finally:
        await q.close()


async def test_one_connection_is_the_default_instance(redis_url: str) -> None:
    await add(redis_url, "only")
    app = create_app(redis_url)
    try:
        async with asgi_client(app) as client:
            assert data(await client.get(f"{API}/instances")) == [
                {"name": "default", "prefix": "conveyor", "default": True}]
            assert names(await client.get(f"{API}/queues?instance=default")) == ["only"]
    finally:
        await app.state.conveyor.close()


@pytest.mark.parametrize(("options", "says"), [
    ({"instances": {"a b": "redis://x"}}, "instances: 'a b' is not an instance name"),
    ({"instances": {"": "redis://x"}}, "instances: '' is not an instance name"),
    ({"instances": {"a": Instance("redis://x", prefix="{x}")}}, "instances: a: prefix"),
    ({"instances": {}}, "instances: give at least one"),
    ({"connection": "redis://x", "instances": {"a": "redis://y"}},
     "give either a connection or instances"),
])
def test_bad_instances_are_refused_in_one_line(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError) as refused:
        create_app(**options)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_the_command_serves_several_instances(redis_url: str, second_url: str) -> None:
    import asyncio

    asyncio.run(add(second_url, "from-cli", prefix="other"))
    argv = ["--redis", f"main={redis_url}", "--redis", f"side={second_url}",
            "--prefix", "side=other"]
    with serving(argv, {}) as (_, url):
        listed = httpx.get(url + "api/v1/instances", timeout=10).json()["data"]
        assert [(i["name"], i["prefix"]) for i in listed] == [("main", "conveyor"),
                                                               ("side", "other")]
        side = httpx.get(url + "api/v1/queues?instance=side", timeout=10)
        assert names(side) == ["from-cli"]
        assert names(httpx.get(url + "api/v1/queues", timeout=10)) == []


@pytest.mark.parametrize(("argv", "says"), [
    (["--redis", "a=redis://127.0.0.1:{port}/0", "--redis", "a=redis://127.0.0.1:{port}/1"],
     "Error: --redis: the instance 'a' is given twice"),
    (["--redis", "a b=redis://127.0.0.1:{port}/0"], "Error: --redis: 'a b' is not an instance"),
    (["--redis", "a=http://127.0.0.1:{port}/0"], "Error: --redis: 'http://127.0.0.1:"),
    (["--redis", "a=redis://127.0.0.1:{port}/0", "--prefix", "a=x", "--prefix", "a=y"],
     "Error: --prefix: the instance 'a' is given two prefixes"),
    (["--redis", "a=redis://127.0.0.1:{port}/0", "--redis", "b=redis://127.0.0.1:{port}/1"],
     "Error: cannot connect to Redis at redis://127.0.0.1:"),
])
def test_bad_instance_options_are_one_line(argv: list[str], says: str) -> None:
    port = free_port()
    result = CliRunner().invoke(main, ["dashboard", *(a.format(port=port) for a in argv)],
                                env={"CONVEYOR_TOKEN": None, "CONVEYOR_DASHBOARD_TOKEN": None})
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), result.stderr
