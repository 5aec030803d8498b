"""``conveyor worker`` against a Redis it cannot reach: SIGTERM and SIGINT still
stop it, in a few seconds, with exit code 0 and log lines, not a traceback.

Two ways to be unreachable: a port nobody listens on (each connect is refused,
the worker retries with backoff) and a server that accepts connections and never
answers (the worker's first call hangs in the handshake)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Job, Queue, Worker
from helpers import importable_env, refused_port, wait_for
from redis_server import RedisServer

APP = '''
from conveyor.app import Conveyor

app = Conveyor()


@app.task(queue="email")
async def send(to: str) -> None:
    return None
'''
#: Seconds from the signal to the exit that count as "a few".
PROMPT = 8.0


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A redis:// URL whose server accepts connections and never answers; the
    accepted connections, to see that a client got that far."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener closed at the end
            while True:
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0", accepted
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def start_worker(tmp_path: Path, url: str) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp_path / "tasks.py").write_text(APP)
    log = tmp_path / "stderr.txt"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "tasks:app", "--redis", url],
            cwd=tmp_path, env=importable_env(tmp_path), stdout=subprocess.DEVNULL, stderr=stderr,
        )
    return proc, log


def stop_and_time(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, float]:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, time.monotonic() - sent


def check_quiet_exit(code: int, took: float, log: Path) -> None:
    text = log.read_text()
    assert code == 0, text
    assert took < PROMPT, f"took {took:.1f}s to stop:\n{text}"
    assert "Traceback" not in text
    assert text.rstrip().endswith("worker stopped"), text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_worker_retrying_a_refused_connection_stops_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    proc, log = start_worker(tmp_path, f"redis://127.0.0.1:{refused_port()}/0")
    await wait_for(lambda: "lost connection to Redis" in log.read_text(), timeout=30)
    code, took = stop_and_time(proc, sig)
    check_quiet_exit(code, took, log)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_worker_waiting_on_a_server_that_never_answers_stops_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with silent_server() as (url, accepted):
        proc, log = start_worker(tmp_path, url)
        await wait_for(lambda: "started on queue" in log.read_text() and accepted, timeout=30)
        code, took = stop_and_time(proc, sig)
    check_quiet_exit(code, took, log)


async def test_a_stopping_worker_still_reports_results_redis_was_away_for(
    redis_server: RedisServer, redis_url: str, queue_name: str
) -> None:
    """Giving up applies to fetches only: a result held while Redis is away is
    reported once it is back, as docs/guides/job-life.md promises."""
    release = asyncio.Event()

    async def held(job: Job) -> str:
        await release.wait()
        return "done"

    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("held")
        worker = Worker(queue_name, held, connection=redis_url, handle_signals=False)
        task = asyncio.create_task(worker.run())
        try:
            await wait_for(lambda: _is(queue, job.id, "active"))
            await asyncio.to_thread(redis_server.kill)
            closing = asyncio.create_task(worker.close())
            release.set()  # the job finishes while Redis is away
            # Longer than the patience for fetches: the worker still holds the result.
            done, _ = await asyncio.wait({closing}, timeout=5)
            assert not done
            await asyncio.to_thread(redis_server.start)
            await asyncio.wait_for(closing, 30)
        finally:
            await worker.close()
            await task
        assert await queue.get_job_state(job.id) == "completed"


async def _is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_job_state(job_id) == state
