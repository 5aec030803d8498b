"""Checked by mypy --strict in tests/test_app.py: lines marked ``# error`` must be refused."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from conveyor import Job, SyncJob
from conveyor.app import Conveyor, Task

app = Conveyor("redis://localhost:6379/0")


@app.task(queue="email", attempts=3, backoff={"type": "exponential", "delay": 2000})
async def send_email(to: str, subject: str, urgent: bool = False) -> dict[str, bool]:
    return {"sent": True}


@app.task
def resize(path: str, width: int) -> str:
    return path


@app.cron("0 9 * * *", tz="Europe/Berlin")
@app.task(queue="reports")
async def daily_report() -> None:
    return None


async def producer() -> None:
    job: Job = await send_email.enqueue(to="ada@example.com", subject="Hi")
    job = await send_email.enqueue("ada@example.com", "Hi", urgent=True)
    job = await send_email.with_options(delay=60_000, job_id="x").enqueue("a", subject="b")
    sync_job: SyncJob = resize.enqueue_sync("a.png", width=100)
    result: dict[str, bool] = await send_email("ada@example.com", "Hi")
    size: str = resize("a.png", 3)
    task: Task[[], Coroutine[Any, Any, None]] = daily_report
    await daily_report.enqueue()
    del job, sync_job, result, size, task


async def wrong() -> None:
    await send_email.enqueue(to="ada@example.com")  # error: missing subject
    await send_email.enqueue(to=1, subject="Hi")  # error: to is a str
    await send_email.enqueue(to="a", subject="b", cc="c")  # error: no cc parameter
    await resize.enqueue("a.png", width="wide")  # error: width is an int
    await send_email.with_options(delay="soon").enqueue("a", "b")  # error: delay type
    await send_email.with_options(retries=3).enqueue("a", "b")  # error: unknown option
    await daily_report.enqueue(1)  # error: no arguments
    resize.enqueue_sync("a.png")  # error: missing width


@app.task(queue="email", retries=3)  # error: unknown task option
async def bad_option() -> None:
    return None
