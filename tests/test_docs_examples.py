"""The documentation's runnable code blocks, each run against the private Redis.

A fenced ``python`` block in README.md or docs/**/*.md runs here when the line
before its fence is the HTML comment ``<!-- runnable -->`` (invisible on
GitHub and in the site). ``<!-- runnable: continue -->`` runs a block in the
namespace of the runnable block before it on the same page, so a tutorial can
build up step by step. ``<!-- runnable: file shop/tasks.py -->`` writes a
block to that path in a temporary directory on ``sys.path`` instead of running
it (and joins the page's current group), so a page can show an application's
files and import them. A block may ``await`` at top level; the URL
``redis://localhost:6379/0`` in it is replaced by the test server's, so what
readers copy is what runs. A renamed argument or a changed return value then
fails here, not in a reader's terminal. Queues, flow producers, event
readers, apps and inspectors a page leaves open are closed after it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, FlowProducer, Queue, QueueEvents
from conveyor.inspect import Inspector

ROOT = Path(__file__).resolve().parent.parent
DOC_URL = "redis://localhost:6379/0"
MARKER = re.compile(
    r"^<!--\s*runnable(?::\s*(?:(?P<continue>continue)|file\s+(?P<file>[\w/.-]+\.py)))?\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)")
BLOCK_SECONDS = 60
CLOSED_AFTER_A_PAGE = (Queue, FlowProducer, QueueEvents, Conveyor, Inspector)


@dataclass
class Block:
    path: Path
    name: str          # the path shown in test ids and errors
    line: int          # 1-based line of the opening fence
    source: str
    file: str | None = None   # written to this path, not run


@dataclass
class Group:
    """Runnable blocks of one page that share a namespace."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        first = self.blocks[0]
        return f"{first.name}:{first.line}"


def documentation_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def runnable_groups(path: Path, root: Path = ROOT) -> list[Group]:
    """The runnable blocks of one Markdown file, grouped by ``continue``."""
    name = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    groups: list[Group] = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        if not marker:
            i += 1
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence or fence["lang"] != "python":
            raise AssertionError(
                f"{name}:{i + 1}: a runnable marker must sit on the line "
                "right before a ```python fence")
        indent = len(fence["indent"])
        body: list[str] = []
        j = i + 2
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{name}:{i + 2}: unclosed code block")
        block = Block(path, name, i + 2, "\n".join(body) + "\n", marker["file"])
        if marker["file"] and groups:
            groups[-1].blocks.append(block)
        elif marker["continue"]:
            if not groups:
                raise AssertionError(
                    f"{name}:{i + 1}: 'runnable: continue' with no "
                    "runnable block before it")
            groups[-1].blocks.append(block)
        else:
            groups.append(Group([block]))
        i = j + 1
    return groups


def all_groups() -> list[Group]:
    return [group for path in documentation_files() for group in runnable_groups(path)]


GROUPS = all_groups()


async def run_group(group: Group, redis_url: str, files: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    try:
        await run_blocks(group, namespace, redis_url, files)
    finally:
        # A page may open a Queue in one block and use it in the next without
        # closing it, as a reader's session would: close what is left open.
        for value in list(namespace.values()):
            if isinstance(value, CLOSED_AFTER_A_PAGE):
                await value.close()


async def run_blocks(group: Group, namespace: dict[str, Any], redis_url: str,
                     files: Path) -> None:
    for block in group.blocks:
        source = block.source.replace(DOC_URL, redis_url)
        if block.file:
            target = files / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            for package in target.relative_to(files).parents:
                (files / package / "__init__.py").touch()
            target.write_text(source, encoding="utf-8")
            continue
        # Line numbers in a traceback are the Markdown file's.
        tree = ast.parse(source, str(block.path), "exec")
        ast.increment_lineno(tree, block.line)
        code = compile(tree, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # noqa: S307 -- the documentation's own code
        if inspect.iscoroutine(result):
            await asyncio.wait_for(result, BLOCK_SECONDS)


@pytest.mark.parametrize("group", GROUPS, ids=[group.id for group in GROUPS])
def test_runnable_block_runs(group: Group, redis_url: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    try:
        asyncio.run(run_group(group, redis_url, tmp_path))
    finally:
        sys.path.remove(str(tmp_path))
        # The page's own modules (shop.tasks...) must not leak into the next page.
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
                del sys.modules[name]


def test_the_readme_and_the_tutorial_have_runnable_blocks() -> None:
    pages = {group.blocks[0].name for group in GROUPS}
    assert {"README.md", "docs/tutorial.md"} <= pages


def test_a_marker_without_a_python_block_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- runnable -->\n```sh\necho hi\n```\n")
    with pytest.raises(AssertionError, match="right before a ```python fence"):
        runnable_groups(page, tmp_path)


def test_a_failing_block_fails_with_the_markdown_line(tmp_path: Path, redis_url: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# page\n\n<!-- runnable -->\n```python\nfrom conveyor import Queue\n"
        f"queue = Queue('q', '{DOC_URL}', no_such_option=1)\n```\n")
    (group,) = runnable_groups(page, tmp_path)
    with pytest.raises(TypeError, match="no_such_option") as failure:
        asyncio.run(run_group(group, redis_url, tmp_path))
    assert any(entry.lineno + 1 == 6 for entry in failure.traceback)
