"""The public API: what ``import conveyor`` offers, and the error hierarchy."""

from __future__ import annotations

import importlib

import pytest

import conveyor
import conveyor.sync

PUBLIC = {
    "Connector",
    "Conveyor",
    "ConveyorError",
    "DurabilityError",
    "FlowProducer",
    "Job",
    "JobFailedError",
    "JobNotFoundError",
    "JobOptions",
    "JobScheduler",
    "JobStateError",
    "JobTimeoutError",
    "Queue",
    "QueueEvents",
    "RateLimitError",
    "SyncJob",
    "Task",
    "UnrecoverableError",
    "ValidationError",
    "WaitTimeoutError",
    "Worker",
    "WorkerInfo",
    "__version__",
}


def test_all_is_exactly_the_public_set() -> None:
    assert set(conveyor.__all__) == PUBLIC
    assert len(conveyor.__all__) == len(PUBLIC)  # no duplicates


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_imports(name: str) -> None:
    module = importlib.import_module("conveyor")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from conveyor import {name}", namespace)
    assert namespace[name] is getattr(conveyor, name)


def test_star_import_gives_the_public_set() -> None:
    namespace: dict[str, object] = {}
    exec("from conveyor import *", namespace)
    assert set(namespace) - {"__builtins__"} == PUBLIC


def test_version() -> None:
    assert isinstance(conveyor.__version__, str)
    assert conveyor.__version__.count(".") >= 2


def test_sync_module_api() -> None:
    assert set(conveyor.sync.__all__) == {"Queue", "SyncJob"}
    assert conveyor.sync.SyncJob is conveyor.SyncJob
    assert conveyor.sync.Queue is not conveyor.Queue


def test_public_classes_come_from_their_modules() -> None:
    from conveyor.events import QueueEvents
    from conveyor.job import Job
    from conveyor.options import JobOptions
    from conveyor.queue import Queue
    from conveyor.worker import Worker

    assert conveyor.Queue is Queue
    assert conveyor.Worker is Worker
    assert conveyor.Job is Job
    assert conveyor.JobOptions is JobOptions
    assert conveyor.QueueEvents is QueueEvents


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        ("ValidationError", (conveyor.ConveyorError, ValueError)),
        ("JobNotFoundError", (conveyor.ConveyorError, KeyError)),
        ("JobStateError", (conveyor.ConveyorError,)),
        ("JobFailedError", (conveyor.ConveyorError,)),
        ("WaitTimeoutError", (conveyor.ConveyorError, TimeoutError)),
        ("JobTimeoutError", (conveyor.ConveyorError, TimeoutError)),
        ("DurabilityError", (conveyor.ConveyorError,)),
        ("ConveyorError", (Exception,)),
    ],
)
def test_error_hierarchy(error: str, bases: tuple[type, ...]) -> None:
    cls = getattr(conveyor, error)
    for base in bases:
        assert issubclass(cls, base)


def test_unrecoverable_error_is_for_processors_not_a_conveyor_error() -> None:
    # Raised by user code to skip retries; catching ConveyorError must not swallow it.
    assert issubclass(conveyor.UnrecoverableError, Exception)
    assert not issubclass(conveyor.UnrecoverableError, conveyor.ConveyorError)


def test_error_messages() -> None:
    err = conveyor.ValidationError("priority", "must be in range", 7)
    assert (err.field, err.value, str(err)) == ("priority", 7, "priority: must be in range")
    missing = conveyor.JobNotFoundError("emails", "42")
    assert str(missing) == "job '42' not found in queue 'emails'"  # not KeyError's repr quoting
    failed = conveyor.JobFailedError("42", "ValueError: bad", ["trace"])
    assert (failed.job_id, failed.failed_reason, failed.stacktrace) == (
        "42", "ValueError: bad", ["trace"],
    )
    assert "ValueError: bad" in str(failed)
