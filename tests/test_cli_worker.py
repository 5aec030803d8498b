"""``conveyor worker MODULE:APP``: the real command, as a subprocess, on an app
module written into a temporary directory."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from addresses import accepts, non_loopback_ipv4
from conveyor import Queue
from helpers import wait_for
from redis_server import free_port

APP = '''
import os

from conveyor.app import Conveyor, current_job

# Unreachable on purpose where a test passes --redis: the flag must win.
app = Conveyor(os.environ.get("APP_REDIS_URL"))


@app.task(queue="email")
async def send(to: str) -> dict:
    return {"to": to, "pid": os.getpid()}


@app.task(queue="reports")
async def slow(key: str) -> str:
    # Runs until the test pushes to ``key``: a job still running at SIGTERM.
    await current_job().queue.client.blpop([key], timeout=30)
    return "finished"


@app.every(3_600_000, queue="reports")
def hourly() -> None:
    return None


app.configure_worker("reports", concurrency=3)
'''



def conveyor_command() -> list[str]:
    script = Path(sys.executable).with_name("conveyor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "conveyor"]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "tasks.py").write_text(APP)
    (tmp_path / "broken.py").write_text("1 / 0\n")
    return tmp_path


class Spawn:
    """spawn(*args, env=...): ``conveyor worker`` running in the app's
    directory, its stderr in a file (``spawn.stderr(proc)``)."""

    def __init__(self, app_dir: Path, redis_url: str) -> None:
        self.app_dir = app_dir
        self.redis_url = redis_url
        self.started: list[subprocess.Popen[str]] = []
        self.logs: dict[int, Path] = {}

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        environment = {
            # The app's directory first, then the caller's path (a checkout's src/).
            **os.environ, "PYTHONPATH": os.pathsep.join(
                filter(None, [str(self.app_dir), os.environ.get("PYTHONPATH")])),
            "CONVEYOR_REDIS_URL": self.redis_url,
            **(env or {}),
        }
        log = self.app_dir / f"stderr-{len(self.started)}.txt"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [*conveyor_command(), "worker", *args], cwd=self.app_dir, env=environment,
                stdout=subprocess.DEVNULL, stderr=stderr, text=True,
            )
        self.started.append(proc)
        self.logs[proc.pid] = log
        return proc

    def stderr(self, proc: subprocess.Popen[str]) -> str:
        return self.logs[proc.pid].read_text()


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
async def email(redis_url: str) -> AsyncIterator[Queue]:
    async with Queue("email", redis_url) as queue:
        yield queue


@pytest.fixture
async def reports(redis_url: str) -> AsyncIterator[Queue]:
    async with Queue("reports", redis_url) as queue:
        yield queue


async def worker_pids(queue: Queue) -> set[int]:
    return {worker.pid for worker in await queue.get_workers()}


async def exit_code(proc: subprocess.Popen[str], timeout: float = 20) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


# -- loading the app ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere:app"], "Error: cannot import 'nowhere': No module named 'nowhere'"),
        (["broken:app"], "Error: importing 'broken' failed: ZeroDivisionError: division by zero"),
        (["tasks:nope"], "Error: 'tasks' has no attribute 'nope'"),
        (["tasks"], "Error: APP must be MODULE:ATTRIBUTE (e.g. myapp.tasks:app), got 'tasks'"),
        (["tasks:send"], "Error: tasks:send is a Task, not a conveyor.app.Conveyor"),
        (["tasks:app", "--queues", "email,nowhere"],
         "Error: queues: no task runs on queue 'nowhere'; the app's queues: email, reports"),
    ],
)
def test_a_bad_app_is_one_line_and_a_failing_exit(
    spawn: Spawn, args: list[str], message: str
) -> None:
    proc = spawn(*args)
    assert proc.wait(timeout=60) == 1
    assert spawn.stderr(proc).strip() == message


# -- one process ------------------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
async def test_one_process_serves_every_queue_and_finishes_jobs_on_sigterm(
    spawn: Spawn, email: Queue, reports: Queue, redis_url: str
) -> None:
    proc = spawn(
        "tasks:app", "--queues", "email,reports", "--concurrency", "5", "--redis", redis_url,
        env={"APP_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    await wait_for(lambda: worker_pids(email), timeout=30)
    await wait_for(lambda: worker_pids(reports), timeout=30)
    assert await worker_pids(email) == await worker_pids(reports) == {proc.pid}
    assert [w.concurrency for w in await email.get_workers()] == [5]
    assert [w.concurrency for w in await reports.get_workers()] == [5]  # the flag wins
    [scheduler] = await reports.get_job_schedulers()  # upserted as the worker started
    assert (scheduler.id, scheduler.job_name, scheduler.every) == ("hourly", "hourly", 3_600_000)

    sent = await email.add("send", {"to": "ada@example.com"})
    assert await sent.wait_until_finished(timeout=10) == {"to": "ada@example.com",
                                                         "pid": proc.pid}
    running = await reports.add("slow", {"key": "release"})
    await wait_for(lambda: has_state(reports, running.id, "active"), timeout=10)

    proc.send_signal(signal.SIGTERM)
    await wait_for(lambda: "finishing running jobs" in spawn.stderr(proc), timeout=10)
    assert proc.poll() is None  # the running job holds the stop
    await reports.client.rpush("release", "go")
    assert await exit_code(proc) == 0
    assert await running.wait_until_finished(timeout=5) == "finished"
    assert await worker_pids(email) == set() and await worker_pids(reports) == set()


async def test_a_second_signal_hands_running_jobs_back(spawn: Spawn, reports: Queue) -> None:
    proc = spawn("tasks:app", "--queues", "reports")
    running = await reports.add("slow", {"key": "never"}, attempts=2)
    await wait_for(lambda: has_state(reports, running.id, "active"), timeout=30)

    proc.send_signal(signal.SIGTERM)
    await wait_for(lambda: "finishing running jobs" in spawn.stderr(proc), timeout=10)
    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0
    assert "handing running jobs back" in spawn.stderr(proc)
    job = await running.refresh()
    assert await job.get_state() == "waiting"
    assert job.attempts_made == 0  # not counted as an attempt


async def test_sigint_stops_a_worker_using_the_environment_redis(
    spawn: Spawn, email: Queue
) -> None:
    proc = spawn("tasks:app", "--queues", "email")  # Conveyor(None): $CONVEYOR_REDIS_URL
    await wait_for(lambda: worker_pids(email), timeout=30)
    job = await email.add("send", {"to": "x"})
    assert (await job.wait_until_finished(timeout=10))["to"] == "x"
    proc.send_signal(signal.SIGINT)
    assert await exit_code(proc) == 0


async def test_without_concurrency_each_queue_runs_with_the_apps_configured_concurrency(
    spawn: Spawn, email: Queue, reports: Queue
) -> None:
    proc = spawn("tasks:app")
    await wait_for(lambda: worker_pids(email), timeout=30)
    await wait_for(lambda: worker_pids(reports), timeout=30)
    assert [w.concurrency for w in await reports.get_workers()] == [3]  # configure_worker
    assert [w.concurrency for w in await email.get_workers()] == [10]  # the default
    assert "reports (concurrency 3)" in spawn.stderr(proc)
    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0


# -- several processes ------------------------------------------------------------


async def test_processes_restart_a_killed_child_and_stop_on_sigterm(
    spawn: Spawn, email: Queue
) -> None:
    proc = spawn("tasks:app", "--queues", "email", "--processes", "2", "--concurrency", "2")
    first = await wait_for(
        lambda: pids_at_least(email, 2), timeout=30, message="two children"
    )
    assert proc.pid not in first
    victim = min(first)
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> set[int]:
        new = await worker_pids(email) - first
        return new if new and not alive(victim) else set()

    [newcomer] = await wait_for(replaced, timeout=30, message="a new child")
    jobs = [await email.add("send", {"to": f"user{i}"}) for i in range(20)]
    results = [await job.wait_until_finished(timeout=15) for job in jobs]
    assert {r["pid"] for r in results} <= (first - {victim}) | {newcomer}

    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0
    for pid in (first - {victim}) | {newcomer}:
        assert not alive(pid)
    assert "exited with -9; restarting" in spawn.stderr(proc)


async def test_children_stop_when_the_supervisor_is_killed(
    spawn: Spawn, email: Queue
) -> None:
    proc = spawn("tasks:app", "--queues", "email", "--processes", "2")
    children = await wait_for(lambda: pids_at_least(email, 2), timeout=30)
    proc.kill()
    proc.wait(timeout=10)
    await wait_for(lambda: not any(alive(pid) for pid in children), timeout=20,
                   message="orphaned children stopping")
    await wait_for(lambda: no_workers(email), timeout=10)


# -- metrics ----------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2])
async def test_metrics_port_serves_prometheus_metrics(
    spawn: Spawn, email: Queue, processes: int
) -> None:
    port = free_port()
    proc = spawn("tasks:app", "--queues", "email", "--metrics-port", str(port),
                 "--processes", str(processes))
    await email.add("send", {"to": "x"})
    await wait_for(lambda: pids_at_least(email, processes), timeout=30)

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                return str(reply.read().decode())
        except OSError:
            return ""

    body = await wait_for(lambda: asyncio.to_thread(scrape), timeout=20,
                          message="a scrape of /metrics")
    assert 'conveyor_jobs{' in body and 'queue="email"' in body, body
    assert f"conveyor_workers{{queue=\"email\"}} {processes}.0" in body, body
    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc) == 0, spawn.stderr(proc)


@pytest.mark.parametrize("host", [None, "0.0.0.0"])
async def test_metrics_port_is_loopback_unless_metrics_host_widens_it(
    spawn: Spawn, email: Queue, host: str | None
) -> None:
    port = free_port()
    widen = [] if host is None else ["--metrics-host", host]
    proc = spawn("tasks:app", "--queues", "email", "--metrics-port", str(port), *widen)
    await wait_for(lambda: pids_at_least(email, 1), timeout=30)
    await wait_for(lambda: asyncio.to_thread(accepts, "127.0.0.1", port), timeout=10,
                   message="the metrics port on 127.0.0.1")
    try:
        outside = non_loopback_ipv4()
        if outside is None:
            pytest.skip("this machine has no non-loopback IPv4 address to try the port from")
        assert await asyncio.to_thread(accepts, outside, port) == (host == "0.0.0.0")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await exit_code(proc) == 0, spawn.stderr(proc)


def test_metrics_host_without_a_port_is_one_line(spawn: Spawn) -> None:
    proc = spawn("tasks:app", "--metrics-host", "0.0.0.0")
    assert proc.wait(timeout=60) == 1
    assert spawn.stderr(proc).strip() == "Error: --metrics-host needs --metrics-port"


# -- helpers ----------------------------------------------------------------------


async def has_state(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state


async def pids_at_least(queue: Queue, n: int) -> set[int]:
    found = await worker_pids(queue)
    return found if len(found) >= n else set()


async def no_workers(queue: Queue) -> bool:
    return not await worker_pids(queue)
