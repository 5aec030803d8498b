"""Which job ids exist, and that every call taking one agrees with add: an id
no job can have (a ':' in it, '.', '..', empty, too long) is refused with a
ValidationError naming ``job_id`` (422 over HTTP, one line in the CLI), never a
Redis error; an id with '/' is reachable everywhere, the REST API included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from conveyor import Conveyor, FlowProducer, Job, Queue, ValidationError
from conveyor.cli import main
from conveyor.inspection import Inspector
from conveyor.options import MAX_JOB_ID
from conveyor.sync import Queue as SyncQueue
from helpers import StartWorker, finished, wait_for
from web_support import API, api_client, data, error

#: Ids add refuses. "1:logs" is the key of job 1's log list: before the rule,
#: reads and admin calls reached it and answered Redis's WRONGTYPE.
REFUSED = ["1:logs", "a:b", ".", "..", "x" * (MAX_JOB_ID + 1)]
#: An id with every character a URL treats specially.
SLASHED = "user/42?x=1#top%20"

Call = Callable[[Queue, Inspector, str], Awaitable[Any]]


def _calls() -> dict[str, Call]:
    async def get_flow(q: Queue, i: Inspector, job_id: str) -> Any:
        async with FlowProducer(q.client) as flows:
            return await flows.get_flow(q.name, job_id)

    return {
        "Queue.get_job": lambda q, i, j: q.get_job(j),
        "Queue.get_job_state": lambda q, i, j: q.get_job_state(j),
        "Queue.cancel": lambda q, i, j: q.cancel(j),
        "Queue.remove": lambda q, i, j: q.remove(j),
        "Queue.retry_job": lambda q, i, j: q.retry_job(j),
        "FlowProducer.get_flow": get_flow,
        "Inspector.job": lambda q, i, j: i.job(q.name, j),
        "Inspector.retry": lambda q, i, j: i.retry(q.name, j),
        "Inspector.promote": lambda q, i, j: i.promote(q.name, j),
        "Inspector.remove": lambda q, i, j: i.remove(q.name, j),
    }


CALLS = _calls()


@pytest.fixture
async def logged(queue: Queue) -> Job:
    """Job "1" with a log line, so the key job:1:logs exists (a list)."""
    job = await queue.add("x", job_id="1")
    await job.log("a line")
    return job


@pytest.fixture
async def inspector(redis_url: str) -> AsyncIterator[Inspector]:
    async with Inspector(redis_url) as found:
        yield found


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as found:
        yield found


def path_of(job_id: str) -> str:
    return quote(job_id, safe="")


# -- the library: one rule -------------------------------------------------------------------


@pytest.mark.parametrize("job_id", REFUSED, ids=lambda j: j[:10])
async def test_add_refuses_an_id_no_url_or_key_can_hold(queue: Queue, job_id: str) -> None:
    for add in (lambda: queue.add("x", job_id=job_id),
                lambda: queue.add_bulk([{"name": "x", "job_id": job_id}])):
        with pytest.raises(ValidationError) as info:
            await add()
        assert info.value.field in ("job_id", "jobs[0].job_id")
    async with FlowProducer(queue.client) as flows:
        with pytest.raises(ValidationError, match="job_id"):
            await flows.add({"name": "p", "queue_name": queue.name, "opts": {"job_id": job_id}})
    assert await queue.get_job_counts() == dict.fromkeys(await queue.get_job_counts(), 0)


async def test_a_task_refuses_the_same_ids(redis_url: str, queue_name: str) -> None:
    async with Conveyor(redis_url) as app:
        @app.task(queue=queue_name)
        async def send(to: str) -> None: ...

        for job_id in ("a:b", ".."):
            with pytest.raises(ValidationError) as info:
                await send.with_options(job_id=job_id).enqueue("ada")
            assert info.value.field == "job_id"


@pytest.mark.parametrize("job_id", [*REFUSED, "", None, 1.5], ids=lambda j: repr(j)[:10])
@pytest.mark.parametrize("call", list(CALLS))
async def test_every_call_taking_a_job_id_refuses_what_add_refuses(
    queue: Queue, logged: Job, inspector: Inspector, call: str, job_id: Any
) -> None:
    with pytest.raises(ValidationError) as info:
        await CALLS[call](queue, inspector, job_id)
    assert info.value.field == "job_id"
    assert str(info.value).startswith("job_id: ")
    # nothing was touched: job 1 and its log are as they were
    assert await queue.get_job_state("1") == "waiting"
    assert await logged.get_logs() == ["a line"]


def test_the_sync_queue_refuses_them_too(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.add("x", job_id="1").log("a line")
        for call in (queue.get_job, queue.get_job_state, queue.remove, queue.retry_job,
                     queue.cancel):
            with pytest.raises(ValidationError, match=r"^job_id: may not contain ':'"):
                call("1:logs")
        assert queue.get_job_state("1") == "waiting"


async def test_an_int_id_is_its_digits_everywhere(queue: Queue) -> None:
    job = await queue.add("x", job_id=7)
    assert job.id == "7"
    found = await queue.get_job(7)  # type: ignore[arg-type]
    assert found is not None and found.id == "7"
    assert await queue.remove(7) is True  # type: ignore[arg-type]


async def test_a_slashed_id_works_through_the_library(
    queue: Queue, inspector: Inspector
) -> None:
    job = await queue.add("x", {"n": 1}, job_id=SLASHED, delay=60_000)
    assert job.id == SLASHED
    assert (await inspector.job(queue.name, SLASHED)).summary.id == SLASHED
    await inspector.promote(queue.name, SLASHED)
    assert await queue.get_job_state(SLASHED) == "waiting"
    assert await queue.remove(SLASHED) is True


# -- the REST API ----------------------------------------------------------------------------


def _routes(queue: str, job: str) -> list[tuple[str, str]]:
    return [("GET", f"{API}/queues/{queue}/jobs/{job}"),
            ("DELETE", f"{API}/queues/{queue}/jobs/{job}"),
            ("POST", f"{API}/queues/{queue}/jobs/{job}/retry"),
            ("POST", f"{API}/queues/{queue}/jobs/{job}/promote"),
            ("POST", f"{API}/queue/retry/{queue}/{job}")]


@pytest.mark.parametrize("job_id", ["1:logs", "a:b", "x" * (MAX_JOB_ID + 1)],
                         ids=lambda j: j[:10])
async def test_rest_refuses_an_impossible_id_with_a_422_naming_job_id(
    client: httpx.AsyncClient, queue: Queue, logged: Job, job_id: str
) -> None:
    for method, url in _routes(queue.name, path_of(job_id)):
        found = error(await client.request(method, url), 422, "validation_error")
        assert found["field"] == "job_id", (method, url)
        assert "WRONGTYPE" not in found["message"] and "script" not in found["message"]
    assert await queue.get_job_state("1") == "waiting"
    assert await logged.get_logs() == ["a line"]


async def test_rest_refuses_a_dotted_id_when_adding(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    for job_id in (".", ".."):
        body = {"name": "x", "options": {"job_id": job_id}}
        found = error(await client.post(f"{API}/queues/{queue.name}/jobs", json=body), 422,
                      "validation_error")
        assert found["field"] == "job_id"


@pytest.mark.parametrize("encode", [True, False], ids=["%2F", "raw-slash"])
async def test_rest_reaches_a_job_whose_id_has_a_slash(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker, encode: bool
) -> None:
    def url(job_id: str) -> str:
        return path_of(job_id) if encode else quote(job_id, safe="/")

    added = data(await client.post(f"{API}/queues/{queue.name}/jobs",
                                   json={"name": "x", "options": {"job_id": SLASHED}}), 201)
    assert added["id"] == SLASHED
    shown = data(await client.get(f"{API}/queues/{queue.name}/jobs/{url(SLASHED)}"))
    assert shown["id"] == SLASHED and shown["state"] == "waiting"

    async def fail(job: Job) -> None:
        raise RuntimeError("no")

    worker = start_worker(fail)
    await wait_for(lambda: finished(queue, SLASHED))
    await worker.close()
    retried = data(await client.post(f"{API}/queues/{queue.name}/jobs/{url(SLASHED)}/retry"))
    assert retried == {"queue": queue.name, "id": SLASHED, "state": "waiting"}
    await queue.add("y", job_id="other/1", delay=60_000)
    promoted = data(await client.post(f"{API}/queues/{queue.name}/jobs/{url('other/1')}/promote"))
    assert promoted["state"] == "waiting"
    removed = data(await client.delete(f"{API}/queues/{queue.name}/jobs/{url(SLASHED)}"))
    assert removed == {"queue": queue.name, "id": SLASHED, "state": None}
    assert await queue.get_job(SLASHED) is None


async def test_the_action_is_the_last_segment_so_no_id_is_ambiguous(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    await queue.add("x", job_id="a", delay=60_000)
    await queue.add("x", job_id="a/promote", delay=60_000)
    q = f"{API}/queues/{queue.name}/jobs"

    assert data(await client.get(f"{q}/a/promote"))["id"] == "a/promote"
    data(await client.post(f"{q}/a/promote"))
    assert await queue.get_job_state("a") == "waiting"
    assert await queue.get_job_state("a/promote") == "delayed"
    data(await client.post(f"{q}/a%2Fpromote/promote"))
    assert await queue.get_job_state("a/promote") == "waiting"
    data(await client.delete(f"{q}/a/promote"))
    assert await queue.get_job_state("a/promote") is None
    assert await queue.get_job_state("a") == "waiting"


async def test_the_seed_retry_reaches_a_slashed_id(
    client: httpx.AsyncClient, queue: Queue, start_worker: StartWorker
) -> None:
    job = await queue.add("x", job_id="b/1")

    async def fail(job: Job) -> None:
        raise RuntimeError("no")

    worker = start_worker(fail)
    await wait_for(lambda: finished(queue, job.id))
    await worker.close()
    answer = data(await client.post(f"{API}/queue/retry/{queue.name}/b%2F1"))
    assert answer == {"queueName": queue.name, "jobId": "b/1", "state": "waiting"}


async def test_the_jobs_url_with_a_trailing_slash_is_still_the_list(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    await queue.add("x", job_id="only")
    answer = await client.get(f"{API}/queues/{queue.name}/jobs/", follow_redirects=True)
    assert [job["id"] for job in data(answer)["jobs"]] == ["only"]


async def test_a_missing_slashed_id_is_a_404_json(client: httpx.AsyncClient, queue: Queue) -> None:
    await queue.add("x")
    for method, url in _routes(queue.name, "no%2Fsuch"):
        found = error(await client.request(method, url), 404, "job_not_found")
        assert "no/such" in found["message"], (method, url)


async def test_a_scheduler_id_with_a_slash_makes_jobs_the_api_reaches(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    scheduler = await queue.upsert_job_scheduler("reports/daily", every=3_600_000)
    [job] = await queue.get_jobs(["waiting", "delayed"])
    assert "reports/daily" in job.id and scheduler.id == "reports/daily"
    assert data(await client.get(f"{API}/queues/{queue.name}/jobs/{path_of(job.id)}"))[
        "id"] == job.id


async def test_a_redis_error_answers_503_without_redis_s_message(
    client: httpx.AsyncClient, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.add("x")
    await queue.client.set(queue.keys.meta, "not a hash")  # say, another program's key
    with caplog.at_level(logging.ERROR, logger="conveyor.web"):
        found = error(await client.post(f"{API}/queues/{queue.name}/pause"), 503, "redis_error")
    for leak in ("WRONGTYPE", "script", queue.keys.meta, "@user"):
        assert leak not in found["message"]
    assert "WRONGTYPE" in caplog.text  # the operator still sees why


# -- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["jobs", "show"], ["jobs", "retry"], ["jobs", "promote"],
                                     ["jobs", "remove"]], ids=" ".join)
def test_the_cli_refuses_an_impossible_id_in_one_line(
    redis_url: str, queue_name: str, command: list[str]
) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.add("x", job_id="1").log("a line")
        result = CliRunner().invoke(main, [*command, queue_name, "1:logs", "--redis", redis_url])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert result.stderr.strip() == "Error: job_id: may not contain ':', got '1:logs'"
        assert queue.get_job_state("1") == "waiting"
