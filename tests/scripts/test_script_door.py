"""One door to the scripts: no module of the package calls a script by hand, and
every refusal code in errors.SCRIPT_ERRORS is one its script documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import conveyor
from conveyor.errors import SCRIPT_ERRORS, ConveyorError, JobNotFoundError, script_error
from conveyor.scripts import SCRIPT_NAMES

PACKAGE = Path(conveyor.__file__).parent
#: Ways to run a script without a typed method of conveyor._scripts.
BY_HAND = re.compile(r"scripts\.call\(|\.evalsha\(|\.register_script\(|\.fcall\(")
#: conveyor.sync adds jobs on a blocking client: it registers add_jobs there, and
#: takes KEYS and ARGV from Scripts.add_jobs_layout.
ALLOWED = {("sync.py", ".register_script(")}


def _header(script: str) -> str:
    source = (PACKAGE / "scripts" / f"{script}.lua").read_text(encoding="utf-8")
    return source[: source.index("]]")]


def test_no_module_outside_the_door_calls_a_script() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "_scripts":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in BY_HAND.finditer(line):
                if (str(relative), match.group()) not in ALLOWED:
                    found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []


@pytest.mark.parametrize(("script", "code"), sorted(SCRIPT_ERRORS))
def test_each_refusal_is_a_code_its_script_documents(script: str, code: int) -> None:
    assert script in SCRIPT_NAMES
    returns = _header(script).split("Returns", 1)[1]
    assert re.search(rf"(?<![\w-]){code}(?![\w.])", returns), returns


@pytest.mark.parametrize(("script", "code"), sorted(SCRIPT_ERRORS))
def test_each_refusal_builds_its_error_naming_the_job(script: str, code: int) -> None:
    error = script_error(script, code, "mail", "j-1", state="waiting", path="children[0]")
    assert isinstance(error, ConveyorError)
    named = "mail" if script == "obliterate" else "j-1"
    assert named in str(error)
    if isinstance(error, JobNotFoundError):
        assert (error.queue, error.job_id) == ("mail", "j-1")


def test_a_code_that_is_no_refusal_builds_nothing() -> None:
    assert script_error("remove_job", 1, "mail", "j-1") is None
    assert script_error("cancel_job", -1, "mail", "j-1") is None  # already finished: False
