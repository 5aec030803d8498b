"""The ``conveyor`` command line, run as a user would: click's runner for most
commands, a real process where the process matters (the installed script,
``stats --watch``, ``dashboard``, ``bench``). Every command talks to the suite's
private redis-server through ``--redis``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis as redis_sync
from click.testing import CliRunner, Result

from conveyor import Job, Queue, Worker
from conveyor.cli import main
from conveyor.cli.support import DURATION, format_duration
from helpers import process_lines, refused_port, running, url_line, wait_for

CONVEYOR = Path(sys.executable).with_name("conveyor")
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def ok(*args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(*args: str) -> Any:
    return orjson.loads(ok(*args, "--json"))


def one_line_error(result: Result) -> str:
    """The single line a user mistake prints: on stderr, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    return lines[0]


async def _process(job: Job) -> Any:
    if job.data.get("fail"):
        raise RuntimeError(f"boom {job.data['n']}")
    return {"n": job.data["n"]}


def finish_jobs(redis_url: str, queue_name: str, completed: int, failed: int) -> None:
    """Add jobs and let a worker complete ``completed`` and fail ``failed`` of them."""

    async def go() -> None:
        async with Queue(queue_name, redis_url) as q:
            await q.add_bulk(
                [{"name": "ok", "data": {"n": n}} for n in range(completed)]
                + [{"name": "bad", "data": {"n": n, "fail": True}} for n in range(failed)]
            )
            worker = Worker(queue_name, _process, connection=redis_url, concurrency=10,
                            handle_signals=False)
            async with running(worker):
                async def done() -> bool:
                    counts = await q.get_job_counts("completed", "failed")
                    return counts == {"completed": completed, "failed": failed}

                await wait_for(done, message="the worker finished every job")

    asyncio.run(go())


# -- the program -----------------------------------------------------------------


def test_installed_script_shows_every_command() -> None:
    proc = subprocess.run([str(CONVEYOR), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("stats", "jobs", "queue", "enqueue", "worker", "dashboard", "demo",
                    "bench"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout
    version = subprocess.run([sys.executable, "-m", "conveyor", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "0.1.0" in version.stdout


def test_redis_url_comes_from_the_environment(redis_url: str, queue_name: str) -> None:
    result = cli("enqueue", queue_name, "hello", env={"CONVEYOR_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert as_json("stats", queue_name, "--redis", redis_url)[0]["counts"]["waiting"] == 1


@pytest.mark.parametrize(("text", "ms"), [
    ("250", 250), ("250ms", 250), ("30s", 30_000), ("1.5s", 1_500), ("5m", 300_000),
    ("1h", 3_600_000), ("2d", 172_800_000), ("0", 0),
])
def test_durations(text: str, ms: int) -> None:
    assert DURATION.convert(text, None, None) == ms


@pytest.mark.parametrize(("ms", "text"), [
    (None, "-"), (850, "850ms"), (1_500, "1.5s"), (30_000, "30s"), (90_000, "1m30s"),
    (300_000, "5m"), (3_660_000, "1h01m"), (3_600_000, "1h"), (172_800_000, "2d"),
])
def test_durations_shown(ms: int | None, text: str) -> None:
    assert format_duration(ms) == text


# -- enqueue, list, show ---------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_enqueue_list_and_show(redis_url: str, queue_name: str) -> None:
    r = ("--redis", redis_url)
    out = ok("enqueue", queue_name, "send-welcome", "--data", '{"to": "ada@example.com"}',
             "--attempts", "3", "--backoff", "2s", *r)
    assert out.strip() == f"added job 1 (send-welcome) to '{queue_name}': waiting"
    later = as_json("enqueue", queue_name, "reminder", "--delay", "1h", "--job-id", "r-1", *r)
    assert (later["id"], later["state"], later["delay"], later["created"]) == (
        "r-1", "delayed", 3_600_000, True)
    again = ok("enqueue", queue_name, "reminder", "--job-id", "r-1", *r)
    assert "already exists" in again and "nothing added" in again
    ok("enqueue", queue_name, "report", "--priority", "2", *r)

    listed = ok("jobs", "list", queue_name, *r)
    assert "send-welcome" in listed and f"1-1 of 1 waiting jobs in '{queue_name}'" in listed
    page = as_json("jobs", "list", queue_name, "--state", "delayed", *r)
    assert [j["id"] for j in page["jobs"]] == ["r-1"] and page["total"] == 1
    assert page["jobs"][0]["due_ms"] == page["jobs"][0]["timestamp_ms"] + 3_600_000
    wide = cli("jobs", "list", queue_name, "--state", "delayed", *r, env={"COLUMNS": "200"})
    assert " due " in wide.stdout and " in 59m" in wide.stdout  # the due time, not "finished"
    assert as_json("jobs", "list", queue_name, "-s", "prioritized", *r)["jobs"][0]["priority"] == 2

    shown = ok("jobs", "show", queue_name, "1", *r)
    assert '{"to":"ada@example.com"}' in shown and "0 of 3" in shown and "added" in shown
    detail = as_json("jobs", "show", queue_name, "1", *r)
    assert detail["data"] == {"to": "ada@example.com"}
    assert detail["opts"]["backoff"]["type"] == "exponential"
    assert detail["opts"]["backoff"]["delay"] == 2000


def test_enqueue_with_an_empty_job_id_generates_one(redis_url: str, queue_name: str) -> None:
    first = as_json("enqueue", queue_name, "a", "--job-id", "", "--redis", redis_url)
    second = as_json("enqueue", queue_name, "b", "--options", '{"job_id": ""}',
                     "--redis", redis_url)
    assert first["created"] is True and second["created"] is True
    assert first["id"] and second["id"] and first["id"] != second["id"]


def test_enqueue_with_a_number_out_of_bounds_is_one_line(
    redis_url: str, queue_name: str
) -> None:
    r = ("--redis", redis_url)
    assert "delay" in one_line_error(cli("enqueue", queue_name, "x", "--delay", "99999999d", *r))
    assert "delay" in one_line_error(
        cli("enqueue", queue_name, "x", "--options", '{"delay": 1e300}', *r))
    assert "attempts" in one_line_error(
        cli("enqueue", queue_name, "x", "--attempts", str(2**31), *r))
    assert "remove_on_fail.age" in one_line_error(
        cli("enqueue", queue_name, "x", "--options", '{"remove_on_fail": {"age": 1e300}}', *r))


def test_a_job_with_a_far_due_time_is_shown(redis_url: str, queue_name: str) -> None:
    r = ("--redis", redis_url)
    far = as_json("enqueue", queue_name, "far", "--delay", "3652d", *r)
    assert far["state"] == "delayed"
    absurd = as_json("enqueue", queue_name, "absurd", "--delay", "1m", *r)
    key = f"conveyor:{{{queue_name}}}:job:{absurd['id']}"
    # written before delays were bounded (or by another client): past year 9999
    with redis_sync.Redis.from_url(redis_url) as client:
        client.hset(key, "opts", '{"delay":1000000000000000}')
    for job in (far, absurd):
        shown = ok("jobs", "show", queue_name, job["id"], *r)
        assert "delayed" in shown
    listed = ok("jobs", "list", queue_name, "--state", "delayed", *r)
    assert "far" in listed and "absurd" in listed


def test_enqueue_reads_data_from_a_file_and_takes_any_option(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"rows": [1, 2, 3]}')
    job = as_json("enqueue", queue_name, "import", "--data", f"@{data}",
                  "--options", '{"lifo": true, "remove_on_complete": true}', "--redis", redis_url)
    detail = as_json("jobs", "show", queue_name, job["id"], "--redis", redis_url)
    assert detail["data"] == {"rows": [1, 2, 3]}
    assert detail["opts"]["lifo"] is True


def test_pages_of_jobs(redis_url: str, queue_name: str) -> None:
    for n in range(5):
        ok("enqueue", queue_name, f"job{n}", "--redis", redis_url)
    first = as_json("jobs", "list", queue_name, "--count", "2", "--redis", redis_url)
    second = as_json("jobs", "list", queue_name, "--count", "2", "--page", "2",
                     "--redis", redis_url)
    third = as_json("jobs", "list", queue_name, "--count", "2", "--start", "4",
                    "--redis", redis_url)
    ids = [j["id"] for page in (first, second, third) for j in page["jobs"]]
    assert sorted(ids) == ["1", "2", "3", "4", "5"] and first["total"] == 5
    assert "next: --start 2" in ok("jobs", "list", queue_name, "-n", "2", "--redis", redis_url)


# -- stats ----------------------------------------------------------------------------


def test_stats_counts_rates_and_health(redis_url: str, queue_name: str) -> None:
    finish_jobs(redis_url, queue_name, completed=4, failed=2)
    ok("enqueue", queue_name, "later", "--redis", redis_url)
    [summary] = [s for s in as_json("stats", "--redis", redis_url) if s["name"] == queue_name]
    assert summary["counts"]["completed"] == 4 and summary["counts"]["failed"] == 2
    assert summary["counts"]["waiting"] == 1
    assert summary["health"]["status"] == "critical"  # work waits, no worker runs
    table = ok("stats", queue_name, "--redis", redis_url)
    row = next(line for line in table.splitlines() if line.strip().startswith(queue_name))
    assert row.split()[1:6] == ["1", "0", "0", "4", "2"]  # waiting active delayed done failed
    assert f"{queue_name}: 1 job waiting and no worker is running" in table


def test_stats_without_queues(redis_url: str) -> None:
    assert "no queues found" in ok("stats", "--redis", redis_url)


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_stats_watch_refreshes_until_ctrl_c(redis_url: str, queue_name: str) -> None:
    ok("enqueue", queue_name, "hello", "--redis", redis_url)
    with process_lines([str(CONVEYOR), "stats", "--watch", "--interval", "0.2",
                         "--redis", redis_url]) as (proc, lines):
        tables = 0
        for line in lines:
            tables += line.strip().startswith(queue_name)
            if tables == 3:
                break
        assert tables == 3, "three refreshes of the table"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


# -- actions ----------------------------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_failed_jobs_listed_shown_and_retried(redis_url: str, queue_name: str) -> None:
    finish_jobs(redis_url, queue_name, completed=1, failed=3)
    r = ("--redis", redis_url)
    failed = as_json("jobs", "list", queue_name, "--state", "failed", *r)
    assert failed["total"] == 3
    assert {j["failed_reason"] for j in failed["jobs"]} == {
        "RuntimeError: boom 0", "RuntimeError: boom 1", "RuntimeError: boom 2"}
    assert "boom" in ok("jobs", "list", queue_name, "--state", "failed", *r)
    one = failed["jobs"][0]["id"]
    shown = ok("jobs", "show", queue_name, one, *r)
    assert "RuntimeError" in shown and "failed" in shown

    assert ok("jobs", "retry", queue_name, one, *r).strip() == (
        f"job {one} of '{queue_name}' is waiting again")
    assert ok("jobs", "retry", queue_name, "--all", *r).strip() == (
        f"retried 2 failed jobs of '{queue_name}'")
    counts = as_json("stats", queue_name, *r)[0]["counts"]
    assert (counts["failed"], counts["waiting"]) == (0, 3)
    assert as_json("jobs", "retry", queue_name, "--all", "--state", "completed", *r) == {
        "queue": queue_name, "retried": 1}


def test_clean_keeps_jobs_younger_than_grace(redis_url: str, queue_name: str) -> None:
    finish_jobs(redis_url, queue_name, completed=5, failed=1)
    r = ("--redis", redis_url)
    assert ok("jobs", "clean", queue_name, "--grace", "1h", *r).strip() == (
        f"removed 0 completed jobs older than 1h from '{queue_name}'")
    assert as_json("jobs", "clean", queue_name, "--limit", "2", *r)["removed"] == 2
    assert as_json("jobs", "clean", queue_name, *r)["removed"] == 3
    assert as_json("jobs", "clean", queue_name, "--state", "failed", "--grace", "0", *r)[
        "removed"] == 1
    counts = as_json("stats", queue_name, *r)[0]["counts"]
    assert (counts["completed"], counts["failed"]) == (0, 0)


def test_bulk_actions_show_a_progress_bar_on_a_terminal(redis_url: str, queue_name: str) -> None:
    async def add() -> None:
        async with Queue(queue_name, redis_url) as q:
            await q.add_bulk([{"name": "n", "data": {"n": n}} for n in range(2500)])

    asyncio.run(add())
    result = cli("jobs", "clean", queue_name, "--state", "waiting", "--redis", redis_url,
                 env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert result.exit_code == 0, result.output
    assert "removing waiting jobs" in result.stdout and "2500/2500" in result.stdout
    assert f"removed 2500 waiting jobs from '{queue_name}'" in result.stdout


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_pause_resume_promote_remove(redis_url: str, queue_name: str) -> None:
    r = ("--redis", redis_url)
    ok("enqueue", queue_name, "later", "--delay", "1h", "--job-id", "d", *r)
    ok("enqueue", queue_name, "now", "--job-id", "w", *r)
    assert ok("queue", "pause", queue_name, *r).strip() == f"queue '{queue_name}' is paused"
    assert as_json("stats", queue_name, *r)[0]["is_paused"] is True
    assert ok("queue", "resume", queue_name, *r).strip() == f"queue '{queue_name}' is running"
    assert as_json("stats", queue_name, *r)[0]["is_paused"] is False
    ok("jobs", "promote", queue_name, "d", *r)
    assert as_json("jobs", "show", queue_name, "d", *r)["state"] == "waiting"
    ok("jobs", "remove", queue_name, "w", *r)
    assert "not found" in one_line_error(cli("jobs", "show", queue_name, "w", *r))


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_queue_workers_and_schedulers(redis_url: str, queue_name: str) -> None:
    async def go() -> list[str]:
        async with Queue(queue_name, redis_url) as q:
            await q.upsert_job_scheduler("tick", every=60_000, job_name="tick")
            worker = Worker(queue_name, _process, connection=redis_url, handle_signals=False)
            async with running(worker):
                await wait_for(q.get_workers, message="the worker registered")
                # The command runs its own event loop: in a thread beside this one.
                return [
                    await asyncio.to_thread(ok, "queue", what, queue_name, "--redis", redis_url)
                    for what in ("workers", "schedulers")
                ]

    workers, schedulers = asyncio.run(go())
    assert str(os.getpid()) in workers and "0/1" in workers
    assert "tick" in schedulers and "every 1m" in schedulers


# -- user errors -----------------------------------------------------------------------


def _refused_url() -> str:
    return f"redis://127.0.0.1:{refused_port()}/0"


ERRORS: list[tuple[list[str], str]] = [
    (["stats", "nope"], "queue 'nope' not found"),
    (["jobs", "list", "nope"], "queue 'nope' not found"),
    (["jobs", "list", "Q", "--state", "sleeping"], "Invalid value for '--state'"),
    (["jobs", "list", "Q", "--page", "2", "--start", "3"], "give --page or --start, not both"),
    (["jobs", "list", "Q", "--count", "0"], "Invalid value for '--count'"),
    (["jobs", "show", "Q", "42"], "job '42' not found in queue 'Q'"),
    (["jobs", "show", "Q"], "Missing argument 'ID'"),
    (["jobs", "retry", "Q"], "give a job ID or --all"),
    (["jobs", "retry", "Q", "1", "--all"], "give a job ID or --all"),
    (["jobs", "retry", "Q", "1"], "only failed or completed jobs retry"),
    (["jobs", "clean", "Q", "--grace", "soon"], "'soon' is not a duration"),
    (["jobs", "clean", "Q", "--state", "gone"], "Invalid value for '--state'"),
    (["jobs", "promote", "Q", "1"], "delayed"),
    (["jobs", "retry", "Q", "--all", "--state", "waiting"], "Invalid value for '--state'"),
    (["jobs", "remove", "Q", "42"], "job '42' not found in queue 'Q'"),
    (["queue", "pause", "nope"], "queue 'nope' not found"),
    (["queue", "resume", "nope"], "queue 'nope' not found"),
    (["queue", "workers", "nope"], "queue 'nope' not found"),
    (["queue", "schedulers", "nope"], "queue 'nope' not found"),
    (["enqueue", "Q", "x", "--data", "{bad"], "--data is not valid JSON"),
    (["enqueue", "Q", "x", "--data", "@/no/such/file"], "cannot read '/no/such/file'"),
    (["enqueue", "Q", "x", "--options", '{"colour": 1}'], "options.colour: unknown job option"),
    (["enqueue", "Q", "x", "--options", "[1]"], "--options must be a JSON object"),
    (["enqueue", "a:b", "x"], "may not contain"),
    (["enqueue", "Q", "x", "--delay", "-5"], "is not a duration"),
    (["stats", "--watch", "--json"], "--watch and --json do not go together"),
    (["stats", "--bogus"], "No such option '--bogus'. (see 'conveyor stats --help')"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["dashboard", "--host", "0.0.0.0"], "refusing to listen on '0.0.0.0' without a token"),
    (["dashboard", "--queue", "a:b"], "may not contain"),
    (["demo", "--host", "0.0.0.0"], "use a loopback host"),
    (["bench", "--checkout", "/"], "no benchmarks/ found from /"),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_user_errors_are_one_line(
    redis_url: str, argv: list[str], message: str
) -> None:
    ok("enqueue", "Q", "x", "--redis", redis_url)  # job 1 of queue Q, waiting
    takes_redis = argv[0] not in ("demo", "bench") and argv != ["frobnicate"]
    line = one_line_error(cli(*argv, *(["--redis", redis_url] if takes_redis else [])))
    assert message in line


@pytest.mark.parametrize("argv", [["stats"], ["jobs", "list", "Q"], ["enqueue", "Q", "x"],
                                  ["queue", "pause", "Q"], ["dashboard"]])
def test_unreachable_redis_is_one_line_naming_the_url(argv: list[str]) -> None:
    url = _refused_url()
    line = one_line_error(cli(*argv, "--redis", url))
    assert line == f"Error: cannot connect to Redis at {url}: connection refused"


def test_bad_redis_url_and_password_kept_out_of_messages() -> None:
    assert "is not a Redis URL" in one_line_error(cli("stats", "--redis", "http://x"))
    assert "Port could not be cast" in one_line_error(cli("stats", "--redis", "redis://h:x/0"))
    url = f"redis://:hunter2@127.0.0.1:{refused_port()}/0"
    line = one_line_error(cli("stats", "--redis", url))
    assert "hunter2" not in line and ":***@127.0.0.1" in line


# -- long-running commands ---------------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_dashboard_serves_the_api_and_stops_on_ctrl_c(redis_url: str, queue_name: str) -> None:
    ok("enqueue", queue_name, "hello", "--redis", redis_url)
    argv = [str(CONVEYOR), "dashboard", "--port", "0", "--redis", redis_url]
    with process_lines(argv) as (proc, lines):
        url = url_line(lines, "conveyor dashboard on")
        metrics = httpx.get(url + "api/v1/queue/metrics", timeout=10).json()
        assert metrics["success"] is True
        assert any(q["queueName"] == queue_name and q["waiting"] == 1
                   for q in metrics["data"]["queues"])
        assert httpx.get(url, timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_dashboard_with_a_token_needs_it(redis_url: str) -> None:
    token = "s3cret-of-16-chs"  # beyond loopback: 16 characters or more
    argv = [str(CONVEYOR), "dashboard", "--host", "0.0.0.0", "--port", "0", "--token", token,
            "--redis", redis_url]
    with process_lines(argv) as (proc, lines):
        url = url_line(lines, "conveyor dashboard on")
        assert httpx.get(url + "api/v1/health", timeout=10).status_code == 401
        authorized = httpx.get(url + "api/v1/health", timeout=10,
                               headers={"Authorization": f"Bearer {token}"})
        assert authorized.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_dashboard_port_in_use_is_one_line(redis_url: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(cli("dashboard", "--port", str(port), "--redis", redis_url))
    assert line.startswith(f"Error: cannot listen on 127.0.0.1:{port}")


def test_bench_runs_the_checkout_benchmark() -> None:
    proc = subprocess.run([str(CONVEYOR), "bench", "--", "--help"], capture_output=True,
                          text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "--peers" in proc.stdout and "--rounds" in proc.stdout
    in_checkout = subprocess.run([str(CONVEYOR), "bench", "--checkout", str(ROOT / "src"),
                                  "--", "--help"], capture_output=True, text=True, timeout=120)
    assert in_checkout.returncode == 0, in_checkout.stderr


def test_prefix_selects_the_queues(redis_url: str, queue_name: str) -> None:
    ok("enqueue", queue_name, "x", "--prefix", "other", "--redis", redis_url)
    assert as_json("stats", "--redis", redis_url) == []
    [summary] = as_json("stats", "--prefix", "other", "--redis", redis_url)
    assert (summary["name"], summary["counts"]["waiting"]) == (queue_name, 1)


def test_demo_without_a_redis_server_binary_is_one_line() -> None:
    result = cli("demo", "--seconds", "1",
                 env={"CONVEYOR_REDIS_SERVER": "/nonexistent/redis-server"})
    line = one_line_error(result)
    assert line == ("Error: cannot start redis-server: No such file or directory: "
                    "/nonexistent/redis-server")
