"""conveyor.integrations.sentry: the exception of a failed attempt reaches
Sentry (a local receiver of its envelope protocol) with the job's id, queue,
name and attempt; completed and cancelled jobs send nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from conveyor import Job, Queue
from conveyor.integrations.sentry import ConveyorIntegration
from helpers import StartWorker, queue_state_is, wait_for, worker_process
from sentry_receiver import SentryReceiver

pytestmark = pytest.mark.cluster


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as found:
        yield found


@pytest.fixture
def sentry(receiver: SentryReceiver) -> Iterator[Any]:
    """init(**options): Sentry set up to send to the receiver; closed at teardown."""

    def init(**options: Any) -> None:
        sentry_sdk.init(
            dsn=receiver.dsn, integrations=[ConveyorIntegration(**options)],
            default_integrations=False, auto_enabling_integrations=False,
        )

    yield init
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


async def charge(job: Job) -> str:
    if job.name == "charge":
        raise ValueError(f"card declined for order {job.data['order']}")
    return "ok"


def tags(event: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in event["tags"].items() if k.startswith("conveyor.")}


async def test_each_failed_attempt_is_reported_with_the_job_as_tags_and_context(
        queue: Queue, start_worker: StartWorker, receiver: SentryReceiver, sentry: Any) -> None:
    sentry()
    start_worker(charge, concurrency=1)
    await queue.add("refund", {"order": 6})
    job = await queue.add("charge", {"order": 7}, attempts=2)
    await wait_for(lambda: len(receiver.events) >= 2, message="two events")

    assert [tags(event) for event in receiver.events] == [
        {"conveyor.queue": queue.name, "conveyor.job.name": "charge",
         "conveyor.job.id": job.id, "conveyor.job.attempt": str(attempt)}
        for attempt in (1, 2)
    ]
    first, last = receiver.events
    (exception,) = first["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "card declined for order 7"
    assert exception["mechanism"] == {"type": "conveyor", "handled": False}
    assert exception["stacktrace"]["frames"][-1]["function"] == "charge"
    assert first["level"] == "error"
    assert first["transaction"] == f"{queue.name}:charge"
    assert first["contexts"]["conveyor job"] == {
        "id": job.id, "queue": queue.name, "name": "charge", "attempt": 1, "attempts": 2,
        "final": False,
    }
    assert last["contexts"]["conveyor job"]["final"] is True
    assert all("sentry_key=public" in auth for auth in receiver.auth)


async def test_every_attempt_false_reports_only_the_attempt_after_which_the_job_failed(
        queue: Queue, start_worker: StartWorker, receiver: SentryReceiver, sentry: Any) -> None:
    sentry(every_attempt=False)
    start_worker(charge, concurrency=1)
    job = await queue.add("charge", {"order": 8}, attempts=3)
    await wait_for(lambda: receiver.events, message="an event")
    assert await queue.get_job_state(job.id) == "failed"
    (event,) = receiver.events
    assert tags(event)["conveyor.job.attempt"] == "3"
    assert event["contexts"]["conveyor job"]["final"] is True


async def test_a_cancelled_job_is_not_reported(
        queue: Queue, start_worker: StartWorker, receiver: SentryReceiver, sentry: Any) -> None:
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        if job.name == "charge":
            raise ValueError("declined")
        started.set()
        await asyncio.sleep(60)

    sentry()
    start_worker(slow, concurrency=1)
    cancelled = await queue.add("slow", {})
    await asyncio.wait_for(started.wait(), 10)
    assert await queue.cancel(cancelled.id, "the customer left")
    await wait_for(lambda: queue_state_is(queue, cancelled.id, "failed"))
    await queue.add("charge", {"order": 9})
    # Events leave in order: once the later failure is in, the cancel would be too.
    await wait_for(lambda: receiver.events, message="the failure's event")
    assert [tags(event)["conveyor.job.name"] for event in receiver.events] == ["charge"]


@pytest.mark.cluster(False)
async def test_a_conveyor_worker_process_reports_when_the_app_module_inits_sentry(
        redis_url: str, queue_name: str, receiver: SentryReceiver, tmp_path: Path) -> None:
    (tmp_path / "billing.py").write_text(f"""
import sentry_sdk
from conveyor.app import Conveyor
from conveyor.integrations.sentry import ConveyorIntegration

sentry_sdk.init(dsn={receiver.dsn!r}, integrations=[ConveyorIntegration()])
app = Conveyor()


@app.task(queue={queue_name!r})
def invoice(customer: str) -> None:
    raise KeyError(customer)
""")
    proc = await worker_process("billing:app", redis_url, tmp_path)
    try:
        async with Queue(queue_name, redis_url) as queue:
            job = await queue.add("invoice", {"customer": "ada"})
            await wait_for(lambda: receiver.events, timeout=30, message="the failure's event")
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    (event,) = receiver.events
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert event["exception"]["values"][-1]["stacktrace"]["frames"][-1]["function"] == "invoice"
    assert tags(event) == {"conveyor.queue": queue_name, "conveyor.job.name": "invoice",
                           "conveyor.job.id": job.id, "conveyor.job.attempt": "1"}
