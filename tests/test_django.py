"""conveyor.django: a job enqueued with enqueue_on_commit is added when the
transaction commits and never when it rolls back, from sync code and from
async code (sync_to_async) alike; manage.py conveyor_worker runs the tasks with
the ORM set up. A real Django project (tests/django_project) against a
PostgreSQL the test starts, run as manage.py commands."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from examples.support.postgres import PostgresServer

from conveyor import Queue
from conveyor.testing import assert_enqueued, assert_not_enqueued
from helpers import wait_for

PROJECT = Path(__file__).parent / "django_project"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A private PostgreSQL with the bookshop's tables."""
    with PostgresServer() as server:
        manage({"DATABASE_URL": server.url}, "migrate", "--run-syncdb")
        yield server.url


@pytest.fixture
def env(database_url: str, redis_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "CONVEYOR_REDIS_URL": redis_url}


@pytest.fixture
async def orders(redis_url: str) -> AsyncIterator[Queue]:
    async with Queue("orders", redis_url) as queue:
        yield queue


def child_env(env: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **env, "PYTHONPATH": path}


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=child_env(env),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def order_id(output: str) -> int:
    found = re.search(r"^order (\d+)$", output, re.MULTILINE)
    assert found, output
    return int(found.group(1))


def order_status(database_url: str, order: int) -> str | None:
    with psycopg.connect(database_url) as db:
        row = db.execute("SELECT status FROM bookshop_order WHERE id = %s", [order]).fetchone()
    return None if row is None else str(row[0])


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
async def test_a_committed_transaction_enqueues_its_job_after_the_commit(
        env: dict[str, str], orders: Queue, mode: list[str]) -> None:
    output = manage(env, "place_order", "ada", *mode)
    order = order_id(output)
    # Not while the transaction was open, but once it committed.
    assert "in the transaction: 0 job(s)\nafter: 1 job(s)\n" in output
    assert order_status(env["DATABASE_URL"], order) == "placed"
    await assert_enqueued(orders, "confirm_order", {"order_id": order}, count=1)


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
async def test_a_rolled_back_transaction_enqueues_nothing(
        env: dict[str, str], orders: Queue, mode: list[str]) -> None:
    output = manage(env, "place_order", "grace", "--rollback", *mode)
    order = order_id(output)
    assert "rolled back\nafter: 0 job(s)\n" in output
    assert order_status(env["DATABASE_URL"], order) is None
    await assert_not_enqueued(orders)


async def test_conveyor_worker_runs_the_tasks_with_the_orm_and_stops_on_sigterm(
        env: dict[str, str], orders: Queue) -> None:
    order = order_id(manage(env, "place_order", "linus"))
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "conveyor_worker", "bookshop.tasks:app",
        "--concurrency", "2", cwd=PROJECT, env=child_env(env), stderr=subprocess.PIPE,
    )
    try:
        await wait_for(lambda: order_status(env["DATABASE_URL"], order) == "confirmed",
                       timeout=30, message="the order confirmed by the worker")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, stderr.decode()
    (job,) = await orders.get_jobs("completed")
    assert job.return_value == "confirmed 1 order(s)"


def test_conveyor_worker_says_what_is_wrong_with_its_arguments_in_one_line(
        env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "conveyor_worker", "bookshop.tasks:nothing"],
        cwd=PROJECT, env=child_env(env), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "Error: 'bookshop.tasks' has no attribute 'nothing'"]


def test_manage_py_help_conveyor_worker_lists_the_options_of_conveyor_worker(
        env: dict[str, str]) -> None:
    shown = manage(env, "help", "conveyor_worker")
    assert shown.startswith("Usage: manage.py conveyor_worker [OPTIONS] MODULE:ATTRIBUTE")
    assert "--queues" in shown and "--concurrency" in shown
