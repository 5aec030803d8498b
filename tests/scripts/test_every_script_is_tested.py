"""Each Lua script has its own test file here, test_script_<name>.py."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def test_every_script_has_a_test_file() -> None:
    scripts = {
        entry.name.removesuffix(".lua")
        for entry in files("conveyor.scripts").iterdir()
        if entry.name.endswith(".lua")
    }
    here = Path(__file__).parent
    untested = sorted(n for n in scripts if not (here / f"test_script_{n}.py").exists())
    assert scripts and untested == []
