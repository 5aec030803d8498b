"""Processors for tests/test_sandbox.py: module-level, so a sandboxed child can import them."""

from __future__ import annotations

import ctypes
import os
import pathlib
import signal
import time
from typing import Any

from conveyor import Conveyor, RateLimitError, UnrecoverableError
from conveyor.app import current_job, current_sync_job
from conveyor.sandbox import AsyncSandboxedJob, SandboxedJob

app = Conveyor()


def by_name(job: SandboxedJob) -> Any:
    """Does what the job's name says: each test names its job's behaviour."""
    data = job.data or {}
    if job.name == "pid":
        return os.getpid()
    if job.name == "sleep-then-write":
        pathlib.Path(data["pid_file"]).write_text(str(os.getpid()))
        time.sleep(data["seconds"])
        pathlib.Path(data["done_file"]).write_text("the attempt ran to its end")
        return "done"
    if job.name == "exit":
        os._exit(3)
    if job.name == "segfault":
        ctypes.string_at(0)
    if job.name == "sigkill":  # what the kernel's OOM killer sends
        os.kill(os.getpid(), signal.SIGKILL)
    if job.name == "allocate":
        hog = b"x" * (data["mib"] * 1024 * 1024)
        assert len(hog)
        return os.getpid()
    if job.name == "report":
        job.log(f"child {os.getpid()} at work")
        job.update_progress({"done": 50})
        job.log("half way")
        return {"answer": 42, "pid": os.getpid()}
    if job.name == "rate-limited-once":
        flag = pathlib.Path(data["flag"])
        if not flag.exists():
            flag.write_text("limited")
            raise RateLimitError(50)
        return "ran after the limit"
    if job.name == "unpicklable":
        return lambda: None
    if job.name == "unrecoverable":
        raise UnrecoverableError("the input can never work")
    raise ValueError(f"unknown job name {job.name!r}")


async def async_report(job: AsyncSandboxedJob) -> dict[str, Any]:
    await job.log("from an async def")
    await job.update_progress(75)
    return {"pid": os.getpid()}


@app.task(queue="sandboxed-tasks", sandbox=True)
def pid_of_def_task(tag: str) -> dict[str, Any]:
    current_sync_job().log(f"def task {tag}")
    return {"pid": os.getpid(), "tag": tag}


@app.task(queue="sandboxed-tasks", sandbox=True)
async def pid_of_async_task(tag: str) -> dict[str, Any]:
    await current_job().log(f"async task {tag}")
    return {"pid": os.getpid(), "tag": tag}


@app.task(queue="sandboxed-tasks")
def pid_of_thread_task() -> int:
    return os.getpid()
