"""The dashboard against a page on another origin, in Debian's chromium
(Playwright): the other page's fetch() posts, its ``<form method=post>`` and its
``<iframe>`` of the dashboard change nothing and show nothing; and the
dashboard's own pages run under its Content-Security-Policy without a violation.

The dashboard has no token (the default on loopback), so only the guard's
Host, Origin/Sec-Fetch-Site and content-type checks and the framing headers
stand between the other page and the queues.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from browser_support import chromium, fresh_page, needs_chromium
from conveyor import Job
from dashboard_server import DashboardServer
from helpers import finished, wait_for

pytestmark = needs_chromium

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # attacker.example resolves to 127.0.0.1, as a DNS-rebinding attack arranges.
    with chromium("--host-resolver-rules=MAP attacker.example 127.0.0.1") as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # Every CSP violation of any document in the context, as the page saw it;
    # the other origin's own page may throw: that is not the dashboard's error.
    with fresh_page(browser, watch_csp=True, fail_on_errors=False) as page:
        yield page


@pytest.fixture
def dashboard(redis_url: str) -> Iterator[DashboardServer]:
    from conveyor.web.app import create_app

    server = DashboardServer(redis_url, lambda: create_app(redis_url))
    server.start()
    try:
        yield server
    finally:
        server.close()


def attacker_page(target: str, queue: str) -> str:
    """A page on another origin that tries what a hostile site would."""
    action = html.escape(f"{target}/api/v1/queues/{queue}/clean")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>other origin</title>
<script>
const target = {json.dumps(target)};
const queue = {json.dumps(queue)};
window.attempts = async () => {{
  const tries = {{
    "pause, no body": [`/api/v1/queues/${{queue}}/pause`, {{method: "POST", mode: "no-cors"}}],
    "clean, form body": [`/api/v1/queue/clean/${{queue}}`,
      {{method: "POST", mode: "no-cors", body: new URLSearchParams({{state: "failed"}})}}],
    "clean, text/plain JSON": [`/api/v1/queues/${{queue}}/clean`,
      {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
        body: JSON.stringify({{state: "failed", grace_ms: 0}})}}],
    "clean, JSON": [`/api/v1/queues/${{queue}}/clean`,
      {{method: "POST", headers: {{"Content-Type": "application/json"}},
        body: JSON.stringify({{state: "failed", grace_ms: 0}})}}],
    "read the queues": [`/api/v1/queues`, {{}}],
  }};
  const out = {{}};
  for (const [name, [path, init]] of Object.entries(tries)) {{
    try {{
      const response = await fetch(target + path, init);
      out[name] = response.type === "opaque" ? "opaque" : await response.text();
    }} catch (error) {{
      out[name] = "refused by the browser";
    }}
  }}
  return out;
}};
</script></head><body>
<form id="forged" method="post" action="{action}">
  <input name="state" value="failed"><input name="grace_ms" value="0">
</form>
<iframe id="framed" name="framed" src="{html.escape(target)}/" width="600" height="400"></iframe>
</body></html>"""


@pytest.fixture
def attacker(redis_url: str, dashboard: DashboardServer) -> Iterator[tuple[str, str]]:
    """(url of the other origin's page, queue name): a second server on another port."""
    queue = f"victim-{uuid.uuid4().hex[:6]}"

    async def hostile(request: Request) -> HTMLResponse:
        return HTMLResponse(attacker_page(dashboard.url, queue))

    other = DashboardServer(redis_url, lambda: Starlette(routes=[Route("/", hostile)]))
    other.start()
    try:
        yield other.url + "/", queue
    finally:
        other.close()


async def _fail(job: Job) -> Any:
    raise RuntimeError("boom")


def failed_jobs(server: DashboardServer, queue: str, count: int) -> None:
    server.start_worker(queue, _fail)
    jobs = [server.add(queue, "doomed", {"n": n}, attempts=1) for n in range(count)]

    async def all_failed() -> bool:
        return all([await finished(server.queue(queue), job.id) == "failed" for job in jobs])

    server.run(wait_for(all_failed, timeout=20))


def queue_state(server: DashboardServer, queue: str) -> tuple[int, bool]:
    async def state() -> tuple[int, bool]:
        q = server.queue(queue)
        return (await q.get_job_counts("failed"))["failed"], await q.is_paused()

    return server.run(state())


def test_a_page_on_another_origin_can_neither_change_nor_frame_the_dashboard(
    dashboard: DashboardServer, attacker: tuple[str, str], page: Page
) -> None:
    url, queue = attacker
    failed_jobs(dashboard, queue, 3)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))

    page.goto(url)
    results = page.evaluate("window.attempts()")
    # JSON needs a CORS preflight, which the dashboard does not grant; the rest is
    # sent as "simple" requests whose answers the page cannot read.
    assert results["clean, JSON"] == "refused by the browser"
    assert results["read the queues"] == "refused by the browser"
    assert queue_state(dashboard, queue) == (3, False)

    # The frame: refused by the dashboard's headers (frame-ancestors, X-Frame-Options).
    frame = page.frame(name="framed")
    assert frame is not None

    def frame_refused() -> bool:
        return any("frame-ancestors" in text or "X-Frame-Options" in text for text in console)

    poll(page, lambda: frame_refused() or "Overview" in _frame_text(frame))
    assert frame_refused(), console
    assert "Overview" not in _frame_text(frame)

    # The form: a top-level navigation with a form body, answered 403.
    with page.expect_response(lambda r: r.url.endswith(f"/queues/{queue}/clean")) as answer:
        page.evaluate("document.getElementById('forged').submit()")
    assert answer.value.status == 403
    assert answer.value.json()["error"]["code"] == "cross_site"
    assert queue_state(dashboard, queue) == (3, False)


def poll(page: Page, condition: Callable[[], bool], timeout_ms: float = 10_000) -> None:
    """Let the page run until ``condition()`` holds or ``timeout_ms`` pass."""
    waited = 0.0
    while not condition() and waited < timeout_ms:
        page.wait_for_timeout(50)
        waited += 50


def _frame_text(frame: Any) -> str:
    try:
        return str(frame.evaluate("document.body ? document.body.innerText : ''"))
    except Exception:  # an error page or a cross-origin document that went away
        return ""


def test_a_rebound_host_name_gets_nothing(dashboard: DashboardServer, page: Page) -> None:
    """DNS rebinding: once the attacker's name resolves to 127.0.0.1, the
    attacker's page is same-origin with the dashboard, as far as the browser
    knows; only the Host it sends gives it away."""
    queue = f"victim-{uuid.uuid4().hex[:6]}"
    failed_jobs(dashboard, queue, 2)
    rebound = dashboard.url.replace("127.0.0.1", "attacker.example")
    response = page.goto(rebound + "/")
    assert response is not None and response.status == 400
    assert response.json()["error"]["code"] == "host_not_allowed"
    answers = page.evaluate("""async (queue) => {
        const post = (path, body) => fetch(path, {method: "POST", body,
            headers: {"Content-Type": "application/json"}});
        const answers = [
            await fetch("/api/v1/queues"),
            await post(`/api/v1/queues/${queue}/clean`,
                       JSON.stringify({state: "failed", grace_ms: 0})),
            await post(`/api/v1/queues/${queue}/pause`),
        ];
        return Promise.all(answers.map(async r => [r.status, await r.text()]));
    }""", queue)
    for status, text in answers:
        assert status == 400 and "host_not_allowed" in text and queue not in text, text
    assert queue_state(dashboard, queue) == (2, False)


def test_the_dashboard_pages_run_under_their_csp_without_a_violation(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = f"csp-{uuid.uuid4().hex[:6]}"

    async def report(job: Job) -> None:
        await job.update_progress(40)
        raise ValueError("template missing")

    dashboard.start_worker(queue, report)
    job = dashboard.add(queue, "monthly", {"month": "2026-10"}, attempts=1)
    dashboard.run(wait_for(lambda: finished(dashboard.queue(queue), job.id), timeout=20))

    errors: list[str] = []
    violations: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    response = page.goto(dashboard.url + "/")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expect(page.locator(f'article[data-queue="{queue}"]')).to_be_visible()
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=failed")
    expect(page.get_by_role("link", name=job.id, exact=True)).to_be_visible()
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-progress")).to_have_text("40%")
    bar = page.locator(".progress-bar")
    # The width is set through the CSSOM, which the CSP allows; a style attribute it refuses.
    assert bar.evaluate("el => el.style.width") == "40%"
    assert bar.evaluate("el => el.getBoundingClientRect().width") > 0
    assert page.evaluate("window.__csp") == []
    assert violations == [] and errors == []
