"""move_to_finished.lua: completing, failing (retry / give up), releasing, lock
checks, retention of the finished sets, and fetching the next jobs in the same call."""

from __future__ import annotations

import json

import pytest
from script_support import (
    KEEP_ALL,
    QueueState,
    add,
    fetched,
    finish,
    outcome,
    prio,
    s,
    take,
    token_parts,
)

from conveyor import Queue


async def _active_job(
    queue: Queue, *, attempts: int = 1, priority: int = 0, job_id: str = ""
) -> tuple[str, str]:
    """Add one job and take it; returns (id, token)."""
    await add(queue, job_id, attempts=attempts, priority=priority)
    [(taken, fields)] = await take(queue)
    return taken, fields["tok"]


@pytest.mark.parametrize("kind", ["c", "f", "r"])
async def test_token_mismatch_returns_0_and_changes_nothing(
    queue: Queue, state: QueueState, kind: str
) -> None:
    job_id, token = await _active_job(queue, attempts=3)
    await add(queue, "next")
    before = await state.snapshot()

    statuses, next_due, jobs = await finish(
        queue, outcome(job_id, token + "x", kind, '"v"', "trace", 0, "0:-1")
    )

    assert (statuses, next_due, jobs) == ([0], 0, [])
    assert await state.snapshot() == before


async def test_unknown_job_returns_0(queue: Queue, state: QueueState) -> None:
    statuses, _, _ = await finish(queue, outcome("nope", "w:1", "c", "1"))
    assert statuses == [0]
    assert await state.snapshot() == {}


async def test_complete_moves_to_completed(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue)
    await state.clear_events()
    before = await state.now()

    statuses, next_due, jobs = await finish(queue, outcome(job_id, token, "c", '{"ok":true}'))

    after = await state.now()
    assert (statuses, next_due, jobs) == ([1], 0, [])
    assert await state.active() == []
    fields = await state.job(job_id)
    fon = int(fields["fon"])
    assert before <= fon <= after
    assert await state.completed() == [(job_id, fon)]
    assert fields["rv"] == '{"ok":true}'
    assert fields["atm"] == "1"
    assert fields["ats"] == "1"
    assert int(fields["pon"]) == token_parts(token)[3]
    assert await state.locks() == {}  # the token left with the lock
    assert await state.events() == [
        {
            "event": "completed",
            "job_id": job_id,
            "return_value": '{"ok":true}',
            "attempts_made": "1",
        },
    ]


async def test_finish_and_fetch_next_in_the_same_call(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue)
    await add(queue, "second")
    await add(queue, "third")

    statuses, next_due, jobs = await finish(
        queue, outcome(job_id, token, "c", "1"), n=1, prefix="w2:", lock_ms=5000
    )

    assert statuses == [1]
    assert next_due == 0
    assert [j for j, _ in jobs] == ["second"]
    assert token_parts(jobs[0][1]["tok"])[:3] == ("w2:", 1, 0)
    assert await state.locks() == {"second": jobs[0][1]["tok"]}
    active = dict(await state.active())
    assert set(active) == {"second"}
    assert active["second"] == int(jobs[0][1]["pon"]) + 5000
    assert await state.wait() == ["third"]
    assert await state.zids(queue.keys.completed) == [job_id]


async def test_fetch_reports_next_due_when_nothing_is_ready(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue)
    _, _, ts = await add(queue, "later", delay=60_000)
    statuses, next_due, jobs = await finish(queue, outcome(job_id, token, "c", "1"), n=2)
    assert (statuses, next_due, jobs) == ([1], ts + 60_000, [])


async def test_several_outcomes_in_one_call(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await add(queue)
    await add(queue, attempts=2)
    jobs = await take(queue, 3)
    (a, fa), (b, _), (c, fc) = jobs

    statuses, _, _ = await finish(
        queue,
        outcome(a, fa["tok"], "c", "1"),
        outcome(b, "stale", "c", "2"),
        outcome(c, fc["tok"], "f", "boom", "trace", 0),
    )

    assert statuses == [1, 0, 1]
    assert await state.zids(queue.keys.completed) == [a]
    assert await state.zids(queue.keys.active) == [b]
    assert await state.wait() == [c]


async def test_fail_with_retry_delay_goes_to_delayed(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=3)
    await state.clear_marker()
    await state.clear_events()

    statuses, _, _ = await finish(queue, outcome(job_id, token, "f", "boom", "trace-1", 5000))

    assert statuses == [1]
    events = await state.events()
    due = int(events[1]["delay"])
    assert events == [
        {
            "event": "retrying",
            "job_id": job_id,
            "failed_reason": "boom",
            "attempts_made": "1",
            "delay": "5000",
        },
        {"event": "delayed", "job_id": job_id, "delay": str(due)},
    ]
    assert int((await state.job(job_id))["pon"]) + 5000 <= due
    assert await state.delayed() == [(job_id, due)]
    assert await state.marker() == {"d": due}
    assert await state.active() == []
    assert await state.wait() == []
    assert await state.failed() == []
    fields = await state.job(job_id)
    assert fields["atm"] == "1"
    assert fields["fr"] == "boom"
    assert json.loads(fields["st"]) == ["trace-1"]
    assert await state.locks() == {}
    assert "fon" not in fields


async def test_fail_with_zero_delay_goes_to_wait_tail(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=2)
    await add(queue, "other")
    await state.clear_marker()
    await state.clear_events()

    statuses, _, _ = await finish(queue, outcome(job_id, token, "f", "boom", "t", 0))

    assert statuses == [1]
    assert await state.wait() == ["other", job_id]
    assert await state.delayed() == []
    assert await state.marker() == {"0": 0.0}
    assert await state.event_names() == [("retrying", job_id), ("waiting", job_id)]
    assert (await state.job(job_id))["atm"] == "1"


async def test_prioritized_job_retries_into_prioritized(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=2, priority=7)
    await finish(queue, outcome(job_id, token, "f", "boom", "t", 0))
    assert await state.wait() == []
    assert await state.prioritized() == [(job_id, prio(7, 2))]


async def test_fail_on_paused_queue_retries_without_marker(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=2)
    await queue.scripts.set_paused(True)
    await state.clear_marker()
    await finish(queue, outcome(job_id, token, "f", "boom", "t", 0))
    assert await state.wait() == [job_id]
    assert await state.marker() == {}


async def test_unrecoverable_failure_skips_remaining_attempts(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue, attempts=5)
    await state.clear_events()

    statuses, _, _ = await finish(queue, outcome(job_id, token, "f", "fatal", "trace", -1))

    assert statuses == [1]
    fields = await state.job(job_id)
    assert await state.failed() == [(job_id, int(fields["fon"]))]
    assert fields["fr"] == "fatal"
    assert fields["atm"] == "1"
    assert json.loads(fields["st"]) == ["trace"]
    assert await state.wait() == []
    assert await state.delayed() == []
    assert await state.active() == []
    assert await state.events() == [
        {"event": "failed", "job_id": job_id, "failed_reason": "fatal", "attempts_made": "1"},
    ]


async def test_exhausted_attempts_go_to_failed(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=2)
    await finish(queue, outcome(job_id, token, "f", "first", "trace-1", 0))
    [(_, fields)] = await take(queue)
    assert token_parts(fields["tok"])[:3] == ("w:", 2, 1)

    statuses, _, _ = await finish(
        queue, outcome(job_id, fields["tok"], "f", "second", "trace-2", 1000)
    )

    assert statuses == [1]
    fields = await state.job(job_id)
    assert await state.failed() == [(job_id, int(fields["fon"]))]
    assert await state.delayed() == []
    assert fields["atm"] == "2"
    assert fields["fr"] == "second"
    assert json.loads(fields["st"]) == ["trace-1", "trace-2"]
    assert (await state.event_names())[-1] == ("failed", job_id)


async def test_a_corrupt_stacktrace_or_attempts_field_does_not_fail_the_report(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue, attempts=5)
    await add(queue, "other")
    [(_, other)] = await take(queue)
    await state.redis.hset(queue.keys.job(job_id), mapping={"st": "nope", "att": "x"})

    statuses, _, _ = await finish(
        queue, outcome(job_id, token, "f", "fatal", "trace", -1),
        outcome("other", other["tok"], "c", "1"),
    )

    assert statuses == [1, 1]
    fields = await state.job(job_id)
    assert json.loads(fields["st"]) == ["trace"]  # the unreadable list starts over
    assert await state.zids(queue.keys.failed) == [job_id]
    assert await state.zids(queue.keys.completed) == ["other"]


async def test_stacktrace_list_is_capped_at_10(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=12)
    for i in range(1, 13):
        statuses, _, jobs = await finish(
            queue, outcome(job_id, token, "f", f"r{i}", f"trace-{i}", 0), n=1
        )
        assert statuses == [1]
        if i < 12:
            [(_, fields)] = jobs
            token = fields["tok"]
        else:
            assert jobs == []

    fields = await state.job(job_id)
    assert json.loads(fields["st"]) == [f"trace-{i}" for i in range(3, 13)]
    assert fields["atm"] == "12"
    assert await state.zids(queue.keys.failed) == [job_id]


async def test_release_goes_to_wait_head_without_counting_an_attempt(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue, attempts=1)
    await add(queue, "other")
    await state.clear_marker()
    await state.clear_events()

    statuses, _, _ = await finish(queue, outcome(job_id, token, "r"))

    assert statuses == [1]
    assert await state.wait() == [job_id, "other"]
    assert await state.active() == []
    assert await state.marker() == {"0": 0.0}
    assert await state.event_names() == [("waiting", job_id)]
    fields = await state.job(job_id)
    assert "atm" not in fields  # no attempt made
    assert fields["ats"] == "1"  # but one started
    assert await state.locks() == {}
    assert "fon" not in fields

    # taken again: a new token; the single attempt is still available
    [(taken, fields)] = await take(queue, prefix="w2:")
    assert taken == job_id
    assert token_parts(fields["tok"])[:3] == ("w2:", 2, 0)
    statuses, _, _ = await finish(queue, outcome(job_id, fields["tok"], "c", "1"))
    assert statuses == [1]
    assert (await state.job(job_id))["atm"] == "1"


async def test_release_of_prioritized_job_goes_back_to_prioritized(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue, priority=3)
    await finish(queue, outcome(job_id, token, "r"))
    assert await state.zids(queue.keys.prioritized) == [job_id]
    assert await state.wait() == []


@pytest.mark.parametrize(("kind", "set_name"), [("c", "completed"), ("f", "failed")])
async def test_keep_zero_deletes_job_and_logs(
    queue: Queue, state: QueueState, kind: str, set_name: str
) -> None:
    job_id, token = await _active_job(queue)
    assert await queue.scripts.add_log(job_id, "line", 0) == 1

    statuses, _, _ = await finish(queue, outcome(job_id, token, kind, "v", "t", -1, "0:-1"))

    assert statuses == [1]
    assert not await state.exists(job_id)
    assert await state.logs(job_id) == []
    assert await state.zset(queue.keys.key(set_name)) == []
    assert await state.active() == []
    assert (await state.event_names())[-1] == ("completed" if kind == "c" else "failed", job_id)


@pytest.mark.parametrize(("kind", "set_name"), [("c", "completed"), ("f", "failed")])
async def test_keep_count_keeps_newest(
    queue: Queue, state: QueueState, kind: str, set_name: str
) -> None:
    for _ in range(3):
        await add(queue)
    jobs = await take(queue, 3)
    for job_id, _ in jobs:
        await queue.scripts.add_log(job_id, "log of " + job_id, 0)

    for job_id, fields in jobs:  # one call each, oldest first
        statuses, _, _ = await finish(
            queue, outcome(job_id, fields["tok"], kind, "v", "t", -1, "2:-1")
        )
        assert statuses == [1]

    assert await state.zids(queue.keys.key(set_name)) == ["2", "3"]
    assert not await state.exists("1")
    assert await state.logs("1") == []
    assert await state.exists("2") and await state.exists("3")
    assert await state.logs("3") == ["log of 3"]


async def test_keep_age_removes_old_finished_jobs(queue: Queue, state: QueueState) -> None:
    for job_id in ("old", "recent", "new"):
        await add(queue, job_id)
    jobs = dict(await take(queue, 3))
    await queue.scripts.add_log("old", "x", 0)
    for job_id in ("old", "recent"):
        await finish(queue, outcome(job_id, jobs[job_id]["tok"], "c", "1", keep=KEEP_ALL))
    now = await state.now()
    # age them: finished 2 minutes and 1 second ago
    await state.redis.zadd(queue.keys.completed, {"old": now - 120_000, "recent": now - 1000})

    statuses, _, _ = await finish(
        queue, outcome("new", jobs["new"]["tok"], "c", "1", keep="-1:60000")
    )

    assert statuses == [1]
    assert await state.zids(queue.keys.completed) == ["recent", "new"]
    assert not await state.exists("old")
    assert await state.logs("old") == []
    assert await state.exists("recent")


async def test_keep_count_and_age_together(queue: Queue, state: QueueState) -> None:
    for job_id in ("a", "b", "c", "d"):
        await add(queue, job_id)
    jobs = dict(await take(queue, 4))
    for job_id in ("a", "b", "c"):
        await finish(queue, outcome(job_id, jobs[job_id]["tok"], "c", "1", keep=KEEP_ALL))
    now = await state.now()
    await state.redis.zadd(queue.keys.completed, {"a": now - 120_000})

    await finish(queue, outcome("d", jobs["d"]["tok"], "c", "1", keep="2:60000"))

    assert await state.zids(queue.keys.completed) == ["c", "d"]
    assert not await state.exists("a")
    assert not await state.exists("b")


async def test_a_reports_timing_tally_adds_to_this_minutes_histogram(
    queue: Queue, state: QueueState
) -> None:
    first, first_token = await _active_job(queue)
    await finish(queue, outcome(first, first_token, "c", "1"), timings={"p3": 2, "w5": 1})
    second, second_token = await _active_job(queue)
    await finish(queue, outcome(second, second_token, "c", "1"), timings={"p3": 1, "p7": 4})

    minute = await state.now() // 60_000
    times_key = queue.keys.base + f"metrics:times:{minute}"
    assert await state.redis.hgetall(times_key) == {b"p3": b"3", b"w5": b"1", b"p7": b"4"}
    assert 0 < await state.redis.pttl(times_key) <= 3 * 3600 * 1000
    completed = await state.redis.hget(queue.keys.base + "metrics:completed", str(minute))
    assert completed == b"2"


async def test_extras_carry_a_parent_a_deduplication_key_and_a_group_with_odd_characters(
    queue: Queue, state: QueueState
) -> None:
    """The extras argument packs three strings by length: ':' or digits inside
    them must not shift one into the next."""
    await queue.add("x", deduplication={"id": "12:3:odd"}, group="g-1")
    [(job_id, fields)] = await take(queue)
    assert await state.redis.hget(queue.keys.base + "groups:active", "g-1") == b"1"

    statuses, _, _ = await finish(
        queue, outcome(job_id, fields["tok"], "c", "1", dedup="12:3:odd", group="g-1")
    )

    assert statuses == [1]
    assert await queue.get_deduplication_job_id("12:3:odd") is None
    assert await state.redis.hget(queue.keys.base + "groups:active", "g-1") is None


@pytest.mark.parametrize("kind", ["r", "l"])
async def test_handed_back_prioritized_job_goes_to_the_head_of_its_priority(
    queue: Queue, state: QueueState, kind: str
) -> None:
    for job_id in ("a", "b", "c"):
        await add(queue, job_id, priority=2)
    [(_, fields)] = await take(queue)  # a
    await add(queue, "urgent", priority=1)
    await add(queue, "later", priority=3)

    await finish(queue, outcome("a", fields["tok"], kind, retry_delay=0))

    assert await state.zids(queue.keys.prioritized) == ["urgent", "a", "b", "c", "later"]


async def test_last_handed_back_prioritized_job_is_taken_first_as_on_the_wait_list(
    queue: Queue, state: QueueState
) -> None:
    for job_id in ("a", "b", "c"):
        await add(queue, job_id, priority=2)
    taken = dict(await take(queue, 2))  # a, b
    await finish(queue, outcome("a", taken["a"]["tok"], "r"))
    await finish(queue, outcome("b", taken["b"]["tok"], "r"))
    assert await state.zids(queue.keys.prioritized) == ["b", "a", "c"]


async def test_retry_without_backoff_goes_after_delayed_jobs_already_due(
    queue: Queue, state: QueueState
) -> None:
    _, _, ts = await add(queue, "due", delay=1000)
    job_id, token = await _active_job(queue, attempts=2, job_id="retried")
    assert await state.zids(queue.keys.delayed) == ["due"]  # still waiting for its time
    await state.wait_until(ts + 1000)

    await finish(queue, outcome(job_id, token, "f", "boom", "t", 0))

    assert await state.wait() == ["due", "retried"]


async def test_prioritized_retry_without_backoff_goes_after_due_delayed_jobs_of_its_priority(
    queue: Queue, state: QueueState
) -> None:
    _, _, ts = await add(queue, "due", delay=1000, priority=4)
    job_id, token = await _active_job(queue, attempts=2, priority=4, job_id="retried")
    assert await state.zids(queue.keys.delayed) == ["due"]
    await state.wait_until(ts + 1000)

    await finish(queue, outcome(job_id, token, "f", "boom", "t", 0))

    assert await state.zids(queue.keys.prioritized) == ["due", "retried"]


async def test_completed_events_leave_out_return_values_beyond_4_kib(
    queue: Queue, state: QueueState
) -> None:
    """The job hash keeps the value: kept events must not grow with large results."""
    big = json.dumps("x" * 5000)
    for job_id in ("small", "big"):
        await add(queue, job_id)
    taken = dict((job_id, fields["tok"]) for job_id, fields in await take(queue, 2))
    await state.clear_events()

    statuses, _, _ = await finish(
        queue,
        outcome("small", taken["small"], "c", '"ok"'),
        outcome("big", taken["big"], "c", big),
    )

    assert statuses == [1, 1]
    assert (await state.job("big"))["rv"] == big
    assert await state.events() == [
        {"event": "completed", "job_id": "small", "return_value": '"ok"', "attempts_made": "1"},
        {"event": "completed", "job_id": "big", "return_value_bytes": str(len(big)),
         "attempts_made": "1"},
    ]


async def test_one_completed_batch_carries_at_most_64_kib_of_return_values(
    queue: Queue, state: QueueState
) -> None:
    value = json.dumps("y" * 3998)  # 4000 bytes: each alone fits
    for i in range(20):
        await add(queue, f"j{i}")
    taken = await take(queue, 20)
    await state.clear_events()

    await finish(queue, *(outcome(job_id, f["tok"], "c", value) for job_id, f in taken))

    events = await state.events()
    carried = [e for e in events if "return_value" in e]
    left_out = [e for e in events if "return_value_bytes" in e]
    assert len(carried) == 16 and len(left_out) == 4
    assert all(e["return_value_bytes"] == "4000" for e in left_out)
    assert [e["job_id"] for e in carried] == [job_id for job_id, _ in taken[:16]]


async def test_a_report_run_again_with_its_token_returns_its_first_reply_and_changes_nothing(
    queue: Queue, state: QueueState
) -> None:
    """What redis-py's resend after a lost reply does (includes/calls.lua): the
    result stays reported once (status 1, not "lock lost"), and the jobs the
    call took come back."""
    job_id, token = await _active_job(queue)
    await add(queue, "next")
    args = ([outcome(job_id, token, "c", '"done"')], 1, "w:", 60_000)
    first = await queue.scripts.move_to_finished(*args, call="c-1")
    before = await state.snapshot()

    again = await queue.scripts.move_to_finished(*args, call="c-1")

    assert s(again) == s(first)
    assert [int(x) for x in again[0]] == [1]
    assert [taken for taken, _ in fetched(again[2])] == ["next"]
    assert await state.snapshot() == before


async def test_each_failed_attempt_is_recorded_with_its_start_end_and_reason(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue, attempts=3)
    starts, ends = [], []
    for i in (1, 2):
        starts.append(token_parts(token)[3])
        await finish(queue, outcome(job_id, token, "f", f"boom {i}", f"trace-{i}", 0))
        ends.append(await state.now())
        [(_, fields)] = await take(queue)
        token = fields["tok"]
    before_completion = await state.job(job_id)

    await finish(queue, outcome(job_id, token, "c", "1"))

    history = json.loads((await state.job(job_id))["ath"])
    assert [(n, start, reason) for n, start, _, reason in history] == [
        (1, starts[0], "boom 1"), (2, starts[1], "boom 2")]
    for (_, start, end, _), seen_after in zip(history, ends, strict=True):
        assert start <= end <= seen_after
    # A completed attempt writes no history: the hot path stays one HSET.
    assert (await state.job(job_id))["ath"] == before_completion["ath"]


async def test_attempt_history_keeps_the_last_10_and_cuts_reasons_at_1_kib_whole_chars(
    queue: Queue, state: QueueState
) -> None:
    job_id, token = await _active_job(queue, attempts=12)
    long_reason = "é" * 600  # 1,200 bytes of 2-byte characters
    for i in range(1, 13):
        _, _, jobs = await finish(
            queue, outcome(job_id, token, "f", long_reason if i == 12 else f"r{i}", "t", 0), n=1)
        if jobs:
            token = jobs[0][1]["tok"]

    history = json.loads((await state.job(job_id))["ath"])
    assert [entry[0] for entry in history] == list(range(3, 13))
    assert history[-1][3] == "é" * 512
    assert (await state.job(job_id))["fr"] == long_reason  # the reason itself is whole


async def test_a_corrupt_attempt_history_starts_over(queue: Queue, state: QueueState) -> None:
    job_id, token = await _active_job(queue, attempts=2)
    await state.redis.hset(queue.keys.job(job_id), "ath", "{nope")

    assert (await finish(queue, outcome(job_id, token, "f", "why", "t", 0)))[0] == [1]

    [[n, _, _, reason]] = json.loads((await state.job(job_id))["ath"])
    assert (n, reason) == (1, "why")
