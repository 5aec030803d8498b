"""add_jobs.lua: ids, the existing-id no-op, where a job lands, markers and events,
one job at a time and in batches."""

from __future__ import annotations

import pytest
from script_support import QueueState, add, prio, s, take

from conveyor import Queue
from conveyor._scripts import NewJob
from conveyor._scripts.fetch import new_job_args
from conveyor.options import MAX_PRIORITY


async def test_generated_ids_increase_and_hash_is_written(queue: Queue, state: QueueState) -> None:
    before = await state.now()
    replies = [await add(queue, name=f"n{i}", attempts=3) for i in range(3)]
    after = await state.now()

    assert [r[0] for r in replies] == ["1", "2", "3"]
    assert all(created == 1 for _, created, _ in replies)
    assert [r[2] for r in replies] == sorted(r[2] for r in replies)
    assert before <= replies[0][2] and replies[-1][2] <= after
    assert await state.redis.get(queue.keys.id) == b"3"

    _, _, ts = replies[0]
    assert await state.job("1") == {
        "name": "n0",
        "data": '{"x":1}',
        "opts": "{}",
        "ts": str(ts),
        "att": "3",
    }


async def test_generated_ids_skip_taken_ids(queue: Queue, state: QueueState) -> None:
    assert (await add(queue, "2"))[:2] == ("2", 1)
    assert (await add(queue, "3"))[:2] == ("3", 1)

    assert (await add(queue))[0] == "1"
    assert (await add(queue))[0] == "4"  # 2 and 3 are taken
    assert (await add(queue))[0] == "5"
    assert await state.redis.get(queue.keys.id) == b"5"
    assert await state.wait() == ["2", "3", "1", "4", "5"]


async def test_existing_custom_id_returns_it_and_changes_nothing(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "abc", name="first", data=b"1")
    await state.clear_events()
    before = await state.snapshot()

    for kwargs in ({}, {"delay": 5000}, {"priority": 3}, {"lifo": True}):
        reply = await queue.scripts.add_job(
            "abc",
            "second",
            b"2",
            b"{}",
            kwargs.get("delay", 0),
            kwargs.get("priority", 0),
            kwargs.get("lifo", False),
            5,
        )
        assert s(reply) == ["abc", 0, 0]

    assert await state.event_names() == [("duplicated", "abc")] * 4
    await state.clear_events()
    assert await state.snapshot() == before
    assert (await state.job("abc"))["name"] == "first"


async def test_existing_generated_id_given_as_custom_id_is_a_noop(
    queue: Queue, state: QueueState
) -> None:
    job_id, _, _ = await add(queue)
    await state.clear_events()
    before = await state.snapshot()
    assert await add(queue, job_id) == (job_id, 0, 0)
    assert await state.event_names() == [("duplicated", job_id)]
    await state.clear_events()
    assert await state.snapshot() == before


async def test_plain_job_goes_to_wait_tail_sets_marker_and_emits_added(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, name="a")
    await add(queue, name="b")

    assert await state.wait() == ["1", "2"]
    assert await state.prioritized() == []
    assert await state.delayed() == []
    assert await state.marker() == {"0": 0.0}
    assert await state.events() == [  # state: read as a waiting event (conveyor._stream)
        {"event": "added", "job_id": "1", "name": "a", "state": "waiting"},
        {"event": "added", "job_id": "2", "name": "b", "state": "waiting"},
    ]


async def test_lifo_goes_to_head_of_wait(queue: Queue, state: QueueState) -> None:
    await add(queue)
    await add(queue)
    await add(queue, lifo=True)
    assert await state.wait() == ["3", "1", "2"]


async def test_priority_packs_priority_and_sequence(queue: Queue, state: QueueState) -> None:
    await add(queue, "a", priority=5)
    await add(queue, "b", priority=1)
    await add(queue, "c", priority=5)
    await add(queue, "d", priority=1, lifo=True)  # lifo does not apply to prioritized jobs
    await add(queue, "plain")

    assert await state.prioritized() == [
        ("b", prio(1, 2)),
        ("d", prio(1, 4)),
        ("a", prio(5, 1)),
        ("c", prio(5, 3)),
    ]
    assert await state.redis.get(queue.keys.priority_counter) == b"4"
    assert await state.wait() == ["plain"]
    assert (await state.job("a"))["prio"] == "5"
    assert await state.marker() == {"0": 0.0}


async def test_largest_priority_keeps_exact_score(queue: Queue, state: QueueState) -> None:
    await add(queue, "top", priority=MAX_PRIORITY)
    await add(queue, "low", priority=1)
    assert await state.prioritized() == [
        ("low", prio(1, 2)),
        ("top", prio(MAX_PRIORITY, 1)),
    ]
    assert (await state.job("top"))["prio"] == str(MAX_PRIORITY)


async def test_delay_goes_to_delayed_with_due_score_and_d_marker(
    queue: Queue, state: QueueState
) -> None:
    job_id, created, ts = await add(queue, name="later", delay=5000)

    assert created == 1
    assert await state.delayed() == [(job_id, ts + 5000)]
    assert await state.wait() == []
    assert await state.prioritized() == []
    assert await state.marker() == {"d": ts + 5000}  # no "0": nothing is ready
    assert await state.events() == [
        {"event": "added", "job_id": job_id, "name": "later"},
        {"event": "delayed", "job_id": job_id, "delay": str(ts + 5000)},
    ]


async def test_delayed_prioritized_job_waits_in_delayed(queue: Queue, state: QueueState) -> None:
    _, _, ts = await add(queue, "p", delay=5000, priority=2)
    assert await state.delayed() == [("p", ts + 5000)]
    assert await state.prioritized() == []
    assert await state.redis.get(queue.keys.priority_counter) is None


async def test_d_marker_only_moves_earlier(queue: Queue, state: QueueState) -> None:
    _, _, ts1 = await add(queue, "a", delay=10_000)
    assert await state.marker() == {"d": ts1 + 10_000}

    _, _, ts2 = await add(queue, "b", delay=5000)
    assert await state.marker() == {"d": ts2 + 5000}

    await add(queue, "c", delay=20_000)
    assert await state.marker() == {"d": ts2 + 5000}
    assert await state.zids(queue.keys.delayed) == ["b", "a", "c"]


async def test_paused_queue_add_lands_without_marker(queue: Queue, state: QueueState) -> None:
    await queue.scripts.set_paused(True)
    await add(queue, "plain")
    await add(queue, "prio", priority=1)

    assert await state.wait() == ["plain"]
    assert await state.zids(queue.keys.prioritized) == ["prio"]
    assert await state.marker() == {}


async def test_adds_in_one_transaction(queue: Queue, state: QueueState) -> None:
    async with state.redis.pipeline(transaction=True) as pipe:
        await queue.scripts.add_jobs(pipe, [_job("", "a"), _job("", "b")])
        await queue.scripts.add_jobs(pipe, [_job("a-custom", "c")])
        replies = [r for part in await pipe.execute() for r in part]

    assert [s(r)[:2] for r in replies] == [["1", 1], ["2", 1], ["a-custom", 1]]
    assert await state.wait() == ["1", "2", "a-custom"]


def _job(
    job_id: str, name: str, *, delay: int = 0, priority: int = 0, lifo: bool = False
) -> NewJob:
    return new_job_args(job_id, name, b"null", b"{}", delay, priority, lifo)


async def test_a_batch_lands_as_if_added_one_by_one(
    queue: Queue, state: QueueState, redis_url: str
) -> None:
    batch = [
        _job("", "p1"),
        _job("", "l1", lifo=True),
        _job("", "prio5", priority=5),
        _job("", "p2"),
        _job("", "d", delay=60_000),
        _job("", "l2", lifo=True),
        _job("", "prio1", priority=1),
        _job("", "prio5b", priority=5),
    ]
    replies = s(await queue.scripts.add_jobs(None, batch))
    assert [r[:2] for r in replies] == [[str(i), 1] for i in range(1, 9)]

    # the same jobs one by one, on a second queue
    other = Queue(queue.name + "-one-by-one", redis_url)
    try:
        for job in batch:
            await other.scripts.add_jobs(None, [job])
        one_by_one = QueueState(state.redis, other)
        assert await state.wait() == await one_by_one.wait() == ["6", "2", "1", "4"]
        assert await state.zids(queue.keys.prioritized) == ["7", "3", "8"]
        assert await state.zids(queue.keys.prioritized) == await one_by_one.zids(
            other.keys.prioritized
        )
        assert await state.zids(queue.keys.delayed) == ["5"]
        marker = await state.marker()
        assert marker["0"] == 0 and marker["d"] == (await state.delayed())[0][1]
    finally:
        await other.close()


async def test_a_batch_writes_one_event_entry_per_kind(queue: Queue, state: QueueState) -> None:
    await queue.scripts.add_jobs(
        None, [_job("a", "x"), _job("b", "y", delay=5000), _job("c", "z", delay=5000)]
    )

    entries = await state.entries()
    assert [e["event"] for e in entries] == ["added", "delayed"]
    assert [(e["event"], e["job_id"]) for e in await state.events()] == [
        ("added", "a"), ("added", "b"), ("added", "c"), ("delayed", "b"), ("delayed", "c"),
    ]


async def test_duplicate_ids_in_one_batch_add_the_first(queue: Queue, state: QueueState) -> None:
    replies = s(await queue.scripts.add_jobs(None, [_job("dup", "first"), _job("dup", "second")]))

    assert [r[:2] for r in replies] == [["dup", 1], ["dup", 0]]
    assert (await state.job("dup"))["name"] == "first"
    assert await state.wait() == ["dup"]


async def test_only_non_default_fields_are_stored(queue: Queue, state: QueueState) -> None:
    await queue.scripts.add_job("plain", "n", b"1", b"{}", 0, 0, False, 1)
    await queue.scripts.add_job("custom", "n", b"1", b"{}", 0, 4, False, 3)

    assert set(await state.job("plain")) == {"name", "data", "opts", "ts"}
    custom = await state.job("custom")
    assert (custom["prio"], custom["att"]) == ("4", "3")


async def test_delayed_jobs_of_one_batch_due_in_the_same_ms_are_taken_in_the_order_added(
    queue: Queue, state: QueueState
) -> None:
    ids = [str(i) for i in range(1, 26)]  # as text "10" sorts before "2"
    replies = s(await queue.scripts.add_jobs(None, [_job(i, i, delay=50) for i in ids]))
    ts = {int(r[2]) for r in replies}
    assert len(ts) == 1  # one script, one clock: every job is due in the same ms
    await state.wait_until(ts.pop() + 50)

    assert [job_id for job_id, _ in await take(queue, 25)] == ids


async def test_delayed_jobs_added_one_by_one_and_due_in_the_same_ms_are_taken_in_the_order_added(
    queue: Queue, state: QueueState
) -> None:
    # 25 adds in one transaction run back to back; retry until at least two of
    # them (in practice most) read the same ms, so the order is decided by the tie.
    for attempt in range(20):
        ids = [f"{attempt}-{i}" for i in range(25)]  # as text "x-10" sorts before "x-2"
        async with state.redis.pipeline(transaction=True) as pipe:
            for job_id in ids:
                await queue.scripts.add_jobs(pipe, [_job(job_id, job_id, delay=50)])
            replies = [s(part[0]) for part in await pipe.execute()]
        stamps = [int(r[2]) for r in replies]
        if len(set(stamps)) < len(stamps):
            break
        await queue.drain(delayed=True)
    else:
        pytest.fail("no two adds of a transaction shared a ms")
    await state.wait_until(max(stamps) + 50)

    assert [job_id for job_id, _ in await take(queue, 25)] == ids


async def test_a_due_time_past_the_exact_range_is_kept_as_its_last_ms_in_order(
    queue: Queue, state: QueueState
) -> None:
    last_ms = 2**43 - 1  # due * 1024 + 1023 is the largest score a double holds exactly
    replies = s(await queue.scripts.add_jobs(None, [_job("a", "a", delay=2**60),
                                                     _job("b", "b", delay=2**60)]))
    assert [r[1] for r in replies] == [1, 1]
    assert await state.delayed_scores() == [("a", last_ms * 1024), ("b", last_ms * 1024 + 1)]
    assert await state.delayed() == [("a", last_ms), ("b", last_ms)]
    assert await state.marker() == {"d": last_ms}
    assert await state.events() == [
        {"event": "added", "job_id": "a", "name": "a"},
        {"event": "added", "job_id": "b", "name": "b"},
        {"event": "delayed", "job_id": "a", "delay": str(last_ms)},
        {"event": "delayed", "job_id": "b", "delay": str(last_ms)},
    ]

async def test_a_call_run_again_with_its_token_returns_its_first_reply_and_adds_nothing(
    queue: Queue, state: QueueState
) -> None:
    """What redis-py's resend after a lost reply does (includes/calls.lua)."""
    scripts = queue.scripts
    keys, args = scripts.add_jobs_layout([_job("", "a"), _job("given", "b")], "tok-1")
    first = s(await scripts.call("add_jobs", keys, args))
    before = await state.snapshot()
    record = queue.keys.base + "call:tok-1"
    assert 0 < await state.redis.pttl(record) <= 300_000

    again = s(await scripts.call("add_jobs", keys, args))

    assert again == first
    assert [reply[:2] for reply in first] == [["1", 1], ["given", 1]]
    assert await state.snapshot() == before
    # Once 16 calls are answered, the next call names them: their records go.
    for i in range(1, 17):
        scripts.calls.answered(f"tok-{i}")
    await scripts.add_jobs(None, [_job("other", "c")])
    assert not await state.redis.exists(record)


async def test_an_add_of_given_ids_only_records_no_reply(
    queue: Queue, state: QueueState
) -> None:
    await queue.scripts.add_jobs(None, [_job("x", "a")])
    assert await state.redis.keys(queue.keys.base + "call:*") == []


async def test_a_job_redis_refuses_gets_an_error_reply_and_its_batch_is_added(
    queue: Queue, state: QueueState
) -> None:
    await state.redis.rpush(queue.keys.deduplication("bad"), "x")  # a key of the wrong type
    refused = new_job_args("", "refused", b"null", b"{}", dedup="0:0:0:bad")
    replies = s(await queue.scripts.add_jobs(None, [_job("", "a"), refused, _job("", "b")]))

    assert [r[:2] for r in replies[::2]] == [["1", 1], ["2", 1]]
    assert replies[1][:2] == ["", -1] and replies[1][2].startswith("WRONGTYPE")
    assert await state.wait() == ["1", "2"]
    assert [(e["event"], e["job_id"]) for e in await state.events()] == [
        ("added", "1"), ("added", "2"),
    ]


async def test_a_batch_of_generated_ids_skips_ids_taken_before_it_and_within_it(
    queue: Queue, state: QueueState
) -> None:
    """The batch reserves its ids with one INCRBY; a taken one is skipped as one
    INCR per job would skip it, past the reserved ones too."""
    assert (await add(queue, "3"))[:2] == ("3", 1)
    batch = [_job("", "a"), _job("2", "b"), _job("", "c"), _job("", "d")]

    replies = s(await queue.scripts.add_jobs(None, batch))

    assert [r[:2] for r in replies] == [["1", 1], ["2", 1], ["4", 1], ["5", 1]]
    assert await state.redis.get(queue.keys.id) == b"5"
    assert await state.wait() == ["3", "1", "2", "4", "5"]


async def test_an_id_past_the_reserved_ones_is_checked_even_when_those_were_free(
    queue: Queue, state: QueueState
) -> None:
    # Reserved: 1 and 2, both free; "2" is given in the batch, so the second
    # generated job goes past them, to 3 (taken, not among those checked) then 4.
    assert (await add(queue, "3"))[:2] == ("3", 1)

    replies = s(await queue.scripts.add_jobs(None, [_job("", "a"), _job("2", "b"), _job("", "c")]))

    assert [r[:2] for r in replies] == [["1", 1], ["2", 1], ["4", 1]]
    assert (await state.job("3"))["name"] != "c"


async def test_a_batch_costs_one_hset_per_job_and_a_few_commands_besides(
    queue: Queue, state: QueueState
) -> None:
    async def calls() -> dict[str, int]:
        info = await state.redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}

    await queue.scripts.add_jobs(None, [_job("", "warm")])
    before = await calls()
    await queue.scripts.add_jobs(None, [_job("", f"j{i}") for i in range(50)])
    after = await calls()

    made = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert made.pop("hset") == 51  # 50 jobs and the call's record
    assert made.pop("info") == 1
    assert made == {"evalsha": 1, "time": 1, "incrby": 1, "exists": 1, "rpush": 1, "zadd": 1,
                    "hexists": 1, "xadd": 1, "hget": 1}
