"""GET /api/v1/queues/{queue}/search: filters as query parameters, pages by
cursor, refusals as 422 naming the parameter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor import Queue
from web_support import API, api_client, data, error

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as found:
        yield found


async def test_a_search_pages_by_cursor_until_the_state_is_scanned(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    jobs = await queue.add_bulk({"name": "invoice" if n % 4 == 0 else "receipt",
                                 "data": {"customer": {"id": n % 3}}} for n in range(100))
    wanted = [j.id for j in reversed(jobs) if j.name == "invoice" and j.data["customer"]["id"] == 1]
    url = f"{API}/queues/{queue.name}/search"
    params: dict[str, str | int] = {"state": "waiting", "name": "INVOICE",
                                    "data": "customer.id=1", "count": 3, "scan": 30}
    found: list[str] = []
    scanned: list[int] = []
    while True:
        page = data(await client.get(url, params=params))
        assert page["queue"] == queue.name and page["state"] == "waiting"
        assert page["total"] == 100 and page["examined"] <= 30 and len(page["jobs"]) <= 3
        found += [job["id"] for job in page["jobs"]]
        scanned.append(page["scanned"])
        if page["cursor"] is None:
            break
        params["cursor"] = page["cursor"]
    assert found == wanted
    assert scanned[-1] == 100 and scanned == sorted(scanned)
    first = data(await client.get(url, params={"name": "invoice", "count": 1}))["jobs"][0]
    assert first["name"] == "invoice" and "timestamp_ms" in first and "data" not in first


async def test_time_ranges_take_iso_or_epoch_ms(client: httpx.AsyncClient, queue: Queue) -> None:
    job = await queue.add("a")
    url = f"{API}/queues/{queue.name}/search"
    at = job.timestamp
    iso = data(await client.get(f"{API}/queues/{queue.name}/jobs/{job.id}"))["timestamp"]
    for after, before, hits in ((at, at + 1, 1), (iso, None, 1), (at + 1, None, 0)):
        params = {"created_after": after, **({"created_before": before} if before else {})}
        page = data(await client.get(url, params=params))
        assert len(page["jobs"]) == hits, params


@pytest.mark.parametrize(("params", "field"), [
    ({"data": "user.id"}, "data"),
    ({"data": "a b=1"}, "data"),
    ({"data": "user=[1]"}, "data"),
    ({"created_after": "yesterday"}, "created_after"),
    ({"cursor": "bogus"}, "cursor"),
    ({"state": "sleeping"}, "state"),
    ({"scan": 0}, "scan"),
    ({"name": ""}, "name"),
])
async def test_bad_filters_are_a_422_naming_the_parameter(
    client: httpx.AsyncClient, queue: Queue, params: dict[str, str], field: str
) -> None:
    await queue.add("a")
    refused = error(await client.get(f"{API}/queues/{queue.name}/search", params=params),
                    422, "validation_error")
    assert refused["field"] == field, refused


async def test_an_unknown_queue_is_a_404(client: httpx.AsyncClient) -> None:
    error(await client.get(f"{API}/queues/nope/search"), 404, "queue_not_found")
