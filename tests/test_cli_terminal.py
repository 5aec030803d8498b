"""The CLI never sends a terminal the control characters a job carries.

Hostile values go into Redis through the public API where it takes them (job
names and ids, data, failure reasons, stack traces, log lines, progress, worker
and scheduler names) and with redis-py where it does not (a queue name in the
registry); every command that shows them must print escapes (``\\x1b``,
``\\u202e``) instead, read no rich markup or emoji codes from them, and keep
``--json`` output JSON with the same values."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_sync
from click.testing import CliRunner, Result

from conveyor import Job, Queue, Worker
from conveyor.cli import main
from conveyor.keys import registry_key
from helpers import queue_state_is, running, wait_for, worker_process

#: Every kind of character a terminal must not receive raw: C0 controls (ESC
#: sequences for colour, OSC 8 links and window titles, CR, backspace, BEL),
#: DEL, the C1 CSI, bidi overrides and isolates, zero-width characters, BOM, a
#: line separator, a tag character; then rich markup and an emoji code.
HOSTILE = ("x\x1b[31mred\x1b]8;;https://evil.example\x07link\x1b]8;;\x07\x1b]0;title\x07"
           "\r\b\x7f\x9b2J\u202eevil\u2066\u200b\ufeff\u2028\U000e0041\x00"
           "[bold]b[/bold][link=https://evil.example]l[/link]:warning:")
#: For job ids, which may not contain ':' (nor '/').
HOSTILE_ID = HOSTILE.replace(":", "").replace("/", "")
#: What may not reach stdout or stderr (tab and newline may).
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
    "\u2028\u2029\U000e0000-\U000e007f]"
)
#: What the terminal shows instead of the markup and emoji code: themselves.
LITERAL = ("[bold]b[/bold]", "[link=https://evil.example]l[/link]", ":warning:")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_clean(result: Result, *, literal: bool = False) -> str:
    for stream in (result.stdout, result.stderr):
        found = FORBIDDEN.search(stream)
        assert found is None, f"{found[0]!r} reached the terminal in:\n{stream}"
    assert "Traceback" not in result.stderr
    if literal:  # whole, though a table may have folded it over lines
        for text in LITERAL:
            assert text in "".join(result.output.split()), result.output
    return result.stdout


def shows(*args: str, literal: bool = False) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return assert_clean(result, literal=literal)


async def _fail(job: Job) -> None:
    await job.log(f"log {HOSTILE}\nforged line")
    await job.update_progress({"step": HOSTILE})
    raise RuntimeError(f"reason {HOSTILE}")


async def _succeed(job: Job) -> dict[str, str]:
    await job.log(HOSTILE)
    return {"result": HOSTILE}


@pytest.fixture
def hostile_queue(
    redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A queue with a failed, a completed, a waiting and a delayed job, a
    scheduler and a live worker, all carrying HOSTILE; their ids by state."""
    monkeypatch.setattr(socket, "gethostname", lambda: f"host{HOSTILE}")

    async def go() -> dict[str, str]:
        async with Queue(queue_name, redis_url) as q:
            failed = await q.add(f"fail{HOSTILE}", {"k": HOSTILE}, job_id=f"id{HOSTILE_ID}")
            worker = Worker(queue_name, _fail, connection=redis_url, handle_signals=False)
            async with running(worker):
                await wait_for(lambda: queue_state_is(q, failed.id, "failed"))
            done = await q.add("ok", {"k": HOSTILE})
            worker = Worker(queue_name, _succeed, connection=redis_url, handle_signals=False)
            async with running(worker):
                await wait_for(lambda: queue_state_is(q, done.id, "completed"))
            waiting = await q.add(f"wait{HOSTILE}", {HOSTILE: 1})
            delayed = await q.add(f"later{HOSTILE}", delay=3_600_000)
            await q.upsert_job_scheduler(f"sched{HOSTILE_ID}", every=60_000,
                                         job_name=f"tick{HOSTILE}")
            return {"failed": failed.id, "completed": done.id, "waiting": waiting.id,
                    "delayed": delayed.id}

    return asyncio.run(go())


def test_job_lists_escape_what_jobs_carry(
    redis_url: str, queue_name: str, hostile_queue: dict[str, str]
) -> None:
    for state in ("failed", "waiting", "delayed"):
        out = shows("jobs", "list", queue_name, "--state", state, "--redis", redis_url,
                    literal=state != "failed")  # failed: the id is HOSTILE_ID
        assert "\\x1b[31mred" in out  # the escape is visible, as text
    shows("jobs", "list", queue_name, "--state", "completed", "--redis", redis_url)


def test_job_details_escape_reason_stacktrace_logs_data_and_result(
    redis_url: str, queue_name: str, hostile_queue: dict[str, str]
) -> None:
    for state, job_id in hostile_queue.items():
        out = shows("jobs", "show", queue_name, job_id, "--redis", redis_url,
                    literal=state != "completed")
        assert "\\u202eevil" in out, state
    failed = shows("jobs", "show", queue_name, hostile_queue["failed"], "--redis", redis_url)
    words = "".join(failed.split())  # as if no line had wrapped
    assert "RuntimeError:reasonx\\x1b[31mred" in words
    # A log line is one line: its newline is shown as \n, not sent.
    assert ":warning:\\nforgedline" in words
    # The stack trace keeps its lines.
    assert "\nTraceback (most recent call last):\n  File " in failed


def test_json_output_is_the_same_json_with_no_raw_controls(
    redis_url: str, queue_name: str, hostile_queue: dict[str, str]
) -> None:
    def as_json(*args: str) -> Any:
        result = cli(*args, "--redis", redis_url, "--json")
        assert result.exit_code == 0, result.output
        return orjson.loads(assert_clean(result, literal=False))

    detail = as_json("jobs", "show", queue_name, hostile_queue["failed"])
    assert detail["id"] == f"id{HOSTILE_ID}" and detail["data"] == {"k": HOSTILE}
    listed = as_json("jobs", "list", queue_name, "--state", "waiting")
    assert listed["jobs"][0]["name"] == f"wait{HOSTILE}"
    assert as_json("queue", "workers", queue_name) == []
    assert as_json("queue", "schedulers", queue_name)[0]["id"] == f"sched{HOSTILE_ID}"
    assert as_json("stats", queue_name)[0]["name"] == queue_name


def test_workers_and_schedulers_escape_their_names(
    redis_url: str, queue_name: str, hostile_queue: dict[str, str]
) -> None:
    assert "\\x1b[31mred" in shows("queue", "schedulers", queue_name, "--redis", redis_url)

    async def live_worker() -> str:
        worker = Worker(queue_name, _succeed, connection=redis_url, handle_signals=False)
        async with Queue(queue_name, redis_url) as q, running(worker):
            await wait_for(q.get_workers)
            return await asyncio.to_thread(
                shows, "queue", "workers", queue_name, "--redis", redis_url)

    assert "hostx\\x1b[31mred" in asyncio.run(live_worker())


def test_messages_naming_jobs_escape_them(
    redis_url: str, queue_name: str, hostile_queue: dict[str, str]
) -> None:
    out = shows("enqueue", queue_name, f"new{HOSTILE}", "--job-id", f"new{HOSTILE_ID}",
                "--redis", redis_url)
    assert out.startswith("added job new")
    again = shows("enqueue", queue_name, f"new{HOSTILE}", "--job-id", f"new{HOSTILE_ID}",
                  "--redis", redis_url)
    assert "already exists" in again
    shows("jobs", "retry", queue_name, hostile_queue["failed"], "--redis", redis_url)
    shows("jobs", "promote", queue_name, hostile_queue["delayed"], "--redis", redis_url)
    shows("jobs", "remove", queue_name, hostile_queue["completed"], "--redis", redis_url)
    # Errors too: a job that is not there, named by its hostile id.
    for argv in (["jobs", "show", queue_name, f"no{HOSTILE_ID}"],
                 ["jobs", "remove", queue_name, f"no{HOSTILE_ID}"],
                 ["stats", f"q{HOSTILE}"]):
        result = cli(*argv, "--redis", redis_url)
        assert result.exit_code == 1
        assert_clean(result, literal=False)
        assert len(result.stderr.splitlines()) == 1


def test_a_hostile_queue_name_in_the_registry_is_escaped(redis_url: str, queue_name: str) -> None:
    """Written by something that is not conveyor: the CLI shows it, escaped,
    or refuses it in one clean line, but sends none of it raw."""
    with redis_sync.Redis.from_url(redis_url) as client:
        client.sadd(registry_key("conveyor"), f"q{HOSTILE}", queue_name)
    for argv in (["stats"], ["stats", "--json"]):
        result = cli(*argv, "--redis", redis_url)
        assert_clean(result, literal=False)
        assert queue_name in result.output


def test_the_worker_log_escapes_job_ids_and_cancel_reasons(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    """``conveyor worker`` logs a cancelled job's id and the reason given."""
    (tmp_path / "hostile.py").write_text(f"""
import asyncio

from conveyor.app import Conveyor

app = Conveyor()


@app.task(queue={queue_name!r})
async def forever() -> None:
    await asyncio.sleep(3600)
""")

    async def go() -> bytes:
        proc = await worker_process("hostile:app", redis_url, tmp_path)
        try:
            async with Queue(queue_name, redis_url) as q:
                job = await q.add("forever", {}, job_id=f"id{HOSTILE_ID}")
                await wait_for(lambda: queue_state_is(q, job.id, "active"), timeout=30)
                await q.cancel(job.id, reason=f"reason{HOSTILE}\nforged log line")
                await wait_for(lambda: queue_state_is(q, job.id, "failed"))
        finally:
            proc.terminate()
            _, err = await proc.communicate()
        assert proc.returncode == 0, err
        return err

    text = asyncio.run(go()).decode()
    assert FORBIDDEN.search(text) is None, text
    assert "job idx\\x1b[31mred" in text and "cancelled: reasonx\\x1b[31mred" in text
    assert ":warning:\\nforged log line" in text
    assert not any(line.startswith("forged") for line in text.splitlines())
