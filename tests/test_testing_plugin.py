"""conveyor.testing, the pytest plugin for applications' tests: a user's own
test files, run by pytest (pytester, in a subprocess), against the private
redis-server the plugin starts."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

SHOP = '''
import asyncio
from unittest.mock import ANY
import pytest
from conveyor import Queue
from conveyor.app import Conveyor
from conveyor.sync import Queue as SyncQueue
from conveyor.testing import (
    assert_enqueued, assert_enqueued_sync, assert_not_enqueued, assert_not_enqueued_sync,
    enqueued_jobs, enqueued_jobs_sync, run_until_empty)

async def place_order(queue, order):
    await queue.add("send_receipt", {"order": order, "to": "ada@example.com"})

async def send(job):
    return f"sent receipt {job.data['order']}"

SERVERS = []

async def test_placing_an_order_enqueues_a_receipt_that_a_worker_sends(conveyor_redis_url):
    SERVERS.append(conveyor_redis_url)
    async with Queue("mail", conveyor_redis_url) as queue:
        await place_order(queue, 7)
        (job,) = await assert_enqueued(queue, "send_receipt", {"order": 7, "to": ANY})
        await assert_enqueued(queue, "send_receipt", count=1)
        await assert_not_enqueued(queue, "send_receipt", {"order": 8, "to": "ada@example.com"})
        ran = await run_until_empty(queue, send)
        assert [(j.id, j.return_value) for j in ran] == [(job.id, "sent receipt 7")]
        await assert_not_enqueued(queue)

async def test_each_test_starts_from_an_empty_redis_of_the_same_server(conveyor_redis_url):
    assert SERVERS == [conveyor_redis_url]
    async with Queue("mail", conveyor_redis_url) as queue:
        assert await enqueued_jobs(queue) == []

async def test_run_until_empty_runs_retries_and_returns_each_job_once(conveyor_redis_url):
    calls = []

    async def flaky(job):
        calls.append(job.id)
        if len(calls) == 1:
            raise ConnectionError("smtp down")
        return "sent"

    async with Queue("mail", conveyor_redis_url) as queue:
        first = await queue.add("send_receipt", {"order": 1}, attempts=2)
        second = await queue.add("send_receipt", {"order": 2}, attempts=2,
                                 backoff={"type": "fixed", "delay": 300})
        ran = await run_until_empty(queue, flaky, delayed=True)
        assert sorted(calls) == sorted([first.id, first.id, second.id])
        assert {j.id: (j.attempts_made, j.return_value) for j in ran} == {
            first.id: (2, "sent"), second.id: (1, "sent")}

async def test_a_job_that_keeps_running_times_run_until_empty_out(conveyor_redis_url):
    async def stuck(job):
        await asyncio.sleep(60)

    async with Queue("mail", conveyor_redis_url) as queue:
        job = await queue.add("send_receipt", {"order": 3})
        with pytest.raises(TimeoutError, match="queue 'mail' not empty after 0.5 s"):
            await run_until_empty(queue, stuck, timeout=0.5)
        assert await queue.get_job_state(job.id) == "waiting"

async def test_run_until_empty_runs_a_task_apps_jobs(conveyor_redis_url):
    app = Conveyor(conveyor_redis_url)

    @app.task(queue="mail")
    async def send_invoice(order: int) -> str:
        return f"invoice {order}"

    await send_invoice.enqueue(order=5)
    ran = await run_until_empty(app.queue("mail"), app)
    assert [(j.name, j.return_value) for j in ran] == [("send_invoice", "invoice 5")]
    await app.close()

def test_the_sync_assertions_check_a_sync_queue(conveyor_redis_url):
    with SyncQueue("mail", conveyor_redis_url) as queue:
        queue.add("send_receipt", {"order": 4})
        (job,) = assert_enqueued_sync(queue, "send_receipt", {"order": 4})
        assert [j.id for j in enqueued_jobs_sync(queue)] == [job.id]
        assert_not_enqueued_sync(queue, "send_invoice")
        with pytest.raises(AssertionError, match="expected 2 job.s. of any name in queue"):
            assert_enqueued_sync(queue, count=2)

def test_an_isolated_server_is_the_tests_own(
        conveyor_isolated_redis_server, conveyor_redis_server):
    assert conveyor_isolated_redis_server.running
    assert conveyor_isolated_redis_server.port != conveyor_redis_server.port
'''


def user_project(pytester: pytest.Pytester, **files: str) -> None:
    pytester.makeini(INI)
    pytester.makeconftest('pytest_plugins = ["conveyor.testing"]\n')
    pytester.makepyfile(**files)


def test_a_users_tests_get_a_private_redis_a_worker_run_and_job_assertions(
        pytester: pytest.Pytester) -> None:
    user_project(pytester, test_shop=SHOP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)


def test_a_failed_assertion_says_what_the_queue_holds(pytester: pytest.Pytester) -> None:
    user_project(pytester, test_receipt='''
from conveyor import Queue
from conveyor.testing import assert_enqueued

async def test_receipt(conveyor_redis_url):
    async with Queue("mail", conveyor_redis_url) as queue:
        await queue.add("send_receipt", {"order": 7})
        await queue.add("send_invoice", {"order": 7})
        await assert_enqueued(queue, "send_receipt", {"order": 9})
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E*AssertionError: expected a job named 'send_receipt' with data {'order': 9} in "
        "queue 'mail', found 0; the queue holds: 'send_receipt' {'order': 7}, "
        "'send_invoice' {'order': 7}",
    ])


def test_without_a_redis_server_the_tests_are_skipped_saying_why(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    user_project(pytester, test_needs_redis='''
def test_needs_redis(conveyor_redis_url):
    raise AssertionError("ran without Redis")
''')
    monkeypatch.setenv("CONVEYOR_REDIS_SERVER", "/nonexistent/redis-server")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*conveyor.testing: no redis-server at /nonexistent/redis-server*"])


@pytest.mark.parametrize("named_in_conftest", [False, True])
def test_the_entry_point_loads_the_plugin_once_even_when_a_conftest_names_it_too(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        named_in_conftest: bool) -> None:
    # The package's pytest11 entry point, as an installed distribution declares it.
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["pytest11"]
    site = pytester.mkdir("site") / "conveyor_plugin_check-0.dist-info"
    site.mkdir()
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: conveyor-plugin-check\n"
                                   "Version: 0\n")
    (site / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    pytester.makeini(INI)
    if named_in_conftest:
        pytester.makeconftest('pytest_plugins = ["conveyor.testing"]\n')
    pytester.makepyfile(test_plain="def test_url(conveyor_redis_url):\n"
                                   "    assert conveyor_redis_url.startswith('redis://')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
