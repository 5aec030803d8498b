"""``conveyor jobs search``, run as a process as a user would: filters, the
footer's "scanned X of Y" and cursor, --all, --json, and one line for a mistake."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import orjson
import pytest

from conveyor import Job, Queue
from helpers import StartWorker, wait_for

pytestmark = pytest.mark.cluster


async def conveyor(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "conveyor", "jobs", "search", *args, "--redis", redis_url]
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin",
                                                    "PYTHONPATH": ":".join(sys.path)})


async def as_json(redis_url: str, *args: str) -> Any:
    done = await conveyor(redis_url, *args, "--json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


async def fail(job: Job) -> Any:
    raise RuntimeError(f"card {job.data['card']} declined")


async def test_a_search_by_reason_data_and_name_pages_with_its_cursor(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    jobs = await queue.add_bulk({"name": "charge" if n % 2 else "refund",
                                 "data": {"card": f"c{n % 4}", "amount": n}} for n in range(24))
    worker = start_worker(fail, concurrency=8)

    async def all_failed() -> bool:
        return (await queue.get_job_counts("failed"))["failed"] == 24

    await wait_for(all_failed, timeout=30)
    await worker.close()
    found = await as_json(redis_url, queue.name, "--reason", "C3 DECLINED", "--name", "charge")
    assert {job["id"] for job in found["jobs"]} == {j.id for j in jobs if j.data["card"] == "c3"}
    assert found["cursor"] is None and found["scanned"] == found["total"] == 24
    # A page at a time: the cursor of one page goes on where it stopped.
    later = await queue.add_bulk({"name": "later", "data": {"amount": n}} for n in range(15))
    args = ("--state", "waiting", "--data", "amount=5", "--scan", "5")
    first = await as_json(redis_url, queue.name, *args)  # amounts 14..10
    assert first["jobs"] == [] and first["scanned"] == 5 and first["cursor"]
    rest = await as_json(redis_url, queue.name, *args, "--cursor", first["cursor"])  # 9..5
    assert [job["id"] for job in rest["jobs"]] == [later[5].id] and rest["scanned"] == 10
    # --all follows the cursor to the end.
    every = await as_json(redis_url, queue.name, "--data-contains", '"c1"', "--scan", "5",
                          "--all")
    assert len(every["jobs"]) == 6 and every["cursor"] is None and every["scanned"] == 24
    # The table says how far the scan got and how to go on.
    table = await conveyor(redis_url, queue.name, "--name", "refund", "--scan", "10")
    assert table.returncode == 0, table.stderr
    assert re.search(r"\d+ match(es)?; scanned 10 of 24 failed jobs", table.stdout)
    assert "continue: --cursor " in table.stdout and "refund" in table.stdout
    done = await conveyor(redis_url, queue.name, "--state", "waiting", "--created-before", "1h")
    assert "0 matches; scanned 15 of 15 waiting jobs" in done.stdout and "(all)" in done.stdout


@pytest.mark.cluster(False)  # refused before any Redis command
@pytest.mark.parametrize(("args", "message"), [
    (["--data", "user.id"], "Error: data: expected PATH=VALUE (e.g. user.id=42), got 'user.id'"),
    (["--data", "a=[1]"], "Error: data: the value must be a string, number, true, false or "
                          "null, not an object or array"),
    (["--created-after", "tuesday"], "Error: --created-after: expected epoch ms or an ISO "
                                     "8601 time (2026-12-03T16:00:00Z), got 'tuesday'"),
    (["--cursor", "xyz"], "Error: cursor: not a cursor this search returned"),
])
async def test_a_mistake_is_one_line(
    redis_url: str, queue: Queue, args: list[str], message: str
) -> None:
    await queue.add("a")
    done = await conveyor(redis_url, queue.name, *args)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [message]
