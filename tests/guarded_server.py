"""``conveyor dashboard`` as a real process, for the guard's and the list reads' tests
(its memory is measured from outside), and a queue with failed jobs that a forged request must
not be able to clean."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conveyor import Job, Queue, Worker
from helpers import running, wait_for


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT/
    port: int

    def rss_bytes(self) -> int:
        """The server's resident memory, from /proc/PID/status."""
        return self._status_bytes("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The most memory the server has held at once (its RSS high-water mark)."""
        return self._status_bytes("VmHWM")

    def _status_bytes(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} line")


@contextlib.contextmanager
def dashboard_process(redis_url: str, *args: str, timeout: float = 60) -> Iterator[Served]:
    """``conveyor dashboard --port 0 ARGS`` until the block ends (then Ctrl-C)."""
    argv = [sys.executable, "-m", "conveyor", "dashboard", "--port", "0",
            "--redis", redis_url, *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                assert proc.stderr is not None
                raise AssertionError(f"dashboard exited: {proc.stderr.read()}")
            found = re.search(r"conveyor dashboard on (http://\S+/)", line)
            url = found[1] if found else None
        assert url is not None, "the dashboard printed no URL"
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        yield Served(proc, url, port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def _fail(job: Job) -> Any:
    raise RuntimeError(f"boom {job.id}")


def add_failed_jobs(redis_url: str, queue_name: str, count: int) -> None:
    """``count`` jobs of ``queue_name`` that failed for good."""

    async def go() -> None:
        async with Queue(queue_name, redis_url) as queue:
            await queue.add_bulk([{"name": "doomed", "data": {"n": n}} for n in range(count)])
            worker = Worker(queue_name, _fail, connection=redis_url, handle_signals=False)
            async with running(worker):
                async def all_failed() -> bool:
                    return (await queue.get_job_counts("failed"))["failed"] == count

                await wait_for(all_failed, timeout=30)

    asyncio.run(go())


def queue_state(redis_url: str, queue_name: str) -> tuple[int, bool]:
    """(failed jobs, paused) of the queue, as Redis has them."""

    async def go() -> tuple[int, bool]:
        async with Queue(queue_name, redis_url) as queue:
            failed = (await queue.get_job_counts("failed"))["failed"]
            return failed, await queue.is_paused()

    return asyncio.run(go())
