"""Failures the model-based test (tests/test_model.py) found, each as its shrunk
sequence of the state machine's steps, checked against the model after every
step as the machine does: items of issue 11, and two bugs the issue did not
list (101: the stalled check kept a failed job's deduplication key; 102: a
cancel mark outlived its attempt and cancelled a later job with the same id).
All failed before their fixes; they stay as regular tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conveyor import Queue
from test_model import QueueMachine


@contextmanager
def machine(redis_url: str) -> Iterator[QueueMachine]:
    """The state machine with every behaviour allowed (no known divergence)."""
    m = QueueMachine(redis_url, known=set())
    try:
        yield m
    finally:
        m.teardown()


def job(kind: str = "plain", **options: Any) -> dict[str, Any]:
    """A spec for the machine's ``add`` rule."""
    return {"kind": kind, "priority": 1, "job_id": None, "dedup": None, "attempts": 1,
            "remove_on_complete": False, "remove_on_fail": False, **options}


def child(queue: int = 0, **options: Any) -> dict[str, Any]:
    """A spec for a child of the machine's ``add_flow`` rule."""
    return {"queue": queue, "kind": "plain", "on_failure": "", "attempts": 1,
            "remove_on_complete": False, "remove_on_fail": False, "grandchildren": 0,
            **options}


def steps(m: QueueMachine, *calls: tuple[str, dict[str, Any]]) -> None:
    """Run the machine's rules in order, checking the model after each."""
    m.matches_the_model()
    for name, args in calls:
        getattr(m, name)(**args)
        m.matches_the_model()


async def test_delayed_jobs_due_in_the_same_ms_are_promoted_in_the_order_they_were_added(
    queue: Queue,
) -> None:
    jobs = await queue.add_bulk([{"name": "j", "delay": 86_400_000}] * 12)
    await queue.promote_jobs()
    waiting = [j.id for j in await queue.get_jobs("waiting", asc=True)]
    assert waiting == [j.id for j in jobs]


def test_draining_a_flow_child_lets_its_parent_run(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add_flow", {"q": 1, "priority": 0, "children": [child(0)]}),
              ("drain", {"q": 0, "delayed": False}))


def test_cleaning_a_failed_flow_child_lets_its_parent_run(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add_flow", {"q": 1, "priority": 0, "children": [child(0)]}),
              ("fetch", {"q": 0, "n": 1}),
              ("finish", {"which": 0, "kind": "fail", "then_fetch": 0}),
              ("clean", {"q": 0, "state": "failed"}))


def test_a_flow_child_removed_as_it_fails_does_not_leave_its_parent_waiting(
    redis_url: str,
) -> None:
    with machine(redis_url) as m:
        steps(m, ("add_flow", {"q": 1, "priority": 0,
                               "children": [child(0, remove_on_fail=True)]}),
              ("fetch", {"q": 0, "n": 1}),
              ("finish", {"which": 0, "kind": "fail", "then_fetch": 0}))


def test_removing_the_job_holding_a_deduplication_key_frees_the_key(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job(dedup="d1")}),
              ("remove", {"which": 0}))


def test_a_job_failed_by_stalling_honours_its_remove_on_fail(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job(remove_on_fail=True)}),
              ("fetch", {"q": 0, "n": 1}), ("stall", {"which": 0}),
              ("fetch", {"q": 0, "n": 1}), ("stall", {"which": 0}))


def test_a_stalled_prioritized_job_goes_back_to_the_head_of_its_priority(
    redis_url: str,
) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job("prioritized")}),
              ("add", {"q": 0, "spec": job("prioritized")}),
              ("fetch", {"q": 0, "n": 1}),
              ("stall", {"which": 0}))


def test_a_prioritized_job_handed_back_goes_to_the_head_of_its_priority(
    redis_url: str,
) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job("prioritized")}),
              ("add", {"q": 0, "spec": job("prioritized")}),
              ("fetch", {"q": 0, "n": 1}),
              ("finish", {"which": 0, "kind": "release", "then_fetch": 0}))


def test_a_job_retried_without_backoff_does_not_overtake_a_due_delayed_job(
    redis_url: str,
) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job("delayed")}),
              ("add", {"q": 0, "spec": job(attempts=2)}),
              ("fetch", {"q": 0, "n": 1}),
              ("change_delay", {"which": 0, "due_now": True}),
              ("finish", {"which": 0, "kind": "fail-retry", "then_fetch": 1}))


def test_retry_keeps_the_stalled_counter(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job()}),
              ("fetch", {"q": 0, "n": 1}), ("stall", {"which": 0}),
              ("fetch", {"q": 0, "n": 1}),
              ("finish", {"which": 0, "kind": "fail", "then_fetch": 0}),
              ("retry", {"which": 0, "reset": False}))


def test_removing_a_flow_parent_removes_its_pending_children(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add_flow", {"q": 1, "priority": 0, "children": [child(0)]}),
              ("remove", {"which": 0}))


def test_retrying_an_ignored_failed_child_makes_it_pending_again(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add_flow", {"q": 1, "priority": 0,
                               "children": [child(0, on_failure="ignore"), child(1)]}),
              ("fetch", {"q": 0, "n": 1}),
              ("finish", {"which": 0, "kind": "fail", "then_fetch": 0}),
              ("retry", {"which": 0, "reset": False}))


def test_a_job_failed_by_stalling_lets_go_of_its_deduplication_key(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job(dedup="d1")}),
              ("fetch", {"q": 0, "n": 1}), ("stall", {"which": 0}),
              ("fetch", {"q": 0, "n": 1}), ("stall", {"which": 0}))


async def test_a_job_failed_by_stalling_and_retried_does_not_take_its_key_back(
    queue: Queue,
) -> None:
    """What 101 costs a user: the failed job, retried, holds its key again, so an add
    with that key is deduplicated into it (after any other failure it is not)."""
    first = await queue.add("j", 1, deduplication={"id": "k"})
    token = await take_one(queue)
    await queue.scripts.extend_locks([(first.id, token)], -1)
    await queue.scripts.move_stalled_jobs(30_000, 0, "1000:-1")
    assert await queue.get_job_state(first.id) == "failed"
    await queue.retry_job(first.id)
    second = await queue.add("j", 2, deduplication={"id": "k"})
    assert second.id != first.id


def test_a_cancelled_job_removed_after_a_stall_leaves_no_cancel_mark(redis_url: str) -> None:
    with machine(redis_url) as m:
        steps(m, ("add", {"q": 0, "spec": job()}),
              ("fetch", {"q": 0, "n": 1}), ("cancel", {"which": 0}),
              ("stall", {"which": 0}), ("cancel", {"which": 0}))


async def test_a_new_job_with_the_id_of_a_cancelled_one_is_not_cancelled(queue: Queue) -> None:
    """What 102 costs a user: a job cancelled while running, requeued by the stalled
    check and cancelled again leaves its mark; the next job with its id is
    cancelled by its worker's first lock renewal."""
    await queue.add("j", 1, job_id="order-7")
    token = await take_one(queue)
    await queue.cancel("order-7")
    await queue.scripts.extend_locks([("order-7", token)], -1)
    await queue.scripts.move_stalled_jobs(30_000, 1, "1000:-1")
    await queue.cancel("order-7")
    await queue.add("j", 2, job_id="order-7")
    token = await take_one(queue)
    _, cancelled = await queue.scripts.extend_locks([("order-7", token)], 60_000)
    assert cancelled == {}


async def take_one(queue: Queue) -> str:
    """Fetch one job as a worker would; its lock token."""
    [[_, fields]] = (await queue.scripts.move_to_active(1, "w:", 60_000))[1]
    return str(dict(zip(fields[::2], fields[1::2], strict=True))[b"tok"].decode())
