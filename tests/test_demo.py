"""``conveyor demo``, the README's first command: a private Redis, jobs flowing,
the dashboard serving them, and Ctrl-C stopping everything cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

CONVEYOR = Path(sys.executable).with_name("conveyor")


def lines_of(proc: subprocess.Popen[str], timeout: float) -> Iterator[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return
        yield line


def totals(url: str) -> dict[str, int]:
    answer = httpx.get(url + "api/v1/queue/metrics", timeout=10).json()
    assert answer["success"] is True
    return dict(answer["data"]["totals"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_runs_jobs_serves_the_dashboard_and_stops_on_ctrl_c() -> None:
    # A session of its own, so the test can signal the whole group as a terminal does.
    proc = subprocess.Popen(
        [str(CONVEYOR), "demo", "--seconds", "120"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        redis_pid = url = None
        for line in lines_of(proc, 60):
            if found := re.match(r"private redis-server on \S+ \(pid (\d+)\)", line):
                redis_pid = int(found[1])
            if found := re.match(r"dashboard: (http://\S+/)$", line):
                url = found[1]
                break
        assert redis_pid is not None and url is not None, "the demo printed its URL"
        assert alive(redis_pid)

        first = totals(url)
        deadline = time.monotonic() + 60
        while True:  # jobs complete and fail (a failed one is final: no retry left)
            now = totals(url)
            if now["completed"] > first["completed"] and now["failed"] > first["failed"]:
                break
            assert time.monotonic() < deadline, f"counts did not grow: {first} -> {now}"
            time.sleep(0.5)
        assert httpx.get(url, timeout=10).status_code == 200  # the dashboard's page

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the group
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped cleanly" in out
        assert "Traceback" not in err and "ERROR" not in err, err
        assert not alive(redis_pid), "the private redis-server is gone"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_demo_stops_by_itself_after_seconds() -> None:
    proc = subprocess.run([str(CONVEYOR), "demo", "--seconds", "3"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", proc.stdout, re.M)
    assert "stopped cleanly" in proc.stdout
    assert "Traceback" not in proc.stderr
