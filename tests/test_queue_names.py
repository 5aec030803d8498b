"""Queue names refuse what cannot be seen or reached: control characters,
invisible format characters (so ``email`` and ``email\\u200b`` cannot both
exist), line separators, private-use and unassigned code points, and '/'
(which no REST path can carry); at every door that takes a queue name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from conveyor import ConveyorError, FlowProducer, Queue, QueueEvents, ValidationError, Worker
from conveyor.app import Conveyor
from conveyor.cli import main
from conveyor.inspection import Inspector
from conveyor.web import create_app
from web_support import api_client

REFUSED = {
    "email\u200b": "U+200B (ZERO WIDTH SPACE)",
    "email\u202e": "U+202E (RIGHT-TO-LEFT OVERRIDE)",
    "\u2066email": "U+2066 (LEFT-TO-RIGHT ISOLATE)",
    "em\u00adail": "U+00AD (SOFT HYPHEN)",
    "email\ufeff": "U+FEFF (ZERO WIDTH NO-BREAK SPACE)",
    "email\U000e0041": "U+E0041 (TAG LATIN CAPITAL LETTER A)",
    "email\x1b[31m": "U+001B",
    "email\x00": "U+0000",
    "email\x7f": "U+007F",
    "email\x9b": "U+009B",
    "email\u2028": "U+2028 (LINE SEPARATOR)",
    "email\u00a0": "U+00A0 (NO-BREAK SPACE)",
    "email\ue000": "U+E000",  # private use
    "email\u0378": "U+0378",  # unassigned
    "reports/2026": "'/'",
    "a:b": "':'",
    "a b": "U+0020 (SPACE)",
}
ACCEPTED = ["email", "café", "队列", "emails-😀", "a.b-c_d", "A" * 200]


async def _noop(job: Any) -> None:
    return None


@pytest.mark.parametrize(("name", "char"), list(REFUSED.items()), ids=list(map(ascii, REFUSED)))
def test_a_queue_name_with_a_refused_character_says_which(name: str, char: str) -> None:
    with pytest.raises(ValidationError) as info:
        Queue(name)
    assert info.value.field == "name"
    assert f"may not contain {char}" in str(info.value)


@pytest.mark.parametrize("name", ACCEPTED)
async def test_visible_names_in_any_script_are_accepted(redis_url: str, name: str) -> None:
    async with Queue(name, redis_url) as queue:
        job = await queue.add("x")
        assert await queue.get_job_state(job.id) == "waiting"


async def test_email_and_email_with_a_zero_width_space_cannot_both_exist(redis_url: str) -> None:
    async with Queue("email", redis_url) as queue:
        await queue.add("x")
    with pytest.raises(ValidationError):
        Queue("email\u200b", redis_url)


#: Each door that takes a queue name, and the field its refusal names.
DOORS: list[tuple[str, Callable[[str, str], Any], str]] = [
    ("Worker", lambda url, name: Worker(name, _noop, connection=url), "name"),
    ("QueueEvents", lambda url, name: QueueEvents(name, url), "name"),
    ("Inspector", lambda url, name: Inspector(url, queues=[name]), "name"),
    ("create_app", lambda url, name: create_app(url, queues=[name]), "name"),
    ("Conveyor.task", lambda url, name: Conveyor(url).task(queue=name)(_noop), "queue"),
    ("Conveyor default_queue", lambda url, name: Conveyor(url, default_queue=name), "queue"),
    ("dead_letter_queue", lambda url, name: Queue(
        "ok", url, default_job_options={"dead_letter_queue": name}), "dead_letter_queue"),
]


@pytest.mark.parametrize(("door", "make", "field"), DOORS, ids=[d[0] for d in DOORS])
def test_every_door_refuses_an_invisible_character(
    redis_url: str, door: str, make: Callable[[str, str], Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        make(redis_url, "email\u200b")
    assert info.value.field == field
    assert "U+200B" in str(info.value)


async def test_a_flow_child_on_an_invisible_queue_is_refused(redis_url: str) -> None:
    async with FlowProducer(redis_url) as flows:
        with pytest.raises(ValidationError) as info:
            await flows.add({"name": "parent", "queue_name": "ok", "children": [
                {"name": "child", "queue_name": "email\u202e"}]})
    assert info.value.field == "children[0].queue_name"


async def test_the_rest_api_refuses_an_invisible_queue_name(redis_url: str) -> None:
    async with api_client(redis_url) as client:
        response = await client.post("/api/v1/queues/email%E2%80%8B/jobs",
                                     json={"name": "x", "data": {}})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["success"] is False
    assert "U+200B" in response.text


@pytest.mark.parametrize("argv", [["enqueue", "email\u200b", "x"], ["stats", "email\u202e"],
                                  ["jobs", "list", "reports/2026"]])
def test_the_cli_refuses_an_invisible_queue_name_in_one_line(
    redis_url: str, argv: list[str]
) -> None:
    result = CliRunner().invoke(main, [*argv, "--redis", redis_url])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    # Adding says why; reading finds no such queue (none can exist).
    assert ("may not contain" if argv[0] == "enqueue" else "not found") in lines[0]
    assert not isinstance(result.exception, ConveyorError)  # handled, not raised
