"""Changing jobs from the dashboard, in headless Chromium against a real server
and Workers: add a job through the form (bad JSON and the library's refusals
shown), run a job again, edit a delayed job's data, retry a selection of 3,
promote all delayed, cancel a running job, and every attempt on a job's page."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser_support import needs_chromium
from conveyor import Job
from dashboard_server import DashboardServer
from helpers import finished, wait_for

pytestmark = needs_chromium

expect.set_options(timeout=10_000)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def until(server: DashboardServer, predicate: Any, message: str) -> None:
    server.run(wait_for(predicate, timeout=10, message=message))


def test_add_a_job_with_the_form_refusing_bad_json_and_bad_options(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("mail")
    dashboard.add(queue, "seed")  # the queue exists
    page.goto(f"{dashboard.url}/#/queues/{queue}")
    page.locator("#add-job").click()
    form = page.locator("#job-form")
    expect(form).to_be_visible()
    page.locator("#job-form-name").fill("welcome")
    page.locator("#job-form-data").fill('{"to": "ada@example.com",}')
    problem = page.locator("#job-form-error")
    expect(problem).to_contain_text("Data is not valid JSON")
    page.locator("#job-form-ok").click()
    expect(form).to_be_visible()  # nothing sent
    page.screenshot(path="/tmp/dash-add-job-bad-json.png")

    page.locator("#job-form-data").fill('{"to": "ada@example.com"}')
    expect(problem).to_be_hidden()
    page.locator("#job-form-options").fill('{"attempts": 0}')
    page.locator("#job-form-ok").click()
    expect(problem).to_contain_text("attempts: ")  # the library's own message
    counts = dashboard.run(dashboard.queue(queue).get_job_counts("waiting"))
    assert counts == {"waiting": 1}

    page.locator("#job-form-options").fill('{"attempts": 2, "delay": 60000}')
    page.locator("#job-form-ok").click()
    expect(form).to_have_count(0)
    expect(page.locator("#job-name")).to_have_text("welcome")
    expect(page.locator("#job-state")).to_have_text("delayed")
    job_id = page.url.rsplit("/", 1)[1]
    job = dashboard.run(dashboard.queue(queue).get_job(job_id))
    assert job is not None and job.data == {"to": "ada@example.com"}
    assert job.opts.attempts == 2 and job.opts.delay == 60_000


def test_run_a_job_again_and_edit_the_data_of_a_delayed_one(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("report")
    job = dashboard.add(queue, "monthly", {"month": 1}, delay=60_000, priority=2)
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("delayed")
    expect(page.locator("#job-cancel")).to_be_disabled()

    page.locator("#job-edit").click()
    editor = page.locator("#job-form-data")
    expect(editor).to_have_value('{\n  "month": 1\n}')
    editor.fill('{"month": 2')
    expect(page.locator("#job-form-error")).to_contain_text("not valid JSON")
    editor.fill('{"month": 2}')
    page.locator("#job-form-ok").click()
    expect(page.locator(".notice")).to_have_text("Data saved.")
    expect(page.locator("pre.code").first).to_contain_text('"month": 2')
    stored = dashboard.run(dashboard.queue(queue).get_job(job.id))
    assert stored is not None and stored.data == {"month": 2}

    page.locator("#job-duplicate").click()
    expect(page.locator("#job-state")).to_have_text("prioritized")  # runs now, priority kept
    copy_id = page.url.rsplit("/", 1)[1]
    assert copy_id != job.id
    copy = dashboard.run(dashboard.queue(queue).get_job(copy_id))
    assert copy is not None and (copy.name, copy.data) == ("monthly", {"month": 2})


def test_edit_is_refused_with_a_409_once_the_job_ran(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("late")
    job = dashboard.add(queue, "x", {"v": 1}, delay=60_000)
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("delayed")
    page.locator("#job-edit").click()
    expect(page.locator("#job-form")).to_be_visible()
    dashboard.run(dashboard.queue(queue).promote_jobs())
    dashboard.start_worker(queue, lambda job: None)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "the job ran")
    page.locator("#job-form-data").fill("[1]")
    page.locator("#job-form-ok").click()
    expect(page.locator("#job-form-error")).to_contain_text("is completed; only the data of a job")


def test_select_three_failed_jobs_and_retry_them(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("sync")
    fail = {"on": True}

    async def process(job: Job) -> str:
        if fail["on"]:
            raise RuntimeError("upstream down")
        return "ok"

    dashboard.start_worker(queue, process)
    ids = [dashboard.add(queue, "pull", {"n": i}).id for i in range(4)]

    async def all_failed() -> bool:
        return (await dashboard.queue(queue).get_job_counts("failed"))["failed"] == 4

    until(dashboard, all_failed, "4 jobs failed")
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=failed")
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(4)
    retry = page.locator("#bulk-retry")
    expect(retry).to_be_disabled()
    for job_id in ids[:3]:
        page.locator(f'tr[data-job-id="{job_id}"] input.bulk-one').check()
    expect(page.locator("#bulk-count")).to_have_text("3 selected")
    page.screenshot(path="/tmp/dash-bulk-select.png")

    fail["on"] = False
    retry.click()
    expect(page.locator(".notice")).to_have_text("Retried 3 of 3 job(s).")
    expect(page.locator('a.tab[data-state="failed"] .tab-count')).to_have_text("1")
    expect(page.locator('a.tab[data-state="completed"] .tab-count')).to_have_text("3")
    expect(page.locator(f'tr[data-job-id="{ids[3]}"]')).to_be_visible()
    expect(page.locator("#bulk-count")).to_have_text("")


def test_promote_all_delayed_jobs(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("later")
    for i in range(3):
        dashboard.add(queue, "soon", i, delay=3_600_000)
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=delayed")
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(3)
    page.locator("#promote-all").click()
    page.locator("#confirm-ok").click()
    expect(page.locator(".notice")).to_have_text("Promoted 3 job(s).")
    expect(page.locator('a.tab[data-state="waiting"] .tab-count')).to_have_text("3")
    assert dashboard.run(dashboard.queue(queue).get_job_counts("delayed")) == {"delayed": 0}


def test_cancel_a_running_job_from_its_page(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("export")

    async def forever(job: Job) -> Any:
        await asyncio.Event().wait()

    dashboard.start_worker(queue, forever)
    job = dashboard.add(queue, "export")

    async def active() -> bool:
        return await dashboard.queue(queue).get_job_state(job.id) == "active"

    until(dashboard, active, "the job runs")
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-state")).to_have_text("active")
    expect(page.locator("#job-edit")).to_be_disabled()
    page.locator("#job-cancel").click()
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator("#job-error")).to_have_text("cancelled: cancelled from the dashboard")
    expect(page.locator("#job-cancel")).to_be_disabled()


def test_cancel_a_selection_of_running_jobs_after_confirming(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("crawl")

    async def forever(job: Job) -> Any:
        await asyncio.Event().wait()

    dashboard.start_worker(queue, forever, concurrency=3)
    ids = [dashboard.add(queue, "crawl", i).id for i in range(3)]

    async def all_active() -> bool:
        return (await dashboard.queue(queue).get_job_counts("active"))["active"] == 3

    until(dashboard, all_active, "3 jobs run")
    page.goto(f"{dashboard.url}/#/queues/{queue}?state=active")
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(3)
    page.locator("#bulk-page").check()
    expect(page.locator("#bulk-count")).to_have_text("3 selected")
    page.locator("#bulk-cancel").click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Cancel 3 running job(s)?")
    page.locator("#confirm-ok").click()
    expect(page.locator(".notice")).to_have_text("Cancelled 3 of 3 job(s).")
    expect(page.locator('a.tab[data-state="failed"] .tab-count')).to_have_text("3")
    for job_id in ids:
        job = dashboard.run(dashboard.queue(queue).get_job(job_id))
        assert job is not None and job.failed_reason == "cancelled: cancelled from the dashboard"


@pytest.mark.cluster  # on one server and on a Redis Cluster
def test_the_job_page_shows_three_attempts_of_a_job_that_failed_twice_then_succeeded(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("flaky")

    async def flaky(job: Job) -> str:
        if job.attempts_made < 2:
            raise ConnectionError(f"try {job.attempts_made + 1} failed")
        return "ok"

    dashboard.start_worker(queue, flaky)
    job = dashboard.add(queue, "call", attempts=3)
    until(dashboard, lambda: finished(dashboard.queue(queue), job.id), "the job ran")
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    rows = page.locator("#job-attempts tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("ConnectionError: try 1 failed")
    expect(rows.nth(1)).to_contain_text("ConnectionError: try 2 failed")
    assert [rows.nth(i).get_attribute("data-outcome") for i in range(3)] == [
        "failed", "failed", "completed"]
    expect(rows.nth(2).locator(".badge")).to_have_text("completed")
    page.screenshot(path="/tmp/dash-attempts.png", full_page=True)
