"""Job search (conveyor.inspection.search): each filter, over each kind of state
key, a page at a time with a cursor that resumes the scan, inside a bound."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from conveyor import Job, Queue, ValidationError
from conveyor.inspection import Inspector, JobQuery, SearchPage
from conveyor.inspection.search import SEARCH_BYTES, parse_data_filter, parse_time
from helpers import StartWorker, wait_for

# Each test runs on one Redis server and on a Redis Cluster (conftest.py).
pytestmark = pytest.mark.cluster


@pytest.fixture
async def inspector(redis_url: str) -> AsyncIterator[Inspector]:
    async with Inspector(redis_url) as found:
        yield found


async def fail_odd(job: Job) -> Any:
    if job.data["n"] % 2:
        raise RuntimeError(f"payment declined for order {job.data['n']}")
    return job.data["n"]


async def every_match(inspector: Inspector, queue: str, state: str, query: JobQuery | None,
                      count: int = 20, scan: int = 1000) -> tuple[list[str], list[SearchPage]]:
    """Every page of a search, followed to its end: (ids in order, the pages)."""
    pages: list[SearchPage] = []
    cursor: str | None = None
    while True:
        page = await inspector.search(queue, state, query, cursor=cursor, count=count, scan=scan)
        pages.append(page)
        assert len(page.jobs) <= count and page.examined <= scan
        cursor = page.cursor
        if cursor is None:
            return [job.id for job in page_jobs(pages)], pages


def page_jobs(pages: list[SearchPage]) -> list[Any]:
    return [job for page in pages for job in page.jobs]


async def test_each_filter_in_each_state(
    inspector: Inspector, queue: Queue, start_worker: StartWorker
) -> None:
    jobs = await queue.add_bulk(
        {"name": "send-mail" if n % 3 else "send-sms", "data": {"n": n, "user": {"id": n % 5},
                                                                "tags": ["vip" if n < 10 else "x"]}}
        for n in range(40))
    worker = start_worker(fail_odd)
    await wait_for(lambda: all_finished(queue, 40), timeout=30)
    await worker.close()
    by_n = {job.data["n"]: job.id for job in jobs}
    failed = {by_n[n] for n in range(40) if n % 2}
    done = {by_n[n] for n in range(40) if not n % 2}

    async def ids(state: str, **query: Any) -> set[str]:
        found, _ = await every_match(inspector, queue.name, state, JobQuery(**query))
        return set(found)

    # The name: a substring, in any case.
    assert await ids("completed", name="SMS") == {by_n[n] for n in range(0, 40, 6)}
    # A JSON path of the data, a number, a string in quotes or bare, an array index.
    assert await ids("failed", data="user.id=3") == {by_n[n] for n in (3, 13, 23, 33)}
    assert await ids("completed", data="$.user.id == 4") == {by_n[n] for n in (4, 14, 24, 34)}
    assert await ids("completed", data='tags[0]="vip"') == {by_n[n] for n in range(0, 10, 2)}
    assert await ids("completed", data="tags.0=vip") == {by_n[n] for n in range(0, 10, 2)}
    assert await ids("completed", data='user.id="4"') == set()  # a string is no number
    assert await ids("completed", data="user.missing=null") == set()
    # A substring of the data's JSON text.
    assert await ids("failed", data_contains='"n":1') == {by_n[n] for n in (1, 11, 13, 15, 17, 19)}
    # The failed reason: a substring, in any case.
    assert await ids("failed", reason="ORDER 3") == {by_n[n] for n in (3, 31, 33, 35, 37, 39)}
    assert await ids("completed", reason="declined") == set()
    # Time ranges: created (after inclusive, before exclusive) and finished.
    all_jobs = {job.id: job for job in [await queue.get_job(i) for i in by_n.values()] if job}
    middle = sorted(job.timestamp for job in all_jobs.values())[20]
    assert await ids("failed", created_after=middle) == {
        i for i in failed if all_jobs[i].timestamp >= middle}
    assert await ids("completed", created_before=middle) == {
        i for i in done if all_jobs[i].timestamp < middle}
    ends = sorted(job.finished_on or 0 for job in all_jobs.values())
    assert await ids("failed", finished_after=ends[10], finished_before=ends[30] + 1) == {
        i for i in failed if ends[10] <= (all_jobs[i].finished_on or 0) <= ends[30]}
    # Filters combine (AND); no filter matches every job of the state.
    assert await ids("failed", name="mail", data="user.id=1", reason="declined") == {
        by_n[n] for n in (1, 11, 31)}
    assert await ids("failed") == failed
    # The wait list and a delayed set: the same filters.
    waiting = await queue.add_bulk({"name": f"w-{n}", "data": {"n": n}} for n in range(30))
    delayed = await queue.add_bulk({"name": "later", "data": {"n": n}, "delay": 60_000}
                                   for n in range(30))
    assert await ids("waiting", data="n=7") == {waiting[7].id}
    assert await ids("waiting", name="w-2") == {waiting[n].id for n in (2, *range(20, 30))}
    page = await inspector.search(queue.name, "delayed", JobQuery(data="n=29"))
    assert [job.id for job in page.jobs] == [delayed[29].id]
    assert page.jobs[0].due is not None and page.jobs[0].due >= delayed[29].timestamp + 60_000


async def all_finished(queue: Queue, n: int) -> bool:
    counts = await queue.get_job_counts("completed", "failed")
    return counts["completed"] + counts["failed"] == n


@pytest.mark.parametrize("delay", [0, 60_000], ids=["wait-list", "sorted-set"])
async def test_pages_cover_every_match_once_newest_first(
    inspector: Inspector, queue: Queue, delay: int
) -> None:
    state = "delayed" if delay else "waiting"
    jobs = await queue.add_bulk({"name": "even" if n % 2 == 0 else "odd", "data": {"n": n},
                                 "delay": delay} for n in range(250))
    expected = [job.id for job in reversed(jobs) if job.name == "even"]
    found, pages = await every_match(inspector, queue.name, state, JobQuery(name="even"),
                                     count=7, scan=37)
    assert found == expected  # each once, newest first (for delayed: latest due first)
    assert len(pages) >= 250 // 37
    # "scanned X of Y": the scan grows to the whole state, never past it.
    assert [p.scanned for p in pages] == sorted(p.scanned for p in pages)
    assert pages[-1].scanned == pages[-1].total == 250
    assert all(p.examined <= 37 and len(p.jobs) <= 7 for p in pages)


async def test_the_cursor_resumes_after_its_job_while_jobs_come_and_go(
    inspector: Inspector, queue: Queue
) -> None:
    old = await queue.add_bulk({"name": "old", "data": {"n": n}} for n in range(60))
    late = await queue.add_bulk({"name": "old", "data": {"n": n}, "delay": 60_000}
                                for n in range(60))
    for state, jobs in (("waiting", old), ("delayed", late)):
        first = await inspector.search(queue.name, state, JobQuery(name="old"), count=20)
        assert [j.id for j in first.jobs] == [j.id for j in reversed(jobs)][:20]
        # New jobs arrive (newer than the cursor), and the cursor's own job leaves.
        await queue.add_bulk({"name": "old", "data": {"n": n}, "delay": 2 * 60_000 if
                              state == "delayed" else 0} for n in range(5))
        assert await queue.remove(first.jobs[-1].id)
        rest, _ = await every_match(inspector, queue.name, state, JobQuery(name="old"))
        again = await inspector.search(queue.name, state, JobQuery(name="old"),
                                       cursor=first.cursor, count=1000)
        assert [j.id for j in again.jobs] == [j.id for j in reversed(jobs)][20:]
        assert len(rest) == 64  # a fresh search sees the newcomers, not the removed job


async def test_big_jobs_stay_in_redis_and_a_request_reads_a_bounded_amount(
    inspector: Inspector, queue: Queue
) -> None:
    big = "x" * 900_000  # near the 1 MiB limit of a job's data
    await queue.add_bulk({"name": f"big-{n}", "data": {"blob": big, "n": n}} for n in range(12))
    client = inspector.queue(queue.name).client

    async def sent() -> int:
        return int((await client.info("stats"))["total_net_output_bytes"])

    before = await sent()
    page = await inspector.search(queue.name, "waiting", JobQuery(name="big-3"))
    assert [job.name for job in page.jobs] == ["big-3"] and page.cursor is None
    assert await sent() - before < 50_000  # the 10.8 MB of data never left Redis
    # The data a request reads is bounded (SEARCH_BYTES, 8 MiB): 9 of these jobs.
    page = await inspector.search(queue.name, "waiting", JobQuery(data="n=0"))
    assert page.examined == SEARCH_BYTES // len('{"blob":"","n":0}' + big) == 9
    assert page.jobs == [] and page.cursor is not None
    assert (page.scanned, page.total) == (9, 12)
    page = await inspector.search(queue.name, "waiting", JobQuery(data="n=0"),
                                  cursor=page.cursor)
    assert [job.name for job in page.jobs] == ["big-0"] and page.cursor is None
    assert page.scanned == 12


async def test_a_partitioned_queue_is_searched_partition_after_partition(
    redis_url: str, inspector: Inspector, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url, partitions=3) as queue:
        jobs = await queue.add_bulk({"name": "p", "data": {"n": n}} for n in range(90))
    found, pages = await every_match(inspector, queue_name, "waiting",
                                     JobQuery(data_contains='"n":1'), count=4, scan=25)
    assert sorted(found) == sorted(job.id for job in jobs if str(job.data["n"]).startswith("1"))
    assert pages[-1].scanned == pages[-1].total == 90


async def test_bad_filters_name_their_field(inspector: Inspector, queue: Queue) -> None:
    await queue.add("a", {"n": 1})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"query": JobQuery(data="user.id")}, "data"),
        ({"query": JobQuery(data="user..id=1")}, "data"),
        ({"query": JobQuery(data="=1")}, "data"),
        ({"query": JobQuery(data="user.id=")}, "data"),
        ({"query": JobQuery(data='user={"id": 1}')}, "data"),
        ({"query": JobQuery(name="")}, "name"),
        ({"query": JobQuery(created_after=-1)}, "created_after"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": forged([1, "waiting", 0, 2**60, "", "1", "", 0])}, "cursor"),
        ({"cursor": forged([1, "waiting", 0, True, "", "1", "", 0])}, "cursor"),
        ({"cursor": forged([1, "waiting", 0, 3, "nan", "1", "", 0])}, "cursor"),
        ({"cursor": forged([1, "waiting", 0, 3, "x", "1", "", 0])}, "cursor"),
        ({"cursor": forged([1, "waiting", 5, 3, "", "1", "", 0])}, "cursor"),
        ({"count": 0}, "count"),
        ({"scan": 10_001}, "scan"),
    ]
    for arguments, field in cases:
        with pytest.raises(ValidationError) as refused:
            await inspector.search(queue.name, "waiting", **arguments)
        assert refused.value.field == field, arguments
    with pytest.raises(ValidationError) as refused:
        await inspector.search(queue.name, "sleeping")
    assert refused.value.field == "state"
    # A cursor belongs to its state.
    await queue.add_bulk({"name": "a"} for _ in range(3))
    page = await inspector.search(queue.name, "waiting", scan=1)
    with pytest.raises(ValidationError, match="continues a search of 'waiting' jobs"):
        await inspector.search(queue.name, "failed", cursor=page.cursor)


def forged(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode()


def test_the_data_filter_syntax() -> None:
    assert parse_data_filter("user.id=42") == (["user", "id"], 42)
    assert parse_data_filter("$.user.id == 42") == (["user", "id"], 42)
    assert parse_data_filter('items[2].sku="A-1"') == (["items", "2", "sku"], "A-1")
    assert parse_data_filter("status=paid") == (["status"], "paid")
    assert parse_data_filter("ok=true") == (["ok"], True)
    assert parse_data_filter("gone=null") == (["gone"], None)
    assert parse_time("created_after", "1700000000000") == 1_700_000_000_000
    assert parse_time("created_after", "2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("created_after", "2023-11-14T22:13:20") == 1_700_000_000_000
    with pytest.raises(ValidationError, match="created_after"):
        parse_time("created_after", "yesterday")
