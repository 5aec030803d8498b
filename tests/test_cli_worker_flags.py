"""``conveyor worker`` flags that bound a worker's life, as real subprocesses:
``--burst``, ``--max-jobs``, ``--max-memory`` (and the recycling of a
supervisor's children they make), ``--reload`` and ``--log-format json``."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor import Job, Queue
from helpers import wait_for
from test_cli_worker import Spawn, alive, exit_code, worker_pids

APP = '''
import logging
import os

from conveyor.app import Conveyor, current_job

app = Conveyor()
log = logging.getLogger("tasks")
VERSION = 1
HOLD = []


@app.task(queue="work")
async def record(n: int) -> dict:
    job = current_job()
    # Runs by job id, kept by Redis: a job run twice counts 2.
    await job.queue.client.hincrby("{work}:test-runs", job.id, 1)
    log.info("recording %s", n)
    return {"n": n, "pid": os.getpid(), "version": VERSION}


@app.task(queue="work")
async def hog(mib: int) -> int:
    HOLD.append(b"x" * (mib * 2**20))  # written, so resident
    return os.getpid()


@app.task(queue="work")
async def broken(text: str) -> None:
    try:
        raise ValueError(text)
    except ValueError:
        log.exception("broken %s", text)
        raise
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(APP)
    return tmp_path


@pytest.fixture
def spawn(app_dir: Path, redis_url: str) -> Iterator[Spawn]:
    """Killed at teardown if a test left it running."""
    spawner = Spawn(app_dir, redis_url)
    try:
        yield spawner
    finally:
        for proc in spawner.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
async def work(redis_url: str) -> AsyncIterator[Queue]:
    async with Queue("work", redis_url) as queue:
        yield queue


async def add_records(queue: Queue, n: int) -> list[Job]:
    return await queue.add_bulk([{"name": "record", "data": {"n": i}} for i in range(n)])


async def runs(queue: Queue) -> dict[str, int]:
    counts = await queue.client.hgetall("{work}:test-runs")
    return {key.decode(): int(value) for key, value in counts.items()}


async def results(jobs: list[Job]) -> list[Any]:
    return [await job.wait_until_finished(timeout=30) for job in jobs]


# -- --burst --------------------------------------------------------------------------


async def test_burst_runs_what_is_ready_then_exits_0(spawn: Spawn, work: Queue) -> None:
    jobs = await add_records(work, 12)
    later = await work.add("record", {"n": 99}, delay=3_600_000)
    proc = spawn("tasks:app", "--burst", "--concurrency", "3")
    assert await exit_code(proc, timeout=60) == 0
    assert await runs(work) == {job.id: 1 for job in jobs}  # the delayed one not run
    assert await work.get_job_counts("completed", "waiting", "active", "delayed") == {
        "completed": 12, "waiting": 0, "active": 0, "delayed": 1}
    assert await later.get_state() == "delayed"
    assert "queue drained (burst)" in spawn.stderr(proc)


async def test_burst_with_processes_exits_0_once_every_process_has(
    spawn: Spawn, work: Queue
) -> None:
    jobs = await add_records(work, 20)
    proc = spawn("tasks:app", "--burst", "--processes", "2", "--concurrency", "2")
    assert await exit_code(proc, timeout=60) == 0
    assert await runs(work) == {job.id: 1 for job in jobs}
    assert await worker_pids(work) == set()
    assert "restarting" not in spawn.stderr(proc)  # a drained child is not replaced


# -- --max-jobs, --max-memory ------------------------------------------------------------


async def test_max_jobs_exits_0_after_that_many_jobs(spawn: Spawn, work: Queue) -> None:
    jobs = await add_records(work, 10)
    proc = spawn("tasks:app", "--max-jobs", "4", "--concurrency", "3")
    assert await exit_code(proc, timeout=60) == 0
    assert await runs(work) == {job.id: 1 for job in jobs[:4]}
    assert await work.get_job_counts("completed", "waiting", "active") == {
        "completed": 4, "waiting": 6, "active": 0}


async def test_a_supervisor_replaces_children_at_max_jobs_and_no_job_is_lost_or_repeated(
    spawn: Spawn, work: Queue
) -> None:
    proc = spawn("tasks:app", "--processes", "2", "--max-jobs", "3", "--concurrency", "2")
    jobs = await add_records(work, 21)
    done = await results(jobs)
    assert await runs(work) == {job.id: 1 for job in jobs}
    by_pid: dict[int, int] = {}
    for result in done:
        by_pid[result["pid"]] = by_pid.get(result["pid"], 0) + 1
    assert max(by_pid.values()) <= 3  # each child took its 3 jobs at most
    assert len(by_pid) >= 7  # so 21 jobs needed at least 7 children
    assert proc.poll() is None  # the supervisor keeps going
    await wait_for(lambda: _pids_count(work, 2), timeout=30)  # two fresh children
    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0
    assert "reached its limit; starting a fresh one" in spawn.stderr(proc)


async def _pids_count(queue: Queue, n: int) -> bool:
    return len(await worker_pids(queue)) == n


async def test_max_memory_stops_a_worker_above_it_after_its_job(
    spawn: Spawn, work: Queue
) -> None:
    proc = spawn("tasks:app", "--max-memory", "250")
    job = await work.add("hog", {"mib": 300})
    assert await exit_code(proc, timeout=60) == 0
    assert await job.wait_until_finished(timeout=5) == proc.pid
    assert "is above --max-memory 250 MiB" in spawn.stderr(proc)


async def test_a_supervisor_replaces_a_child_above_max_memory(
    spawn: Spawn, work: Queue
) -> None:
    proc = spawn("tasks:app", "--processes", "2", "--max-memory", "250")
    first = await wait_for(lambda: _pids(work, 2), timeout=30)
    job = await work.add("hog", {"mib": 300})
    hog_pid = await job.wait_until_finished(timeout=30)
    assert hog_pid in first
    await wait_for(lambda: not alive(hog_pid), timeout=30)
    fresh = await wait_for(lambda: _pids(work, 2), timeout=30)
    assert hog_pid not in fresh and len(fresh & first) == 1
    after = await add_records(work, 4)
    assert {r["pid"] for r in await results(after)} <= fresh
    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0


async def _pids(queue: Queue, n: int) -> set[int]:
    found = await worker_pids(queue)
    return found if len(found) == n else set()


def test_max_memory_below_a_starting_worker_is_one_line(spawn: Spawn) -> None:
    proc = spawn("tasks:app", "--max-memory", "1")
    assert proc.wait(timeout=60) == 1
    [line] = spawn.stderr(proc).strip().splitlines()
    assert line.startswith("Error: --max-memory 1: the worker uses ")
    assert line.endswith(" MiB before its first job")


# -- --reload ----------------------------------------------------------------------------


async def test_reload_restarts_the_worker_when_a_py_file_changes(
    spawn: Spawn, work: Queue, app_dir: Path
) -> None:
    proc = spawn("tasks:app", "--reload")
    [job] = await add_records(work, 1)
    first = await job.wait_until_finished(timeout=30)
    assert first["version"] == 1 and first["pid"] != proc.pid  # a child runs the worker

    (app_dir / "tasks.py").write_text(APP.replace("VERSION = 1", "VERSION = 2"))
    second = await wait_for(lambda: version_runs(work, 2), timeout=60)
    assert second["pid"] != first["pid"] and not alive(first["pid"])
    assert "tasks.py changed: restarting the worker" in spawn.stderr(proc)

    (app_dir / "notes.txt").write_text("not python")  # only Python files count
    (app_dir / "helpers.py").write_text("X = 1\n")  # any of them, imported or not
    third = await wait_for(lambda: version_runs(work, 2, other_than=second["pid"]), timeout=60)
    restarts = [line for line in spawn.stderr(proc).splitlines() if "restarting" in line]
    assert len(restarts) == 2 and "helpers.py" in restarts[1]
    assert "notes.txt" not in spawn.stderr(proc)

    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0
    await wait_for(lambda: not alive(third["pid"]), timeout=15)
    assert await worker_pids(work) == set()


async def version_runs(queue: Queue, version: int, other_than: int = 0) -> Any:
    """The result of a job run by a worker of the app's ``version`` (not in
    process ``other_than``), or None."""
    [probe] = await add_records(queue, 1)
    result = await probe.wait_until_finished(timeout=30)
    return result if result["version"] == version and result["pid"] != other_than else None


def test_reload_dir_without_reload_is_one_line(spawn: Spawn) -> None:
    proc = spawn("tasks:app", "--reload-dir", ".")
    assert proc.wait(timeout=60) == 1
    assert spawn.stderr(proc).strip() == "Error: --reload-dir needs --reload"


# -- --log-format json ----------------------------------------------------------------


async def test_json_logs_are_one_object_a_line_with_the_job_when_known(
    spawn: Spawn, work: Queue
) -> None:
    proc = spawn("tasks:app", "--log-format", "json", "--burst")
    [job] = await add_records(work, 1)
    bad = await work.add("broken", {"text": "two\nlines"})
    assert await exit_code(proc, timeout=60) == 0
    lines = [json.loads(line) for line in spawn.stderr(proc).splitlines()]
    assert all({"time", "level", "logger", "message", "pid"} <= set(line) for line in lines)
    assert all(datetime.fromisoformat(line["time"]).utcoffset() is not None for line in lines)
    [recording] = [line for line in lines if line["logger"] == "tasks"
                   and line["message"].startswith("recording")]
    assert recording == {**recording, "level": "INFO", "message": "recording 0",
                         "job_id": job.id, "queue": "work", "pid": proc.pid}
    [broken] = [line for line in lines if line["message"].startswith("broken")]
    assert broken["message"] == "broken two\nlines"  # escaped inside its one line
    assert (broken["level"], broken["job_id"], broken["queue"]) == ("ERROR", bad.id, "work")
    assert "ValueError: two" in broken["exception"]
    assert any(line["message"].startswith("worker for queues work") and "job_id" not in line
               for line in lines)

