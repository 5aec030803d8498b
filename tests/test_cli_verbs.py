"""``conveyor jobs cancel``, ``queue drain``, ``queue obliterate``, ``schedulers``
and ``events``, each run as a real process against the suite's redis-server."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import time

import orjson
import pytest
import redis.asyncio as aioredis

from cli_process import NOWHERE, Done, command, conveyor, environment
from conveyor import Job, Queue
from helpers import StartWorker, wait_for

HOUR = 3_600_000


# -- jobs cancel ------------------------------------------------------------------


async def test_cancel_removes_a_waiting_job(redis_url: str, queue: Queue) -> None:
    job = await queue.add("send", {"to": "a"})
    done = await conveyor("jobs", "cancel", queue.name, job.id, "--redis", redis_url)
    assert (done.code, done.err) == (0, "")
    assert done.out == f"cancelled job {job.id} of {queue.name!r}: it was waiting, it is removed\n"
    assert await queue.get_job(job.id) is None


async def test_cancel_stops_a_running_job_which_fails_with_the_reason(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    start_worker(slow)
    job = await queue.add("slow")
    await asyncio.wait_for(started.wait(), 10)
    done = await conveyor("jobs", "cancel", queue.name, job.id, "--reason", "operator said so",
                          "--json", "--redis", redis_url)
    assert done.code == 0, done.err
    assert done.json() == {"queue": queue.name, "job_id": job.id, "cancelled": True,
                           "was": "active"}

    async def failed() -> bool:
        return await queue.get_job_state(job.id) == "failed"

    await wait_for(failed, message="the cancelled job failed")
    found = await queue.get_job(job.id)
    assert found is not None and found.failed_reason == "cancelled: operator said so"


async def test_cancel_of_a_finished_job_exits_1(redis_url: str, queue: Queue,
                                                start_worker: StartWorker) -> None:
    start_worker(lambda job: "done")
    job = await queue.add("quick")

    async def completed() -> bool:
        return await queue.get_job_state(job.id) == "completed"

    await wait_for(completed)
    done = await conveyor("jobs", "cancel", queue.name, job.id, "--redis", redis_url)
    assert done.code == 1
    assert done.one_error_line() == (
        f"Error: job {job.id} of {queue.name!r} has already finished (completed); "
        "nothing to cancel")


@pytest.mark.parametrize(("args", "says"), [
    (["jobs", "cancel", "no-such-queue", "1"], "Error: queue 'no-such-queue' not found"),
    (["jobs", "cancel", "{q}", "nope"], "Error: job 'nope' not found in queue '{q}'"),
    (["jobs", "cancel", "{q}", "a:b"], "Error: job_id: "),
    (["queue", "drain", "no-such-queue"], "Error: queue 'no-such-queue' not found"),
    (["schedulers", "run-now", "{q}", "nope"], "Error: no job scheduler 'nope' in '{q}'"),
    (["schedulers", "remove", "{q}", "nope"], "Error: no job scheduler 'nope' in '{q}'"),
    (["events", "no-such-queue"], "Error: queue 'no-such-queue' not found"),
])
async def test_mistakes_are_one_line(redis_url: str, queue: Queue, args: list[str],
                                     says: str) -> None:
    await queue.add("x")
    done = await conveyor(*[a.format(q=queue.name) for a in args], "--redis", redis_url)
    assert done.code == 1
    assert done.one_error_line().startswith(says.format(q=queue.name))


@pytest.mark.parametrize("args", [
    ["jobs", "cancel", "q"],
    ["queue", "drain", "q", "--delayed=maybe"],
    ["events", "q", "--since", "yesterday"],
    ["events", "q", "--event", "exploded"],
    ["schedulers", "run-now", "q"],
    ["queue", "obliterate", "q"],  # stdin is not a terminal and no --yes
])
async def test_bad_usage_is_one_line_and_exit_2(args: list[str]) -> None:
    done = await conveyor(*args, "--redis", NOWHERE)
    assert done.code == 2
    done.one_error_line()


# -- queue drain and obliterate -----------------------------------------------------------


@pytest.mark.cluster
async def test_drain_removes_waiting_jobs_and_with_delayed_the_delayed(
    redis_url: str, queue: Queue
) -> None:
    await queue.add_bulk([{"name": "now", "data": {"n": n}} for n in range(3)])
    await queue.add("urgent", priority=1)
    await queue.add("later", delay=HOUR)
    done = await conveyor("queue", "drain", queue.name, "--redis", redis_url)
    assert (done.code, done.out) == (0, f"removed 4 waiting jobs from {queue.name!r}\n")
    assert await queue.get_job_counts("waiting", "prioritized", "delayed") == {
        "waiting": 0, "prioritized": 0, "delayed": 1}
    done = await conveyor("queue", "drain", queue.name, "--delayed", "--json",
                          "--redis", redis_url)
    assert done.json() == {"queue": queue.name, "removed": 1}
    assert await queue.get_job_counts("delayed") == {"delayed": 0}


async def test_obliterate_with_yes_deletes_every_key(
    redis_url: str, queue: Queue, redis: aioredis.Redis
) -> None:
    await queue.add_bulk([{"name": "a"}, {"name": "b"}])
    await queue.upsert_job_scheduler("tick", every=HOUR)
    done = await conveyor("queue", "obliterate", queue.name, "--yes", "--redis", redis_url)
    assert (done.code, done.out) == (0, f"obliterated queue {queue.name!r} (3 jobs)\n")
    assert await redis.keys(f"{queue.keys.base}*") == []
    # Gone from the registry of queues too: nothing lists it any more.
    gone = await conveyor("health", queue.name, "--redis", redis_url)
    assert gone.one_error_line() == f"Error: queue {queue.name!r} not found"


async def test_obliterate_asks_on_a_terminal_and_no_keeps_the_queue(
    redis_url: str, queue: Queue
) -> None:
    await queue.add("a")
    answer_no = await _on_a_terminal(["queue", "obliterate", queue.name, "--redis", redis_url],
                                     "n\n")
    assert answer_no.code == 1
    assert f"Delete queue {queue.name!r} for good: 1 job" in answer_no.out
    assert f"queue {queue.name!r} kept" in answer_no.out
    assert await queue.get_job_counts("waiting") == {"waiting": 1}
    answer_yes = await _on_a_terminal(["queue", "obliterate", queue.name, "--redis", redis_url],
                                      "y\n")
    assert answer_yes.code == 0
    assert f"obliterated queue {queue.name!r} (1 job)" in answer_yes.out
    assert await queue.get_job_counts("waiting") == {"waiting": 0}


async def _on_a_terminal(args: list[str], typed: str) -> Done:
    return await asyncio.to_thread(_run_on_a_terminal, args, typed)


def _run_on_a_terminal(args: list[str], typed: str) -> Done:
    """Run ``conveyor ARGS`` on a pseudo-terminal (stdin, stdout and stderr: what
    ``Done.out`` holds), typing ``typed`` once it asks; no read waits past a deadline."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command(*args), stdin=follower, stdout=follower,
                            stderr=follower, env=environment())
    os.close(follower)
    deadline = time.monotonic() + 60
    seen, answered = b"", False
    try:
        while time.monotonic() < deadline:
            if not answered and b"[y/N]" in seen:
                os.write(leader, typed.encode())
                answered = True
            ready, _, _ = select.select([leader], [], [], 0.1)
            if not ready:
                if proc.poll() is not None and answered:
                    break
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end closed: all read
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Done(proc.returncode, seen.decode().replace("\r\n", "\n"), "")


async def test_obliterate_refuses_while_a_job_runs_unless_forced(
    redis_url: str, queue: Queue, start_worker: StartWorker
) -> None:
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    start_worker(slow)
    await queue.add("slow")
    await asyncio.wait_for(started.wait(), 10)
    refused = await conveyor("queue", "obliterate", queue.name, "--yes", "--redis", redis_url)
    assert refused.code == 1
    assert refused.one_error_line() == (
        f"Error: queue {queue.name!r} has 1 running job; --force deletes them too "
        "(their workers record nothing)")
    assert await queue.get_job_counts("active") == {"active": 1}
    forced = await conveyor("queue", "obliterate", queue.name, "--yes", "--force",
                            "--redis", redis_url)
    assert forced.code == 0, forced.err
    assert await queue.get_job_counts("active") == {"active": 0}


# -- schedulers ------------------------------------------------------------------------


@pytest.mark.cluster
async def test_schedulers_list_run_now_and_remove(redis_url: str, queue: Queue) -> None:
    await queue.upsert_job_scheduler("report", every=HOUR, job_name="build", data={"k": 1})
    listed = await conveyor("schedulers", "list", queue.name, "--json", "--redis", redis_url)
    assert [s["id"] for s in listed.json()] == ["report"]
    alias = await conveyor("queue", "schedulers", queue.name, "--json", "--redis", redis_url)
    assert alias.json() == listed.json()

    ran = await conveyor("schedulers", "run-now", queue.name, "report", "--redis", redis_url)
    assert ran.code == 0, ran.err
    job_id = ran.out.split()[2]
    assert ran.out == (f"added job {job_id} of scheduler 'report' to {queue.name!r}; "
                       "it runs now\n")
    job = await queue.get_job(job_id)
    assert job is not None and (job.name, job.data) == ("build", {"k": 1})
    assert await queue.get_job_state(job_id) == "waiting"

    removed = await conveyor("schedulers", "remove", queue.name, "report", "--json",
                             "--redis", redis_url)
    assert removed.json() == {"queue": queue.name, "scheduler_id": "report", "removed": True}
    assert await queue.get_job_schedulers() == []


# -- events ----------------------------------------------------------------------------


async def _xread_clients(redis: aioredis.Redis) -> int:
    clients = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xread")


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
async def test_events_follow_live_and_ctrl_c_exits_0(
    redis_url: str, queue: Queue, redis: aioredis.Redis, start_worker: StartWorker,
    as_json: bool,
) -> None:
    before = await queue.add("before")  # from now on: its added event is not shown
    proc = await asyncio.create_subprocess_exec(
        *command("events", queue.name, "--redis", redis_url, *(["--json"] if as_json else [])),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment())
    await wait_for(lambda: _xread_clients(redis), timeout=30, message="events is reading")
    start_worker(lambda job: {"sent": job.data["to"]})
    job = await queue.add("send", {"to": "ann"})
    assert proc.stdout is not None
    lines: list[str] = []
    seen: list[tuple[str, str]] = []  # (event, job id) of each line
    while ("completed", job.id) not in seen:
        lines.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
        if as_json:
            event = orjson.loads(lines[-1])
            seen.append((event["event"], event["job_id"]))
        else:
            seen.append((lines[-1].split()[2], lines[-1].split()[3]))
    # The worker runs `before` too: its active and completed events come and go,
    # but it was added before `events` started.
    assert ("added", before.id) not in seen
    lines = [line for line, (_, job_id) in zip(lines, seen, strict=True) if job_id == job.id]
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, err) == (0, b"")
    if as_json:
        events = [orjson.loads(line) for line in lines]
        assert [(e["event"], e["job_id"]) for e in events] == [
            ("added", job.id), ("waiting", job.id), ("active", job.id), ("completed", job.id)]
        assert events[-1]["return_value"] == {"sent": "ann"}
    else:
        assert [line.split()[2:4] for line in lines] == [
            ["added", job.id], ["waiting", job.id], ["active", job.id],
            ["completed", job.id]]
        assert 'return_value={"sent":"ann"}' in lines[-1]


@pytest.mark.parametrize(("since", "first_shown"), [("start", "ancient"), ("1h", "b")])
async def test_events_since_replays_and_filters(
    redis_url: str, queue: Queue, redis: aioredis.Redis, since: str, first_shown: str
) -> None:
    # An event of 1970 (its entry id says when): older than an hour, but in the stream.
    await redis.xadd(queue.keys.events, {"event": "delayed", "job_id": "ancient", "delay": "0"},
                     id="1000-0")
    first = await queue.add("a")
    second = await queue.add("b", delay=HOUR)
    proc = await asyncio.create_subprocess_exec(
        *command("events", queue.name, "--since", since, "--event", "delayed", "--json",
                 "--redis", redis_url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment())
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    proc.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    event = orjson.loads(line)
    shown = {"ancient": "ancient", "b": second.id}[first_shown]
    assert (event["event"], event["job_id"]) == ("delayed", shown)
    assert rest.count(b"\n") == (1 if first_shown == "ancient" else 0)
    assert proc.returncode == 0
    assert first.id != second.id


async def test_help_lists_the_new_commands() -> None:
    done = await conveyor("--help")
    assert done.code == 0
    for name in ("schedulers", "events", "health"):
        assert f"\n  {name} " in done.out, done.out
    for group, verbs in (("jobs", ("cancel",)), ("queue", ("drain", "obliterate")),
                         ("schedulers", ("list", "run-now", "remove"))):
        helped = await conveyor(group, "--help")
        for verb in verbs:
            assert f"\n  {verb} " in helped.out, helped.out
