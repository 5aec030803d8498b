"""The core imports without the web extra (pyproject: `conveyor[web]`).

Each check runs in a fresh interpreter, so what this session imported before
does not count.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import conveyor

# What `pip install conveyor[web]` adds, with the packages they bring along.
WEB_EXTRA = ("fastapi", "fastapi_offline", "uvicorn", "prometheus_client", "starlette")
# The modules that serve HTTP, and so need the extra: the web app (and the
# uvicorn server it runs under) and the demo, which serves the dashboard.
NEED_THE_EXTRA = ("conveyor.web", "conveyor.demo")

# A finder that makes the web extra's packages missing, as in a core install.
NOT_INSTALLED = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {WEB_EXTRA!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    src = Path(conveyor.__file__).parent.parent  # this checkout's code, not an installed one
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_importing_conveyor_does_not_import_the_web_extra() -> None:
    done = run_python(f"""
        import sys
        import conveyor, conveyor.sync
        print(sorted(m for m in sys.modules if m.partition(".")[0] in {WEB_EXTRA!r}))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_core_and_the_cli_import_when_the_web_extra_is_not_installed() -> None:
    done = run_python(NOT_INSTALLED + """
import conveyor, conveyor.sync, conveyor.cli
queue = conveyor.Queue("q", "redis://127.0.0.1:1")  # no connection made until a call
print(queue.name, conveyor.cli.main.name)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["q", "conveyor"]


def test_every_module_but_the_web_ones_imports_without_the_web_extra() -> None:
    done = run_python(NOT_INSTALLED + f"""
import importlib, pkgutil
import conveyor

for module in pkgutil.walk_packages(conveyor.__path__, "conveyor."):
    name = module.name
    if name == "conveyor.__main__" or name.startswith({NEED_THE_EXTRA!r}):
        continue
    try:
        importlib.import_module(name)
    except ImportError as exc:
        print(name, exc)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_finder_does_hide_the_web_extra() -> None:
    done = run_python(NOT_INSTALLED + "import conveyor.web\n")
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr
