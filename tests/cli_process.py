"""Running ``conveyor`` as a user does, in a subprocess of the venv's
interpreter (``python -m conveyor``), from asyncio tests that also run workers."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

import orjson

#: Nothing listens there: a command that tries to connect says so.
NOWHERE = "redis://127.0.0.1:1/0"


@dataclass
class Done:
    """A finished ``conveyor`` process."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return orjson.loads(self.out)

    def one_error_line(self) -> str:
        """The single ``Error: ...`` line a mistake prints on stderr (no traceback)."""
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), self.err
        return lines[0]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", *args]


def environment() -> dict[str, str]:
    """This environment without a Redis URL of its own: every call passes --redis."""
    return {k: v for k, v in os.environ.items() if k != "CONVEYOR_REDIS_URL"}


async def conveyor(*args: str, stdin: Any = asyncio.subprocess.DEVNULL,
                   timeout: float = 60) -> Done:
    """Run ``conveyor ARGS`` to its end."""
    proc = await asyncio.create_subprocess_exec(
        *command(*args), stdin=stdin, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=environment())
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())
