"""The queue page's job search in a real browser (Debian's chromium through
Playwright): typing narrows the list, filters combine, a mistake is shown
where the results would be, and clearing brings the list back."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser_support import needs_chromium
from conveyor import Job
from dashboard_server import DashboardServer
from helpers import wait_for

pytestmark = needs_chromium
expect.set_options(timeout=10_000)

SCREENSHOTS = Path("/tmp")


def ids_shown(page: Page) -> list[str]:
    rows = page.locator(".search-results tbody tr[data-job-id]")
    return [rows.nth(i).get_attribute("data-job-id") or "" for i in range(rows.count())]


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_typing_a_search_narrows_the_job_list(dashboard: DashboardServer, page: Page) -> None:
    queue = f"billing-{uuid.uuid4().hex[:6]}"
    jobs = dashboard.run(dashboard.queue(queue).add_bulk(
        {"name": f"invoice-{n}" if n % 2 else f"receipt-{n}", "data": {"customer": {"id": n % 3}}}
        for n in range(30)))
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=waiting")
    expect(page.locator("#page-range")).to_contain_text("of 30")
    expect(page.locator(".search-results")).to_be_hidden()

    page.locator("#search-name").press_sequentially("invoice-1", delay=20)
    invoices = [j.id for j in reversed(jobs) if j.name.startswith("invoice-1")]
    expect(page.locator("#search-status")).to_have_text(
        f"{len(invoices)} matches; scanned 30 of 30 waiting jobs (all).")
    assert ids_shown(page) == invoices  # 1, 11, 13, ... 19: newest first
    expect(page.locator("#page-range")).to_be_hidden()  # the plain list steps aside

    # A filter of the data narrows it further.
    page.locator(".filters summary").click()
    page.locator("#search-data").fill("customer.id=2")
    wanted = [j.id for j in reversed(jobs)
              if j.name.startswith("invoice-1") and j.data["customer"]["id"] == 2]
    expect(page.locator("#search-status")).to_have_text(
        f"{len(wanted)} matches; scanned 30 of 30 waiting jobs (all).")
    assert ids_shown(page) == wanted
    page.screenshot(path=str(SCREENSHOTS / "dash-search-1280.png"), full_page=True)

    # A mistake in the syntax is said where the results would be.
    page.locator("#search-data").fill("customer.id")
    expect(page.locator("#search-status")).to_contain_text("data: expected PATH=VALUE")
    expect(page.locator("#search-status")).to_have_class("search-status error")

    # Clear: the plain list is back.
    page.locator("#search-clear").click()
    expect(page.locator(".search-results")).to_be_hidden()
    expect(page.locator("#page-range")).to_contain_text("of 30")
    expect(page.locator("#search-name")).to_have_value("")


def test_failed_jobs_found_by_their_reason(dashboard: DashboardServer, page: Page) -> None:
    queue = f"mail-{uuid.uuid4().hex[:6]}"

    async def bounce(job: Job) -> Any:
        if job.data["n"] % 3 == 0:
            raise ConnectionError(f"mailbox {job.data['n']} is full")
        raise ValueError("bad address")

    jobs = dashboard.run(dashboard.queue(queue).add_bulk(
        {"name": "send", "data": {"n": n}} for n in range(9)))
    dashboard.start_worker(queue, bounce)

    async def all_failed() -> bool:
        return (await dashboard.queue(queue).get_job_counts("failed"))["failed"] == 9

    dashboard.run(wait_for(all_failed, timeout=20))
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=failed")
    page.locator(".filters summary").click()
    page.locator("#search-reason").press_sequentially("MAILBOX", delay=20)
    expect(page.locator("#search-status")).to_have_text(
        "3 matches; scanned 9 of 9 failed jobs (all).")
    assert sorted(ids_shown(page)) == sorted(j.id for j in jobs if j.data["n"] % 3 == 0)
    expect(page.locator(".search-results .reason").first).to_contain_text("is full")


def test_a_long_scan_stops_and_goes_on_when_asked(dashboard: DashboardServer, page: Page) -> None:
    queue = f"events-{uuid.uuid4().hex[:6]}"
    # The oldest job is the one looked for: five requests of 1,000 do not reach it.
    dashboard.run(dashboard.queue(queue).add("needle", {"n": 0}))
    dashboard.run(dashboard.queue(queue).add_bulk(
        {"name": "hay", "data": {"n": n}} for n in range(1, 6000)))
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=waiting")
    page.locator("#search-name").fill("needle")
    status = page.locator("#search-status")
    expect(status).to_have_text("0 matches so far; scanned 5,000 of 6,000 waiting jobs.")
    page.locator("#search-more").click()
    expect(status).to_have_text("1 match; scanned 6,000 of 6,000 waiting jobs (all).")
    assert ids_shown(page) == ["1"]
    expect(page.locator("#search-more")).to_be_hidden()
