"""OpenTelemetry: an add span where a task is enqueued, a process span (its
child, in the same trace) for every attempt a worker makes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import tracing
from conveyor.app import Conveyor
from helpers import wait_for, workers_running


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
async def app(redis_url: str, provider: TracerProvider) -> AsyncIterator[Conveyor]:
    async with Conveyor(redis_url, tracer_provider=provider) as app:
        yield app


@pytest.fixture
async def worker_of(app: Conveyor) -> AsyncIterator[Any]:
    async with workers_running(lambda queue: app.worker(queue, handle_signals=False)) as start:
        yield start


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_the_process_span_is_a_child_of_the_add_span(
    app: Conveyor, provider: TracerProvider, exporter: InMemorySpanExporter,
    worker_of: Any, queue_name: str,
) -> None:
    seen_in_task: list[int] = []

    @app.task(queue=queue_name)
    async def send_email(to: str) -> str:
        seen_in_task.append(trace.get_current_span().get_span_context().trace_id)
        return to

    tracer = provider.get_tracer("web")
    with tracer.start_as_current_span("POST /signup") as request:
        job = await send_email.enqueue(to="ada@example.com")
    assert job.data["to"] == "ada@example.com"
    assert set(job.data[tracing.TRACE_KEY]) >= {"traceparent"}

    worker_of(queue_name)
    assert await job.wait_until_finished(timeout=10) == "ada@example.com"
    await wait_for(lambda: spans_named(exporter, f"conveyor process {queue_name}"))

    [add] = spans_named(exporter, f"conveyor add {queue_name}")
    [process] = spans_named(exporter, f"conveyor process {queue_name}")
    trace_id = request.get_span_context().trace_id
    assert add.kind is SpanKind.PRODUCER
    assert add.parent is not None and add.parent.span_id == request.get_span_context().span_id
    assert add.context is not None and add.context.trace_id == trace_id
    assert add.attributes is not None
    assert add.attributes["messaging.message.id"] == job.id
    assert add.attributes["messaging.destination.name"] == queue_name

    assert process.kind is SpanKind.CONSUMER
    assert process.context is not None and process.context.trace_id == trace_id
    assert process.parent is not None and process.parent.span_id == add.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == job.id
    assert process.attributes["messaging.destination.name"] == queue_name
    assert process.attributes["conveyor.job.name"] == "send_email"
    assert process.attributes["conveyor.job.attempt"] == 1
    assert process.status.status_code is StatusCode.UNSET
    assert seen_in_task == [trace_id]  # the task runs inside the process span


async def test_each_attempt_has_a_span_and_a_failure_is_recorded(
    app: Conveyor, exporter: InMemorySpanExporter, worker_of: Any, queue_name: str
) -> None:
    @app.task(queue=queue_name, attempts=2)
    def flaky() -> None:  # a plain def: the span reaches its thread too
        raise ValueError("smtp down")

    job = await flaky.enqueue()
    worker_of(queue_name)
    name = f"conveyor process {queue_name}"
    await wait_for(lambda: len(spans_named(exporter, name)) == 2, timeout=15)

    [add] = spans_named(exporter, f"conveyor add {queue_name}")
    attempts = sorted(spans_named(exporter, name),
                      key=lambda s: (s.attributes or {})["conveyor.job.attempt"])
    assert [(s.attributes or {})["conveyor.job.attempt"] for s in attempts] == [1, 2]
    for span in attempts:
        assert span.status.status_code is StatusCode.ERROR
        assert span.context is not None and add.context is not None
        assert span.context.trace_id == add.context.trace_id
        [event] = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "smtp down"
    assert await (await job.refresh()).get_state() == "failed"


async def test_enqueue_sync_carries_the_trace_too(
    app: Conveyor, exporter: InMemorySpanExporter, worker_of: Any, queue_name: str
) -> None:
    @app.task(queue=queue_name)
    async def ping() -> str:
        return "pong"

    job_id = await asyncio.to_thread(lambda: ping.enqueue_sync().id)
    worker_of(queue_name)
    job = await app.queue(queue_name).get_job(job_id)
    assert job is not None
    assert await job.wait_until_finished(timeout=10) == "pong"
    await wait_for(lambda: spans_named(exporter, f"conveyor process {queue_name}"))
    [add] = spans_named(exporter, f"conveyor add {queue_name}")
    [process] = spans_named(exporter, f"conveyor process {queue_name}")
    assert process.parent is not None and add.context is not None
    assert process.parent.span_id == add.context.span_id


async def test_nothing_is_added_to_the_job_when_no_provider_records(
    redis_url: str, queue_name: str
) -> None:
    # The API without an SDK configured: spans are not recorded, the data stays clean.
    async with Conveyor(redis_url, tracer_provider=trace.NoOpTracerProvider()) as app:

        @app.task(queue=queue_name)
        async def ping(n: int) -> int:
            return n

        job = await ping.enqueue(1)
        assert job.data == {"n": 1}
        worker = app.worker(queue_name, handle_signals=False)
        running = asyncio.create_task(worker.run())
        assert await job.wait_until_finished(timeout=10) == 1
        await worker.close()
        await running


def test_without_opentelemetry_installed_tracing_is_off_and_tasks_work(
    redis_url: str, queue_name: str
) -> None:
    script = f"""
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from conveyor import tracing
from conveyor.app import Conveyor
assert tracing.ENABLED is False

async def main():
    async with Conveyor({redis_url!r}) as app:
        @app.task(queue={queue_name!r})
        async def ping(n: int) -> int:
            return n + 1
        job = await ping.enqueue(n=1)
        assert job.data == {{"n": 1}}, job.data
        worker = app.worker({queue_name!r}, handle_signals=False)
        running = asyncio.create_task(worker.run())
        print(await job.wait_until_finished(timeout=10))
        await worker.close()
        await running

asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
