"""The README stays a front page: under 8 KB, and every link it has points at
a file of the repository (the site's own links are checked by
`mkdocs build --strict` in make test)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_a_front_page_under_8_kb() -> None:
    assert len(README.read_bytes()) < 8 * 1024


def test_every_readme_link_points_at_a_file() -> None:
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    assert "docs/tutorial.md" in targets
    missing = [t for t in targets if not (ROOT / t).is_file()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_docs_page_is_in_the_nav() -> None:
    """Pages outside the nav are only those other branches add to docs/new/."""
    nav = set(re.findall(r"([\w/-]+\.md)", (ROOT / "mkdocs.yml").read_text()))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    outside = {p for p in pages - nav if not p.startswith("new/")}
    assert not outside, f"pages missing from mkdocs.yml's nav: {sorted(outside)}"
