"""move_to_active.lua (and includes/fetch_jobs.lua): order of taking, tokens, lock
deadlines, promotion of due delayed jobs, markers, next_due and pausing."""

from __future__ import annotations

from script_support import QueueState, add, fetched, finish, outcome, prio, s, take, token_parts

from conveyor import Queue


async def test_takes_from_wait_head_with_token_and_lock(queue: Queue, state: QueueState) -> None:
    for _ in range(3):
        await add(queue)
    await state.clear_marker()
    await state.clear_events()

    before = await state.now()
    reply = await queue.scripts.move_to_active(2, "worker-1:", 30_000)
    after = await state.now()

    assert reply[0] == 0
    jobs = fetched(reply[1])
    assert [job_id for job_id, _ in jobs] == ["1", "2"]
    active = dict(await state.active())
    locks = await state.locks()
    for job_id, fields in jobs:
        stored = await state.job(job_id)
        # The job hash is not written; the reply adds the attempt's facts to it.
        assert not {"ats", "atm", "pon", "tok"} & set(stored)
        assert fields == {**stored, "tok": fields["tok"], "pon": fields["pon"], "ats": "1"}
        assert locks[job_id] == fields["tok"]
        pon = int(fields["pon"])
        assert token_parts(fields["tok"]) == ("worker-1:", 1, 0, pon)
        assert before <= pon <= after
        assert active[job_id] == pon + 30_000
    assert await state.wait() == ["3"]
    assert await state.event_names() == [("active", "1"), ("active", "2")]
    # n jobs were taken and more are ready: a marker wakes another idle worker
    assert await state.marker() == {"0": 0.0}


async def test_no_marker_left_when_nothing_more_is_ready(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await add(queue)
    await state.clear_marker()

    assert [j for j, _ in await take(queue, 2)] == ["1", "2"]
    assert await state.marker() == {}

    await add(queue)
    await state.clear_marker()
    assert [j for j, _ in await take(queue, 5)] == ["3"]
    assert await state.marker() == {}


async def test_token_suffix_counts_attempts_started(queue: Queue, state: QueueState) -> None:
    await add(queue)
    [(_, fields)] = await take(queue, prefix="a:")
    assert token_parts(fields["tok"])[:3] == ("a:", 1, 0)

    # handed back unfinished (worker shutdown), then another worker takes it
    await finish(queue, outcome("1", fields["tok"], "r"))
    [(_, fields)] = await take(queue, prefix="b:")
    assert token_parts(fields["tok"])[:3] == ("b:", 2, 0)
    assert fields["ats"] == "2"


async def test_wait_list_before_prioritized_lowest_priority_first(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "p2a", priority=2)
    await add(queue, "p1a", priority=1)
    await add(queue, "plain1")
    await add(queue, "p1b", priority=1)
    await add(queue, "plain2")
    await add(queue, "p2b", priority=2)

    assert [j for j, _ in await take(queue, 3)] == ["plain1", "plain2", "p1a"]
    assert await state.wait() == []
    assert await state.zids(queue.keys.prioritized) == ["p1b", "p2a", "p2b"]
    assert [j for j, _ in await take(queue, 10)] == ["p1b", "p2a", "p2b"]
    assert await state.zids(queue.keys.active) != []
    assert await state.prioritized() == []


async def test_one_at_a_time_follows_the_same_order(queue: Queue, state: QueueState) -> None:
    await add(queue, "p3", priority=3)
    await add(queue, "w1")
    await add(queue, "p1", priority=1)
    await add(queue, "w2", lifo=True)
    order = []
    for _ in range(4):
        [(job_id, _)] = await take(queue)
        order.append(job_id)
    assert order == ["w2", "w1", "p1", "p3"]


async def test_empty_queue_returns_nothing(queue: Queue, state: QueueState) -> None:
    reply = await queue.scripts.move_to_active(3, "w:", 1000)
    assert s(reply) == [0, [], 0]
    assert await state.snapshot() == {}


async def test_next_due_is_earliest_delayed_when_nothing_taken(
    queue: Queue, state: QueueState
) -> None:
    _, _, ts1 = await add(queue, "later", delay=60_000)
    _, _, ts2 = await add(queue, "sooner", delay=30_000)
    reply = await queue.scripts.move_to_active(1, "w:", 1000)
    assert s(reply) == [ts2 + 30_000, [], 0]
    assert await state.delayed() == [("sooner", ts2 + 30_000), ("later", ts1 + 60_000)]


async def test_next_due_is_zero_when_a_job_was_taken(queue: Queue, state: QueueState) -> None:
    await add(queue, "later", delay=60_000)
    await add(queue, "now")
    reply = await queue.scripts.move_to_active(1, "w:", 1000)
    assert reply[0] == 0
    assert [j for j, _ in fetched(reply[1])] == ["now"]


async def test_promotes_due_delayed_jobs_to_wait_and_prioritized(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "ready")
    _, _, ts_a = await add(queue, "a", delay=1)
    _, _, ts_p = await add(queue, "p", delay=1, priority=4)
    _, _, ts_l = await add(queue, "late", delay=60_000)
    await state.wait_until(max(ts_a, ts_p) + 1)
    await state.clear_marker()
    await state.clear_events()

    reply = await queue.scripts.move_to_active(0, "w:", 1000)  # n=0: only promote

    assert s(reply) == [0, [], 0]
    assert await state.wait() == ["ready", "a"]
    assert await state.prioritized() == [("p", prio(4, 1))]
    assert await state.delayed() == [("late", ts_l + 60_000)]
    assert await state.marker() == {"0": 0.0}
    assert sorted(await state.event_names()) == [("waiting", "a"), ("waiting", "p")]
    assert await state.active() == []


async def test_promoted_delayed_job_is_taken_in_the_same_call(
    queue: Queue, state: QueueState
) -> None:
    _, _, ts = await add(queue, "a", delay=1)
    await state.wait_until(ts + 1)
    await state.clear_events()

    jobs = await take(queue, 1, prefix="w:")

    assert [j for j, _ in jobs] == ["a"]
    assert token_parts(jobs[0][1]["tok"])[:3] == ("w:", 1, 0)
    assert await state.delayed() == []
    assert await state.wait() == []
    assert await state.event_names() == [("waiting", "a"), ("active", "a")]


async def test_paused_queue_takes_nothing_and_leaves_no_marker(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "w")
    await add(queue, "p", priority=1)
    _, _, ts = await add(queue, "d", delay=1)
    await queue.scripts.set_paused(True)
    await state.wait_until(ts + 1)
    await state.clear_marker()

    reply = await queue.scripts.move_to_active(5, "w:", 1000)

    assert s(reply) == [0, [], 0]
    assert await state.active() == []
    assert await state.wait() == ["w", "d"]  # the due job is still promoted
    assert await state.zids(queue.keys.prioritized) == ["p"]
    assert await state.marker() == {}
    assert (await state.job("w")).get("tok") is None


async def test_id_without_job_hash_is_dropped(queue: Queue, state: QueueState) -> None:
    await state.redis.rpush(queue.keys.wait, "ghost")
    await add(queue, "real")
    assert [j for j, _ in await take(queue, 2)] == ["real"]
    assert await state.zids(queue.keys.active) == ["real"]
    assert await state.wait() == []
    assert not await state.exists("ghost")


async def test_paused_queue_reports_the_next_due_time_so_its_workers_promote_on_time(
    queue: Queue, state: QueueState
) -> None:
    _, _, ts = await add(queue, "d", delay=60_000)
    await queue.scripts.set_paused(True)

    reply = await queue.scripts.move_to_active(5, "w:", 1000)

    assert s(reply) == [ts + 60_000, [], 0]
    assert await state.zids(queue.keys.delayed) == ["d"]


async def test_a_job_whose_key_is_not_a_hash_fails_alone(queue: Queue, state: QueueState) -> None:
    for _ in range(3):
        await add(queue)
    await state.redis.delete(queue.keys.job("2"))
    await state.redis.set(queue.keys.job("2"), "not a hash")
    await state.clear_events()

    jobs = fetched((await queue.scripts.move_to_active(3, "w:", 30_000))[1])

    assert [job_id for job_id, _ in jobs] == ["1", "3"]
    assert await state.zids(queue.keys.active) == ["1", "3"]
    assert set(await state.locks()) == {"1", "3"}
    assert await state.zids(queue.keys.failed) == ["2"]
    assert await state.redis.get(queue.keys.job("2")) == b"not a hash"  # left as found
    failed = [e for e in await state.events() if e["event"] == "failed"]
    assert failed == [{"event": "failed", "job_id": "2", "attempts_made": "0",
                       "failed_reason": "corrupt job: its key is a string, not a hash"}]


async def test_attempt_counts_that_are_not_numbers_count_as_zero(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "j")
    await state.redis.hset(queue.keys.job("j"), mapping={"ats": "many", "atm": "1.5"})

    [(_, fields)] = await take(queue)

    assert token_parts(fields["tok"])[1:3] == (1, 0)
    assert fields["ats"] == "1"
    assert fields["atm"] == "1.5"  # as stored: the worker fails the job for it


async def test_a_due_job_whose_priority_is_not_a_number_is_promoted_as_priority_0(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "a", delay=1)
    await add(queue, "b", delay=1)
    await state.redis.hset(queue.keys.job("a"), "prio", "high")
    await state.wait_until(int(dict(await state.delayed())["b"]) + 1)

    jobs = fetched((await queue.scripts.move_to_active(2, "w:", 30_000))[1])

    assert sorted(job_id for job_id, _ in jobs) == ["a", "b"]
    assert await state.delayed() == []

async def test_a_fetch_run_again_with_its_token_returns_the_same_jobs_and_takes_no_more(
    queue: Queue, state: QueueState
) -> None:
    """What redis-py's resend after a lost reply does (includes/calls.lua)."""
    for _ in range(3):
        await add(queue)
    first = await queue.scripts.move_to_active(2, "w:", 30_000, call="c-1")
    before = await state.snapshot()

    again = await queue.scripts.move_to_active(2, "w:", 30_000, call="c-1")

    assert s(again) == s(first)
    assert [job_id for job_id, _ in fetched(again[1])] == ["1", "2"]
    assert await state.snapshot() == before
    assert await state.wait() == ["3"]


async def test_a_fetch_run_again_leaves_out_a_job_it_no_longer_holds(
    queue: Queue, state: QueueState
) -> None:
    for _ in range(2):
        await add(queue)
    await queue.scripts.move_to_active(2, "w:", 30_000, call="c-1")
    await state.redis.hset(queue.keys.locks, "1", "other-worker:1:0:1")  # taken over

    again = await queue.scripts.move_to_active(2, "w:", 30_000, call="c-1")

    assert [job_id for job_id, _ in fetched(again[1])] == ["2"]
