"""What the browser tests share: Debian's chromium driven by Playwright's sync
API, a fresh page per test, and dashboards mounted under paths of one app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright

from dashboard_server import AppFactory, DashboardServer

CHROMIUM = Path("/usr/bin/chromium")

#: Mark a browser test module with ``pytestmark = needs_chromium``.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium"
)

#: Collects every Content-Security-Policy violation of the page in window.__csp.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@contextmanager
def chromium(*args: str) -> Iterator[Browser]:
    """A headless chromium, started with ``args`` besides ``--no-sandbox``."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", *args]
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(
    browser: Browser, *, watch_csp: bool = False, fail_on_errors: bool = True
) -> Iterator[Page]:
    """A 1280x900 page in its own context (no shared storage). With
    ``fail_on_errors`` an uncaught JavaScript error fails the test; with
    ``watch_csp`` the page gathers CSP violations in ``window.__csp``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    if watch_csp:
        context.add_init_script(WATCH_CSP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    if fail_on_errors:
        assert errors == [], f"JavaScript errors on the page: {errors}"


def mounted(apps: Mapping[str, Any]) -> FastAPI:
    """One app serving each of ``apps`` under its path. Starlette does not run a
    mounted app's lifespan, so the parent runs them all: their Redis connections
    close with the server."""

    @asynccontextmanager
    async def lifespan(parent: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    parent = FastAPI(lifespan=lifespan)
    for path, app in apps.items():
        parent.mount(path, app)
    return parent


@contextmanager
def dashboard_servers(redis_url: str) -> Iterator[Callable[[AppFactory], DashboardServer]]:
    """``start(app_factory)`` -> a started DashboardServer; every server started
    in the block is closed when it ends."""
    servers: list[DashboardServer] = []

    def start(factory: AppFactory) -> DashboardServer:
        server = DashboardServer(redis_url, factory)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()
