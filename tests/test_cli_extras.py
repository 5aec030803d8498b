"""The CLI without the ``web`` extra: commands that need it say what to install,
in one line; the others run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXTRA = "needs the web extra: pip install 'conveyor[web]'"
#: Nothing listens there: a command that got as far as Redis would say so instead.
NOWHERE = "redis://127.0.0.1:1/0"


def cli_without(
    module: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``conveyor ARGS`` in a fresh interpreter where ``module`` cannot be imported,
    as if the extra that brings it were not installed."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from conveyor.cli import main\n"
        f"main({list(args)!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(cwd or ""), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
        cwd=cwd, check=False,
    )


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "prometheus_client"])
def test_dashboard_without_the_web_stack_says_which_extra_to_install(module: str) -> None:
    done = cli_without(module, "dashboard", "--redis", NOWHERE)
    assert done.returncode == 1
    assert done.stderr == f"Error: conveyor dashboard {EXTRA}\n"


def test_demo_without_fastapi_says_which_extra_to_install() -> None:
    done = cli_without("fastapi", "demo", "--seconds", "1")
    assert done.returncode == 1
    assert done.stderr == f"Error: conveyor demo {EXTRA}\n"


def test_worker_metrics_without_prometheus_client_says_which_extra_to_install(
    tmp_path: Path,
) -> None:
    (tmp_path / "extras_app.py").write_text(
        "from conveyor.app import Conveyor\n"
        f"app = Conveyor({NOWHERE!r})\n"
        "@app.task(queue='q')\n"
        "def noop() -> None: ...\n"
    )
    done = cli_without(
        "prometheus_client", "worker", "extras_app:app", "--metrics-port", "1", cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"Error: conveyor worker --metrics-port {EXTRA}"


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "prometheus_client"])
def test_commands_that_need_no_web_stack_run_without_it(module: str) -> None:
    helped = cli_without(module, "--help")
    assert helped.returncode == 0 and "dashboard" in helped.stdout
    # stats gets as far as Redis (nobody there): the web stack was never needed.
    done = cli_without(module, "stats", "--redis", NOWHERE)
    assert done.returncode == 1
    assert "needs the web extra" not in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("Error: ")
