"""The minimal Redis ACL of SECURITY.md, taken from the page itself (so the doc
and the test cannot drift): a private redis-server gets that user, and every
part of conveyor runs as it (adds, workers with retries, delays, priorities,
rate limits and groups, events, cancels, schedulers, flows, the Inspector, the
REST API, /metrics, the CLI, clean, drain and obliterate) with nothing in
``ACL LOG``; keys, channels and commands outside it stay refused."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis as redis_sync
from click.testing import CliRunner

from conveyor import (
    Conveyor,
    DurabilityError,
    FlowProducer,
    Job,
    Queue,
    QueueEvents,
    RateLimitError,
    UnrecoverableError,
    Worker,
)
from conveyor.cli import main
from conveyor.inspection import Inspector
from conveyor.sync import Queue as SyncQueue
from conveyor.web import create_app
from helpers import running, wait_for
from redis_server import RedisServer
from web_support import asgi_client

SECURITY_MD = Path(__file__).resolve().parent.parent / "SECURITY.md"


def acl_setuser_line() -> str:
    """The one ``ACL SETUSER`` line of SECURITY.md's ```redis block."""
    blocks = re.findall(r"```redis\n(.*?)```", SECURITY_MD.read_text("utf-8"), re.S)
    lines = [line for block in blocks for line in block.splitlines()
             if line.startswith("ACL SETUSER ")]
    assert len(lines) == 1, lines
    return lines[0]


def user_and_password(line: str) -> tuple[str, str]:
    words = shlex.split(line)
    [password] = [w[1:] for w in words if w.startswith(">")]
    return words[2], password


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A private server with the documented user (the default user stays, for setup)."""
    with RedisServer() as server, redis_sync.Redis.from_url(server.url) as admin:
        admin.execute_command(*shlex.split(acl_setuser_line()))
        yield server


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis_sync.Redis]:
    with redis_sync.Redis.from_url(acl_server.url, decode_responses=True) as client:
        client.flushall()
        client.execute_command("ACL", "LOG", "RESET")
        yield client


@pytest.fixture
def user_url(acl_server: RedisServer, admin: redis_sync.Redis) -> str:
    """The URL of the documented user."""
    user, password = user_and_password(acl_setuser_line())
    return f"redis://{quote(user)}:{quote(password)}@127.0.0.1:{acl_server.port}/0"


@pytest.fixture
def url(user_url: str, admin: redis_sync.Redis) -> Iterator[str]:
    """:func:`user_url`; the test fails if the server refused that user anything."""
    yield user_url
    refused = admin.execute_command("ACL", "LOG")
    assert refused == [], f"refused to the conveyor user: {refused}"


def test_the_documented_acl_is_minimal_in_keys_channels_and_commands(
    user_url: str, admin: redis_sync.Redis
) -> None:
    with redis_sync.Redis.from_url(user_url) as client:
        client.set("conveyor:probe", 1)  # inside the prefix: allowed
        assert client.delete("conveyor:probe") == 1
        refused = {
            "GET other:key": lambda: client.get("other:key"),
            "SET other:key": lambda: client.set("other:key", 1),
            "a script's GET other:key": lambda: client.evalsha(
                client.script_load("return redis.call('GET', 'other:key')"), 0),
            "EVAL": lambda: client.eval("return 1", 0),
            "PUBLISH other:channel": lambda: client.publish("other:channel", "x"),
            "FLUSHALL": client.flushall,
            "CONFIG GET": lambda: client.config_get("*"),
            "KEYS": lambda: client.keys("*"),
            "CLIENT LIST": client.client_list,
            "SCRIPT FLUSH": client.script_flush,
            "ACL LIST": client.acl_list,
        }
        for what, call in refused.items():
            # a script's refusal is a plain error, whose text says why
            with pytest.raises(redis_sync.exceptions.ResponseError,
                               match=r"(?i)no permissions|can't access"):
                call()
                pytest.fail(f"{what} was allowed")
    objects = {entry["object"] for entry in admin.execute_command("ACL", "LOG")}
    assert {"other:key", "other:channel", "flushall", "keys", "eval"} <= objects
    wrong = user_url.replace("CHANGE-ME", "guess")
    with redis_sync.Redis.from_url(wrong) as client, \
            pytest.raises(redis_sync.exceptions.AuthenticationError):
        client.ping()


async def _process(job: Job) -> Any:
    await job.log(f"working on {job.name}")
    await job.update_progress(50)
    if job.name == "flaky" and job.attempts_made == 0:
        raise RuntimeError("first attempt fails")
    if job.name == "doomed":
        raise UnrecoverableError("never works")
    if job.name == "limited" and job.attempts_made == 0 and not job.data:
        await job.update_data({"again": True})
        raise RateLimitError(10)
    if job.name == "stepped" and not job.data:
        await job.update_data({"step": 2})
        await job.move_to_delayed(10)
        return None
    if job.name == "slow":
        await asyncio.sleep(60)
    return {"done": job.name}


async def _finished(queue: Queue, ids: list[str]) -> bool:
    states = [await queue.get_job_state(job_id) for job_id in ids]
    return all(state in ("completed", "failed", None) for state in states)  # None: trimmed


async def test_producers_workers_events_schedulers_and_flows_run_as_the_user(url: str) -> None:
    async with Queue("acl-main", url) as queue, Queue("acl-other", url) as other, \
            FlowProducer(url) as flows:
        events = QueueEvents("acl-main", url, last_id="0", block=100)
        jobs = [await queue.add("plain", {"n": 1}),
                await queue.add("flaky", attempts=2, backoff=10),
                await queue.add("doomed", dead_letter_queue="acl-dead"),
                await queue.add("limited"),
                await queue.add("stepped"),
                await queue.add("soon", delay=20),
                await queue.add("grouped", group="tenant-1"),
                await queue.add("deduped", deduplication={"id": "k", "ttl": 60_000}),
                *await queue.add_bulk([{"name": "bulk", "data": i, "priority": i + 1}
                                       for i in range(3)])]
        # its completed set kept to 1 job
        kept = [await other.add("kept", i, remove_on_complete=1) for i in range(3)]
        # a job whose key something else wrote over: the worker fails it alone
        await queue.client.set(queue.keys.job("corrupt"), "not a hash")
        await queue.client.rpush(queue.keys.wait, "corrupt")
        later = await queue.add("later", delay=3_600_000)
        await later.change_delay(3_500_000)
        prioritized = await queue.add("prio", priority=5)
        await prioritized.change_priority(1)
        await queue.set_group_concurrency(2)
        await queue.set_group_limit(10, 1000)
        await queue.set_global_concurrency(5)
        await queue.rate_limit(0)
        await queue.upsert_job_scheduler("hourly", every=3_600_000, immediately=True)
        flow = await flows.add({"name": "parent", "queue_name": "acl-main",
                                "children": [{"name": "child", "queue_name": "acl-other"}]})

        main_worker = Worker("acl-main", _process, connection=url, concurrency=4,
                             handle_signals=False, limiter={"max": 100, "duration": 1000},
                             stalled_interval=100, keep_logs=1)
        other_worker = Worker("acl-other", _process, connection=url, handle_signals=False)
        async with running(main_worker), running(other_worker):
            ids = [job.id for job in jobs] + [prioritized.id, flow.job.id, "corrupt"]
            await wait_for(lambda: _finished(queue, ids), timeout=30)
            await wait_for(lambda: _finished(other, [job.id for job in kept]), timeout=30)
            slow = await queue.add("slow")
            await wait_for(lambda: _state_is(queue, slow.id, "active"), timeout=10)
            assert await queue.cancel(slow.id, "no longer needed")  # pub/sub to the worker
            await wait_for(lambda: _state_is(queue, slow.id, "failed"), timeout=10)
            assert [w.id for w in await queue.get_workers()] == [main_worker.id]

        assert await queue.get_job_state("corrupt") == "failed"
        assert (await flows.get_flow("acl-main", flow.job.id)) is not None
        seen = set()
        async with asyncio.timeout(10):  # XREAD of the stream from its start
            async for event in events:
                seen.add(event["event"])
                if {"completed", "failed", "retrying"} <= seen:
                    break
        await events.close()
        await queue.get_metrics("completed")
        await queue.get_timings()
        await queue.get_dead_letter()
        await queue.get_jobs(["completed", "failed", "delayed"])
        await queue.get_deduplication_job_id("k")
        await queue.remove_deduplication_key("k")
        await queue.retry_job(jobs[2].id)
        await queue.promote_jobs()
        await queue.retry_jobs()
        assert await queue.remove(later.id)
        await queue.pause()
        await queue.resume()
        await queue.get_job_schedulers()
        await queue.remove_job_scheduler("hourly")
        await queue.clean(0, 100, "completed")
        await queue.drain(delayed=True)
        await queue.obliterate(force=True)


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


async def test_a_conveyor_app_with_tasks_and_schedules_runs_as_the_user(url: str) -> None:
    async with Conveyor(url) as app:
        @app.task(queue="acl-tasks")
        async def double(n: int) -> int:
            return 2 * n

        @app.every(3_600_000, queue="acl-tasks", immediately=True)
        async def tick() -> None: ...

        job = await double.enqueue(21)
        running = asyncio.create_task(app.run(handle_signals=False))
        try:
            assert await job.wait_until_finished(timeout=20) == 42
        finally:
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running


async def test_the_inspector_rest_api_and_metrics_run_as_the_user(url: str) -> None:
    async with Queue("acl-web", url) as queue:
        failed = await queue.add("x", attempts=1)
        async with running(Worker("acl-web", _fail, connection=url, handle_signals=False)):
            await wait_for(lambda: _state_is(queue, failed.id, "failed"), timeout=10)
        delayed = await queue.add("later", delay=3_600_000)
        await queue.upsert_job_scheduler("nightly", cron="0 3 * * *")

    async with Inspector(url) as inspector:
        assert await inspector.discover() == ["acl-web"]
        await inspector.summaries()
        await inspector.dashboard()
        await inspector.health("acl-web")
        await inspector.throughput("acl-web")
        await inspector.workers("acl-web")
        await inspector.schedulers("acl-web")
        await inspector.jobs("acl-web", "delayed")
        await inspector.job("acl-web", failed.id)

    app = create_app(url)
    async with asgi_client(app) as client:
        api = "/api/v1"
        for path in ("/queues", "/queue/metrics", "/queue/dashboard", "/health",
                     "/queues/acl-web/jobs?state=failed", f"/queues/acl-web/jobs/{failed.id}",
                     "/queue/dead-letter/acl-web", "/queues/acl-web/throughput",
                     "/queues/acl-web/schedulers", "/queues/acl-web/workers"):
            assert (await client.get(api + path)).status_code == 200, path
        for path in (f"/queues/acl-web/jobs/{failed.id}/retry",
                     f"/queues/acl-web/jobs/{delayed.id}/promote", "/queues/acl-web/pause",
                     "/queues/acl-web/resume", "/queues/acl-web/retry", "/queues/acl-web/clean"):
            assert (await client.post(api + path, json={})).status_code == 200, path
        added = await client.post(f"{api}/queues/acl-web/jobs", json={"name": "y"})
        assert added.status_code == 201
        removed = await client.delete(f"{api}/queues/acl-web/jobs/{added.json()['data']['id']}")
        assert removed.status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "conveyor_jobs{" in metrics.text
    await app.state.conveyor.close()


async def _fail(job: Job) -> None:
    raise RuntimeError("no")


def test_the_cli_runs_as_the_user(url: str) -> None:
    url = url.removesuffix("/0") + "/1"  # a database of its own: SELECT
    with SyncQueue("acl-cli", url) as queue:
        job = queue.add("x", {"n": 1}, delay=3_600_000)
        queue.get_job(job.id)
        queue.get_job_counts()

    def ok(*args: str) -> None:
        result = CliRunner().invoke(main, [*args, "--redis", url])
        assert result.exit_code == 0, result.output

    ok("stats")
    ok("stats", "--json")
    ok("jobs", "list", "acl-cli", "--state", "delayed")
    ok("jobs", "show", "acl-cli", job.id)
    ok("jobs", "promote", "acl-cli", job.id)
    ok("enqueue", "acl-cli", "y", "--data", '{"n": 2}')
    ok("queue", "pause", "acl-cli")
    ok("queue", "resume", "acl-cli")
    ok("queue", "workers", "acl-cli")
    ok("queue", "schedulers", "acl-cli")
    ok("jobs", "clean", "acl-cli", "--state", "waiting")
    ok("jobs", "retry", "acl-cli", "--all")


def _without_channels(line: str) -> str:
    """The documented user as ``conveyor-nochannels``, granted no channel."""
    words = shlex.split(line)
    words[2] = "conveyor-nochannels"
    return shlex.join(w for w in words if not w.startswith("&"))


async def test_cancel_works_for_a_user_without_channel_permissions(
    acl_server: RedisServer, admin: redis_sync.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    line = _without_channels(acl_setuser_line())
    assert "resetchannels" in line and "&" not in line
    admin.execute_command(*shlex.split(line))
    _, password = user_and_password(line)
    url = f"redis://conveyor-nochannels:{quote(password)}@127.0.0.1:{acl_server.port}/0"
    async with Queue("acl-nochannels", url) as queue:
        worker = Worker("acl-nochannels", _process, connection=url, handle_signals=False,
                        lock_duration=1000)
        async with running(worker):
            slow = await queue.add("slow")
            await wait_for(lambda: _state_is(queue, slow.id, "active"), timeout=10)
            # applied (no error after writing), and the worker finds the mark when it
            # renews its locks: no pub/sub needed
            assert await queue.cancel(slow.id, "no channel needed")
            await wait_for(lambda: _state_is(queue, slow.id, "failed"), timeout=10)
            assert (await queue.get_job(slow.id)).failed_reason == "cancelled: no channel needed"
            after = await queue.add("plain")  # the worker carries on
            await wait_for(lambda: _state_is(queue, after.id, "completed"), timeout=10)
        assert any("may not subscribe" in r.getMessage() for r in caplog.records)
    refused = admin.execute_command("ACL", "LOG")
    # the only refusals: the channel, for the worker's SUBSCRIBE and the script's PUBLISH
    assert refused and {entry["reason"] for entry in refused} == {"channel"}
    assert {entry["object"] for entry in refused} == {queue.keys.cancel_channel}


async def test_a_durable_add_and_the_server_check_run_as_the_user(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Queue("acl-durable", url, durable=1, durable_timeout=10) as queue:
        # WAIT allowed: this server has no replica, so the add is refused as short
        with pytest.raises(DurabilityError):
            await queue.add("x")
    async with Queue("acl-durable", url) as queue:  # bulks of several script calls
        assert len(await queue.add_bulk([{"name": "b"}] * 1100)) == 1100
    worker = Worker("acl-durable", _process, connection=url, handle_signals=False)
    async with running(worker):
        await wait_for(lambda: "conveyor-server-check" not in
                       {t.get_name() for t in asyncio.all_tasks()}, timeout=10)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
