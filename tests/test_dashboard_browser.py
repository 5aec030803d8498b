"""The dashboard in a real browser: headless Chromium (Playwright) against
uvicorn serving create_app, the suite's private Redis and real Workers.

The tests are plain ``def`` tests: Playwright's sync API drives the browser from
the main thread while the server and the workers run on their own loop
(tests/dashboard_server.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from browser_support import dashboard_servers, mounted, needs_chromium
from conveyor import FlowProducer, Job
from conveyor.flows import FlowNode
from dashboard_server import DashboardServer
from helpers import finished, wait_for

pytestmark = needs_chromium


SCREENSHOTS = Path("/tmp")
DASH = "\N{EN DASH}"  # the pager says "1<en dash>20 of 45"
XSS = '<img src=x onerror="window.__xss = 1">'

MakeDashboard = Callable[..., DashboardServer]

# The page polls every 2 s: give each expectation a few polls on a busy machine.
expect.set_options(timeout=10_000)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def make_dashboard(redis_url: str) -> Iterator[MakeDashboard]:
    """make_dashboard(**create_app options) -> a started DashboardServer."""
    from conveyor.web.app import create_app

    with dashboard_servers(redis_url) as start:

        def make(mount: str | None = None, **options: Any) -> DashboardServer:
            def factory() -> Any:
                app = create_app(redis_url, **options)
                return app if mount is None else mounted({mount: app})

            return start(factory)

        yield make


@pytest.fixture
def dashboard(make_dashboard: MakeDashboard) -> DashboardServer:
    return make_dashboard()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def job_state(server: DashboardServer, queue: str, job_id: str) -> str | None:
    return server.run(server.queue(queue).get_job_state(job_id))


def until(server: DashboardServer, predicate: Callable[[], Any], message: str) -> None:
    """Wait (helpers.wait_for, on the server's loop) for a condition on Redis."""
    server.run(wait_for(predicate, timeout=10, message=message))


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate(
        "document.scrollingElement.scrollWidth <= window.innerWidth"
    ))


# -- the retry click-through ----------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_retrying_a_failed_job_from_its_page_runs_it_to_completion(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("email")
    calls: dict[str, int] = {}

    async def flaky(job: Job) -> dict[str, bool]:
        calls[job.id] = calls.get(job.id, 0) + 1
        if calls[job.id] == 1:
            raise ConnectionError("smtp server went away")
        return {"sent": True}

    dashboard.start_worker(queue, flaky)
    job = dashboard.add(queue, "send-welcome", {"to": "ada@example.com"}, attempts=1)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job processed")
    assert job_state(dashboard, queue, job.id) == "failed"

    page.goto(dashboard.url + "/")
    page.locator(f'article[data-queue="{queue}"] a.queue-link').click()
    expect(page.locator("h1")).to_have_text(queue)
    page.locator('a.tab[data-state="failed"]').click()
    expect(page.locator("a.tab.active[data-state]")).to_contain_text("failed")
    page.get_by_role("link", name=job.id, exact=True).click()

    state = page.locator("#job-state")
    expect(state).to_have_text("failed")
    expect(page.locator("#job-error")).to_have_text("ConnectionError: smtp server went away")
    expect(page.locator("#job-promote")).to_be_disabled()
    page.locator("#job-retry").click()
    expect(state).to_have_text("completed")  # live update, no reload
    expect(page.locator("#job-retry")).to_be_enabled()  # a completed job can run again
    assert calls[job.id] == 2
    assert job_state(dashboard, queue, job.id) == "completed"


# -- overview -----------------------------------------------------------------------------


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_overview_lists_every_queue_and_its_counts_update_live(
    dashboard: DashboardServer, page: Page
) -> None:
    reports, emails = unique("reports"), unique("emails")
    for i in range(3):
        dashboard.add(reports, "render", {"n": i})
    dashboard.add(emails, "send", {"to": "x@example.com"}, delay=60_000)

    page.goto(dashboard.url + "/")
    card = page.locator(f'article[data-queue="{reports}"]')
    waiting = card.locator('[data-count="waiting"] .count-value')
    expect(waiting).to_have_text("3")
    delayed = page.locator(f'article[data-queue="{emails}"] [data-count="delayed"] .count-value')
    expect(delayed).to_have_text("1")

    dashboard.add(reports, "render", {"n": 3})
    expect(waiting).to_have_text("4")  # polled, not reloaded

    async def render(job: Job) -> int:
        return int(job.data["n"])

    dashboard.start_worker(reports, render)
    expect(card.locator('[data-count="completed"] .count-value')).to_have_text("4")
    expect(waiting).to_have_text("0")
    expect(page.locator('[data-stat="completed"] .stat-value')).to_have_text("4")
    expect(card.locator(".chart svg")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "dash-overview-1280.png"), full_page=True)


def test_overview_lists_recent_failures(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("hooks")

    async def broken(job: Job) -> None:
        raise RuntimeError("endpoint answered 503")

    dashboard.start_worker(queue, broken)
    job = dashboard.add(queue, "deliver", {"url": "https://example.com"})
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job failed")

    page.goto(dashboard.url + "/")
    row = page.locator("tr", has_text="endpoint answered 503")
    expect(row).to_be_visible()
    row.get_by_role("link", name=job.id, exact=True).click()
    expect(page.locator("#job-state")).to_have_text("failed")


def test_a_long_reason_is_cut_in_lists_and_whole_on_the_jobs_page(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("long")
    reason = "overflow " + "x" * 5000 + " the end"

    async def broken(job: Job) -> None:
        raise RuntimeError(reason)

    dashboard.start_worker(queue, broken)
    job = dashboard.add(queue, "deliver")
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job failed")

    page.goto(dashboard.url + "/")
    alert = page.locator("tr", has_text="overflow xxx").locator(".reason")
    expect(alert).to_have_text(re.compile(r"^RuntimeError: overflow x+…$"))
    page.goto(dashboard.url + f"/#/queues/{queue}?state=failed")
    listed = page.locator(f'tr[data-job-id="{job.id}"] .reason')
    expect(listed).to_have_text(re.compile(r"^RuntimeError: overflow x+…$"))
    assert len(listed.inner_text()) <= 1025
    listed.locator("xpath=ancestor::tr").get_by_role("link", name=job.id, exact=True).click()
    expect(page.locator("#job-error")).to_have_text(f"RuntimeError: {reason}")


def test_polling_stops_while_the_tab_is_hidden(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("quiet")
    dashboard.add(queue, "x", {})
    api_calls: list[str] = []
    page.on("request", lambda request: api_calls.append(request.url)
            if "/api/" in request.url else None)
    # The tab starts hidden (opened in the background).
    page.add_init_script("""
        window.__hidden = true;
        Object.defineProperty(document, "hidden", {configurable: true, get: () => window.__hidden});
    """)
    page.goto(dashboard.url + "/")
    expect(page.locator("#live-text")).to_have_text("paused")
    # Absence is the point here: wait two poll intervals and see nothing was asked.
    page.wait_for_timeout(4500)
    assert api_calls == []

    page.evaluate("""() => {
        window.__hidden = false;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    card = page.locator(f'article[data-queue="{queue}"]')
    expect(card.locator('[data-count="waiting"] .count-value')).to_have_text("1")
    expect(page.locator("#live-text")).to_have_text("live")


# -- queue page -------------------------------------------------------------------------


def test_queue_jobs_are_paginated(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("bulk")
    dashboard.run(dashboard.queue(queue).add_bulk(
        [{"name": "item", "data": {"n": i}} for i in range(45)]
    ))

    page.goto(f"{dashboard.url}/#/queues/{queue}?state=waiting")
    rows = page.locator("tbody tr[data-job-id]")
    range_text = page.locator("#page-range")
    expect(range_text).to_contain_text(f"1{DASH}20 of 45")
    expect(rows).to_have_count(20)
    expect(page.locator("#page-prev")).to_be_disabled()
    seen = set(rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)"))

    page.locator("#page-next").click()
    expect(range_text).to_contain_text(f"21{DASH}40 of 45")
    expect(rows).to_have_count(20)
    seen |= set(rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)"))

    page.locator("#page-next").click()
    expect(range_text).to_contain_text(f"41{DASH}45 of 45")
    expect(rows).to_have_count(5)
    expect(page.locator("#page-next")).to_be_disabled()
    seen |= set(rows.evaluate_all("rows => rows.map(r => r.dataset.jobId)"))
    assert len(seen) == 45  # every job once, none twice

    page.locator("#page-prev").click()
    expect(range_text).to_contain_text(f"21{DASH}40 of 45")


def test_search_by_id_opens_the_job_or_says_it_is_missing(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("orders")
    dashboard.add(queue, "charge", {"amount": 10}, job_id="order-42")
    dashboard.add(queue, "charge", {"amount": 11})

    page.goto(f"{dashboard.url}/#/queues/{queue}")
    search = page.get_by_role("searchbox", name="Job id")
    search.fill("no-such-order")
    search.press("Enter")
    expect(page.locator(".notice")).to_contain_text("No job with id “no-such-order”")

    search.fill("order-42")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#job-name")).to_have_text("charge")
    expect(page).to_have_url(re.compile(r"#/queues/.+/jobs/order-42$"))
    expect(page.locator("section", has_text="Data")).to_contain_text('"amount": 10')


def test_pause_and_resume_a_queue(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("media")
    dashboard.add(queue, "transcode", {"file": "a.mp4"})

    page.goto(f"{dashboard.url}/#/queues/{queue}")
    toggle = page.locator("#pause-toggle")
    expect(toggle).to_have_text("Pause")
    toggle.click()
    expect(toggle).to_have_text("Resume")
    expect(page.locator(".page-head .badge.paused")).to_be_visible()
    assert dashboard.run(dashboard.queue(queue).is_paused())

    toggle.click()
    expect(toggle).to_have_text("Pause")
    expect(page.locator(".page-head .badge.paused")).to_have_count(0)
    assert not dashboard.run(dashboard.queue(queue).is_paused())


def test_bulk_retry_and_clean_ask_first(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("sync")
    fail = {"on": True}

    async def process(job: Job) -> str:
        if fail["on"]:
            raise RuntimeError("upstream down")
        return "ok"

    dashboard.start_worker(queue, process)
    for i in range(3):
        dashboard.add(queue, "pull", {"n": i})

    async def all_failed() -> bool:
        counts = await dashboard.queue(queue).get_job_counts()
        return counts["failed"] == 3

    until(dashboard, all_failed, "3 jobs failed")

    page.goto(f"{dashboard.url}/#/queues/{queue}?state=failed")
    failed_tab = page.locator('a.tab[data-state="failed"] .tab-count')
    expect(failed_tab).to_have_text("3")
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(3)
    page.screenshot(path=str(SCREENSHOTS / "dash-queue-1280.png"), full_page=True)

    page.locator("#retry-all").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Retry all failed jobs?")
    page.screenshot(path=str(SCREENSHOTS / "dash-confirm-1280.png"))
    page.locator("#confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(failed_tab).to_have_text("3")

    fail["on"] = False
    page.locator("#retry-all").click()
    page.locator("#confirm-ok").click()
    expect(page.locator(".notice")).to_have_text("Retried 3 job(s).")
    expect(failed_tab).to_have_text("0")
    completed_tab = page.locator('a.tab[data-state="completed"] .tab-count')
    expect(completed_tab).to_have_text("3")

    page.locator('a.tab[data-state="completed"]').click()
    page.locator("#clean-all").click()
    expect(dialog).to_contain_text("Remove all completed jobs?")
    page.locator("#confirm-ok").click()
    expect(page.locator(".notice")).to_have_text("Removed 3 job(s).")
    expect(completed_tab).to_have_text("0")
    expect(page.locator("tbody")).to_contain_text("No completed jobs.")


# -- job page -----------------------------------------------------------------------------


def test_job_page_shows_logs_progress_stack_and_timeline(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("reports")

    async def report(job: Job) -> None:
        await job.log("fetched 120 rows")
        await job.update_progress(40)
        await job.log("rendering pdf")
        raise ValueError("template missing: monthly.html")

    dashboard.start_worker(queue, report)
    job = dashboard.add(queue, "monthly", {"month": "2026-10"}, attempts=1)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job failed")

    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-name")).to_have_text("monthly")
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator("#job-progress")).to_have_text("40%")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "40")
    logs = page.locator("#job-logs li")
    expect(logs).to_have_text(["fetched 120 rows", "rendering pdf"])
    expect(page.locator("#job-error")).to_have_text("ValueError: template missing: monthly.html")
    stack = page.locator("pre.stack")
    expect(stack).to_contain_text("ValueError: template missing: monthly.html")
    expect(stack).to_contain_text("Traceback")
    expect(page.locator(".timeline")).to_contain_text("added")
    expect(page.locator(".timeline")).to_contain_text("failed")
    expect(page.locator("section", has_text="Data")).to_contain_text('"month": "2026-10"')
    expect(page.locator("#job-retry")).to_be_enabled()
    expect(page.locator("#job-promote")).to_be_disabled()
    expect(page.locator("#job-remove")).to_be_enabled()
    page.screenshot(path=str(SCREENSHOTS / "dash-job-1280.png"), full_page=True)

    # Polling leaves an unchanged job's page alone, so a selection in it survives.
    page.locator("pre.stack").evaluate("el => { el.dataset.marker = 'kept'; }")
    for _ in range(2):  # after the second answer the first one has been rendered
        with page.expect_response(lambda r: r.url.endswith(f"/jobs/{job.id}")):
            pass
    expect(page.locator("pre.stack[data-marker=kept]")).to_have_count(1)


def test_promote_a_delayed_job_and_remove_a_job(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("later")
    delayed = dashboard.add(queue, "remind", {"who": "ada"}, delay=3_600_000)

    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{delayed.id}")
    expect(page.locator("#job-state")).to_have_text("delayed")
    expect(page.locator("#job-retry")).to_be_disabled()
    page.locator("#job-promote").click()
    expect(page.locator("#job-state")).to_have_text("waiting")
    expect(page.locator("#job-promote")).to_be_disabled()

    page.locator("#job-remove").click()
    page.locator("#confirm-ok").click()
    expect(page).to_have_url(re.compile(rf"#/queues/{queue}\?state=waiting$"))
    expect(page.locator("tbody")).to_contain_text("No waiting jobs.")
    assert job_state(dashboard, queue, delayed.id) is None


def test_a_job_whose_id_has_a_slash_opens_retries_and_is_removed(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("ids")
    job_id = "user/42?x=1#top%20"  # each of / ? # % means something in a URL
    runs: list[str] = []

    async def fail_once(job: Job) -> None:
        runs.append(job.id)
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    dashboard.start_worker(queue, fail_once)
    dashboard.add(queue, "x", {}, job_id=job_id)
    until(dashboard, lambda: finished(dashboard.queue(queue), job_id), "job processed")

    page.goto(f"{dashboard.url}/#/queues/{queue}?state=failed")
    page.get_by_role("link", name=job_id, exact=True).click()
    expect(page.locator("h1")).to_contain_text(job_id)
    expect(page.locator("#job-state")).to_have_text("failed")
    page.locator("#job-retry").click()
    expect(page.locator("#job-state")).to_have_text("completed")
    assert runs == [job_id, job_id]

    page.locator("#job-remove").click()
    page.locator("#confirm-ok").click()
    expect(page).to_have_url(re.compile(rf"#/queues/{queue}\?state=completed$"))
    assert job_state(dashboard, queue, job_id) is None


def test_a_dead_letter_links_back_to_the_job_that_failed(
    dashboard: DashboardServer, page: Page
) -> None:
    queue, dead = unique("payments"), unique("payments-dlq")

    async def decline(job: Job) -> None:
        raise RuntimeError("card declined")

    dashboard.start_worker(queue, decline)
    job = dashboard.add(queue, "charge", {"cents": 500}, dead_letter_queue=dead)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job failed")

    page.goto(f"{dashboard.url}/#/queues/{dead}?state=waiting")
    page.locator("tbody tr[data-job-id] a.job-link").click()
    expect(page.locator("#job-name")).to_have_text("charge")
    summary = page.locator("section", has_text="Summary")
    expect(summary).to_contain_text("RuntimeError: card declined")
    summary.get_by_role("link", name=f"{queue} #{job.id}").click()
    expect(page).to_have_url(re.compile(rf"#/queues/{queue}/jobs/{job.id}$"))
    expect(page.locator("#job-state")).to_have_text("failed")


def test_a_child_job_links_to_its_parent(dashboard: DashboardServer, page: Page) -> None:
    reports, fetchers = unique("reports"), unique("fetchers")

    async def add_flow() -> FlowNode:
        async with FlowProducer(connection=dashboard.redis_url) as flow:
            return await flow.add({
                "name": "monthly-report", "queue_name": reports, "data": {"month": "2026-10"},
                "children": [{"name": "fetch", "queue_name": fetchers, "data": {"src": "sales"}}],
            })

    root = dashboard.run(add_flow())
    child = root.children[0].job

    page.goto(f"{dashboard.url}/#/queues/{fetchers}/jobs/{child.id}")
    expect(page.locator("#job-name")).to_have_text("fetch")
    page.get_by_role("link", name=f"{reports} #{root.job.id}").click()
    expect(page.locator("#job-name")).to_have_text("monthly-report")
    expect(page.locator("#job-state")).to_have_text("waiting children")


def test_a_missing_job_or_queue_says_so(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("real")
    dashboard.add(queue, "x", {})
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/12345")
    expect(page.locator("main")).to_contain_text("There is no job “12345”")
    page.goto(f"{dashboard.url}/#/queues/{unique('nope')}")
    expect(page.locator("h1")).to_have_text("Queue not found")


def test_a_lost_server_is_reported_and_the_last_data_stays(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("gone")
    dashboard.add(queue, "x", {})
    page.goto(dashboard.url + "/")
    expect(page.locator(f'article[data-queue="{queue}"]')).to_be_visible()
    expect(page.locator("#live-text")).to_have_text("live")

    dashboard.close()
    expect(page.locator("#live-text")).to_have_text("offline")
    expect(page.locator("#banner")).to_have_text("Cannot reach the conveyor server. Retrying…")
    expect(page.locator(f'article[data-queue="{queue}"]')).to_be_visible()  # last data stays


# -- schedulers and workers ----------------------------------------------------------


def test_schedulers_and_workers_pages(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("cron")
    dashboard.run(dashboard.queue(queue).upsert_job_scheduler(
        "nightly-backup", cron="0 3 * * *", tz="Europe/Berlin", job_name="backup",
        data={"db": "main"},
    ))

    async def slow(job: Job) -> None:
        return None

    dashboard.start_worker(queue, slow, concurrency=7)

    page.goto(f"{dashboard.url}/#/queues/{queue}")
    page.locator('a.tab[data-section="schedulers"]').click()
    row = page.locator("tbody tr", has_text="nightly-backup")
    expect(row).to_contain_text("cron 0 3 * * * (Europe/Berlin)")
    expect(row).to_contain_text("backup")
    expect(row).to_contain_text('{"db":"main"}')
    page.screenshot(path=str(SCREENSHOTS / "dash-schedulers-1280.png"), full_page=True)
    row.get_by_role("link", name=re.compile(r"^in ")).click()  # the next run's job
    expect(page.locator("#job-name")).to_have_text("backup")
    expect(page.locator("#job-state")).to_have_text("delayed")
    page.go_back()

    page.locator('a.tab[data-section="workers"]').click()
    worker_row = page.locator("tbody tr").first
    expect(worker_row).to_contain_text("pid")
    expect(worker_row).to_contain_text("/ 7")


# -- safety, auth, mounting -----------------------------------------------------------


def test_job_fields_render_as_text_never_as_html(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("xss")

    async def explode(job: Job) -> None:
        await job.log(XSS)
        raise RuntimeError(XSS)

    dashboard.start_worker(queue, explode)
    job = dashboard.add(queue, XSS, {"comment": XSS}, attempts=1)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job failed")

    for url in (
        f"{dashboard.url}/",
        f"{dashboard.url}/#/queues/{queue}?state=failed",
        f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}",
    ):
        page.goto(url)
        expect(page.get_by_text(XSS).first).to_be_visible()  # shown, as text
    expect(page.locator("#job-name")).to_have_text(XSS)
    expect(page.locator("#job-error")).to_have_text(f"RuntimeError: {XSS}")
    expect(page.locator("#job-logs li")).to_have_text([XSS])
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_token_is_asked_for_when_the_api_refuses(
    make_dashboard: MakeDashboard, page: Page
) -> None:
    server = make_dashboard(token="s3cret-token")
    queue = unique("private")
    server.add(queue, "x", {})

    page.goto(server.url + "/")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.locator("#token-input").fill("wrong")
    page.locator("#token-save").click()
    expect(page.locator("#token-error")).to_be_visible()  # asked again, saying why
    page.screenshot(path=str(SCREENSHOTS / "dash-token-1280.png"))
    page.locator("#token-input").fill("s3cret-token")
    page.locator("#token-save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'article[data-queue="{queue}"]')).to_be_visible()
    assert page.evaluate("localStorage.getItem('conveyor.token:/')") == "s3cret-token"


def test_works_when_mounted_under_a_prefix(make_dashboard: MakeDashboard, page: Page) -> None:
    server = make_dashboard(mount="/ops/jobs")
    queue = unique("mounted")
    job = server.add(queue, "ping", {"n": 1})

    page.goto(server.url + "/ops/jobs")  # redirected to /ops/jobs/
    page.locator(f'article[data-queue="{queue}"] a.queue-link').click()
    page.get_by_role("link", name=job.id, exact=True).click()
    expect(page.locator("#job-name")).to_have_text("ping")
    expect(page).to_have_url(re.compile(r"/ops/jobs/#/queues/"))


# -- phone ------------------------------------------------------------------------------


def test_phone_viewport_has_no_horizontal_scroll(
    dashboard: DashboardServer, browser: Browser
) -> None:
    queue = unique("a-rather-long-queue-name-for-phones")

    async def fails(job: Job) -> None:
        await job.log("x" * 300)
        raise RuntimeError("a long reason " * 20)

    dashboard.start_worker(queue, fails)
    job = dashboard.add(queue, "a-job-name-that-is-long-" * 3, {"blob": "y" * 500}, attempts=1)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "job failed")

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  device_scale_factor=2, has_touch=True)
    phone = context.new_page()
    errors: list[str] = []
    phone.on("pageerror", lambda error: errors.append(str(error)))
    try:
        pages = {
            "overview": "/",
            "queue": f"/#/queues/{queue}?state=failed",
            "job": f"/#/queues/{queue}/jobs/{job.id}",
            "workers": f"/#/queues/{queue}/workers",
        }
        for name, path in pages.items():
            phone.goto(dashboard.url + path)
            expect(phone.locator("main h1").first).to_be_visible()
            if name == "queue":
                expect(phone.locator("tbody tr[data-job-id]")).to_have_count(1)
            if name == "job":
                expect(phone.locator("pre.stack")).to_be_visible()
            if name == "overview":
                expect(phone.locator(f'article[data-queue="{queue}"] .chart svg')).to_be_visible()
            assert no_horizontal_scroll(phone), f"{name} page scrolls sideways at 390px"
            phone.screenshot(path=str(SCREENSHOTS / f"dash-{name}-390.png"), full_page=True)
    finally:
        context.close()
    assert errors == []
