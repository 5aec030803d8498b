"""``Conveyor.schedule``: one way to declare a schedule; ``cron`` and ``every`` are its aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from conveyor import ValidationError
from conveyor.app import Conveyor


@pytest.fixture
async def app(redis_url: str) -> AsyncIterator[Conveyor]:
    async with Conveyor(redis_url) as app:
        yield app


async def test_schedule_takes_cron_or_every_as_the_aliases_do(
    app: Conveyor, queue_name: str
) -> None:
    @app.schedule(cron="0 9 * * *", tz="Europe/Berlin")
    @app.task(queue=queue_name)
    async def daily_report() -> None:
        return None

    @app.schedule(every=timedelta(seconds=5), queue=queue_name, kwargs={"n": 1}, attempts=2)
    def tick(n: int) -> int:
        return n

    @app.cron("0 9 * * *", tz="Europe/Berlin", scheduler_id="daily-alias")
    @app.every(5000, kwargs={"n": 1}, attempts=2, scheduler_id="tick-alias")
    @app.task(queue=queue_name)
    def both(n: int = 0) -> int:
        return n

    await app.upsert_schedulers()
    queue = app.queue(queue_name)
    found = {s.id: s for s in await queue.get_job_schedulers()}
    assert set(found) == {"daily_report", "tick", "daily-alias", "tick-alias"}
    for sid in ("daily_report", "daily-alias"):
        assert (found[sid].cron, found[sid].tz, found[sid].every) == (
            "0 9 * * *", "Europe/Berlin", None
        )
    for sid in ("tick", "tick-alias"):
        assert found[sid].every == 5000 and found[sid].cron is None
        assert found[sid].data == {"n": 1} and found[sid].opts.attempts == 2
    assert app.get_task(queue_name, "tick") is tick


def test_schedule_needs_exactly_one_of_cron_and_every(app: Conveyor) -> None:
    for timing in ({}, {"cron": "0 9 * * *", "every": 1000}):
        with pytest.raises(ValidationError, match="exactly one of every= and cron=") as refused:
            app.schedule(**timing)  # type: ignore[arg-type]
        assert refused.value.field == "every"
