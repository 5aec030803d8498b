"""read_summaries.lua: a list's fields of each job, user-sized ones cut, nothing written."""

from __future__ import annotations

from script_support import QueueState, add, finish, outcome, s, take

from conveyor import Queue

CUT = 8


async def test_a_job_s_listed_fields_with_their_whole_lengths(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "short", name="mail", data=b'"a big data field, never read"')
    await state.redis.hset(queue.keys.job("short"), "pr", b"42")
    before = await state.snapshot()
    [reply] = await queue.scripts.read_summaries(["short"], CUT)
    name, ts, atm, opts, pon, fon, pr, fr, lock, name_n, pr_n, fr_n = s(reply)
    assert (name, atm, pr, fr, lock, pon, fon) == ("mail", None, "42", None, None, None, None)
    assert int(ts) > 0 and opts == "{}"
    assert (name_n, pr_n, fr_n) == (4, 2, 0)
    assert b"never read" not in str(reply).encode()
    assert await state.snapshot() == before


async def test_user_sized_fields_are_cut_to_the_preview(queue: Queue, state: QueueState) -> None:
    await add(queue, "big", name="n" * 20)
    [(_, fields)] = await take(queue)
    await state.redis.hset(queue.keys.job("big"), "pr", b'{"x": "' + b"p" * 100 + b'"}')
    [reply] = await queue.scripts.read_summaries(["big"], CUT)
    assert s(reply[8]) == fields["tok"]  # running: the lock's token
    await finish(queue, outcome("big", fields["tok"], "f", "r" * 50, "stack", -1))
    [reply] = await queue.scripts.read_summaries(["big"], CUT)
    name, _, atm, _, pon, fon, pr, fr, lock, name_n, pr_n, fr_n = s(reply)
    assert (name, pr, fr) == ("n" * CUT, '{"x": "p', "r" * CUT)
    assert (name_n, pr_n, fr_n) == (20, 109, 50)
    assert atm == "1" and pon is not None and fon is not None and lock is None


async def test_missing_jobs_and_keys_that_are_not_hashes(
    queue: Queue, state: QueueState
) -> None:
    await add(queue, "ok")
    await state.redis.set(queue.keys.job("str"), "not a hash")
    replies = await queue.scripts.read_summaries(["gone", "str", "ok"], CUT)
    assert replies[0] == 0 and replies[1] == b"string"
    assert s(replies[2][0]) == "job"
