"""A PNG of conveyor's dashboard, taken by Debian's chromium through Playwright
(the same browser the dashboard's own tests drive)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

__all__ = ["dashboard_screenshot"]


def dashboard_screenshot(url: str, path: Path, *, wait_for: str = "text=Queues") -> None:
    """Open the dashboard at ``url``, wait until ``wait_for`` shows, save a PNG at ``path``.

    Blocking (Playwright's sync API): call it from a thread in async code."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector(wait_for, timeout=15_000)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(path), full_page=False)
        finally:
            browser.close()
