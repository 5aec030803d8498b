"""The dashboard's flow tree, schedulers page, charts, dark mode and locale
formatting in Debian's chromium (Playwright) against uvicorn serving
create_app, the suite's private Redis and real Workers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from browser_support import dashboard_servers, needs_chromium
from conveyor import FlowProducer, Job
from conveyor.flows import FlowNode
from dashboard_server import DashboardServer
from helpers import finished, wait_for

pytestmark = needs_chromium

expect.set_options(timeout=10_000)  # the page polls every 2 s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def double_or_fail(job: Job) -> Any:
    if job.data == 3:
        raise RuntimeError("three is refused")
    return job.data * 2


def run_all(dashboard: DashboardServer, queue: str, ids: list[str]) -> None:
    """A worker on ``queue`` until every job of ``ids`` finished."""
    dashboard.start_worker(queue, double_or_fail)

    async def done() -> None:
        for job_id in ids:
            await wait_for(lambda job_id=job_id: finished(dashboard.queue(queue), job_id))

    dashboard.run(done())


def test_a_parent_shows_its_children_as_a_tree_with_states_and_values(
    dashboard: DashboardServer, page: Page
) -> None:
    reports, parts = unique("reports"), unique("parts")

    async def add_flow() -> FlowNode:
        async with FlowProducer(connection=dashboard.redis_url) as flow:
            return await flow.add({"name": "report", "queue_name": reports, "children": [
                {"name": "part", "queue_name": parts, "data": 1},
                {"name": "part", "queue_name": parts, "data": 2, "opts": {"delay": 3_600_000}},
                {"name": "part", "queue_name": parts, "data": 3,
                 "opts": {"ignore_dependency_on_failure": True}},
            ]})

    root = dashboard.run(add_flow())
    one, later, three = (c.job.id for c in root.children)
    run_all(dashboard, parts, [one, three])

    page.goto(f"{dashboard.url}/#/queues/{reports}/jobs/{root.job.id}")
    tree = page.locator("#flow-tree")
    expect(tree.locator(".node.current")).to_contain_text(f"report #{root.job.id}")
    children = tree.locator(".node.current + ul > li")
    expect(children).to_have_count(3)
    def child(job_id: str) -> Any:
        return tree.locator(f'.node[data-queue="{parts}"][data-id="{job_id}"]')

    expect(child(one)).to_contain_text("completed")
    expect(child(one).locator(".node-value")).to_have_text("→ 2")
    expect(child(later)).to_contain_text("delayed")
    expect(child(three)).to_contain_text("failed")
    expect(child(three)).to_contain_text("ignored failure: RuntimeError: three is refused")

    tree.get_by_role("link", name=f"part #{one}").click()  # down to a child...
    expect(page.locator("#job-name")).to_have_text("part")
    parent = page.locator("#flow-tree").get_by_role("link", name=f"report #{root.job.id}")
    expect(page.locator("#flow-tree .node.current")).to_contain_text(f"part #{one}")
    parent.click()  # ...and back up
    expect(page.locator("#job-state")).to_have_text("waiting children")


def test_a_job_outside_a_flow_shows_no_tree(dashboard: DashboardServer, page: Page) -> None:
    queue = unique("plain")
    job = dashboard.add(queue, "alone", {})
    page.goto(f"{dashboard.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-name")).to_have_text("alone")
    expect(page.locator("#flow-tree")).to_be_hidden()


def test_a_scheduler_is_created_run_edited_and_removed_in_the_page(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("sched")
    dashboard.add(queue, "seed", {})  # the queue exists
    page.goto(f"{dashboard.url}/#/queues/{queue}/schedulers")
    form = page.locator("#scheduler-form")
    form.locator('input[name="id"]').fill("hourly-report")
    form.locator('input[name="every"]').fill("3600")
    form.locator('input[name="job_name"]').fill("report")
    form.locator('textarea[name="data"]').fill('{"pages": 3}')
    form.get_by_role("button", name="Create scheduler").click()

    row = page.locator('tr[data-scheduler="hourly-report"]')
    expect(row).to_contain_text("every 1 h 0 min")
    expect(row).to_contain_text('{"pages":3}')
    made = dashboard.run(dashboard.queue(queue).get_job_scheduler("hourly-report"))
    assert made is not None and made.every == 3_600_000 and made.job_name == "report"

    # Roles hide [data-admin] for a read-only token: every control that changes something has it.
    expect(form).to_have_attribute("data-admin", "")
    expect(row.locator("button:not([data-admin])")).to_have_count(0)
    row.get_by_role("button", name="Run now").click()
    notice = page.locator(".notice", has_text="made job")
    expect(notice).to_contain_text("Scheduler hourly-report made job sched-hourly-report-")
    job_id = notice.get_by_role("link").inner_text()
    job = dashboard.run(dashboard.queue(queue).get_job(job_id))
    assert job is not None and (job.name, job.data) == ("report", {"pages": 3})
    assert dashboard.run(dashboard.queue(queue).get_job_state(job_id)) == "waiting"
    after = dashboard.run(dashboard.queue(queue).get_job_scheduler("hourly-report"))
    assert after is not None and after.next_run == made.next_run  # the schedule did not move
    expect(row.locator(f'a[href$="{job_id}"] .badge')).to_have_text("waiting")  # last runs

    row.get_by_role("button", name="Edit").click()
    form.locator('select[name="kind"]').select_option("cron")
    form.locator('input[name="cron"]').fill("0 9 * * 1-5")
    form.locator('input[name="tz"]').fill("Europe/Berlin")
    form.get_by_role("button", name="Save changes").click()
    expect(row).to_contain_text("cron 0 9 * * 1-5 (Europe/Berlin)")

    form.locator('input[name="id"]').fill("broken")
    form.locator('select[name="kind"]').select_option("cron")
    form.locator('input[name="cron"]').fill("61 * * * *")
    form.get_by_role("button", name="Create scheduler").click()
    expect(page.locator(".notice.error")).to_contain_text("cron")
    expect(page.locator('tr[data-scheduler="broken"]')).to_have_count(0)

    row.get_by_role("button", name="Remove").click()
    page.locator("#confirm-ok").click()
    expect(row).to_have_count(0)
    expect(page.locator("tbody")).to_contain_text("No job schedulers on this queue.")
    assert dashboard.run(dashboard.queue(queue).get_job_scheduler("hourly-report")) is None


def css_var(page: Page, name: str) -> str:
    """A CSS variable's colour as the browser computes it (rgb(...))."""
    return str(page.evaluate(
        """(name) => { const probe = document.createElement("i");
             probe.style.color = `var(${name})`; document.body.append(probe);
             const found = getComputedStyle(probe).color; probe.remove(); return found; }""",
        name))


def test_the_charts_draw_failure_rate_and_timings_in_the_themes_colours(
    dashboard: DashboardServer, page: Page
) -> None:
    queue = unique("charts")
    ids = [dashboard.add(queue, "n", n).id for n in (1, 2, 3, 4)]
    run_all(dashboard, queue, ids)

    page.goto(f"{dashboard.url}/#/queues/{queue}")
    rate = page.locator("#failure-rate-chart circle.point")
    expect(rate.first).to_be_attached()
    assert rate.count() >= 1
    timings = page.locator("#timings-chart")
    for series in ("wait-p50", "wait-p95", "proc-p50", "proc-p95"):
        expect(timings.locator(f"circle.point.{series}").first).to_be_attached()
    expect(rate.first.locator("title")).to_contain_text("failure rate 25")  # 1 of 4 failed

    line = timings.locator("path.series.proc-p95")
    light = line.evaluate("(el) => getComputedStyle(el).stroke")
    assert light == css_var(page, "--chart-proc-p95")
    page.locator("#theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = line.evaluate("(el) => getComputedStyle(el).stroke")
    assert dark == css_var(page, "--chart-proc-p95") and dark != light


def background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def test_dark_mode_toggles_and_is_remembered_across_a_reload(
    dashboard: DashboardServer, page: Page
) -> None:
    page.goto(dashboard.url + "/")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    light = background(page)
    assert light == "rgb(245, 247, 250)"
    page.locator("#theme-toggle").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(page) == "rgb(15, 20, 27)"
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(page) == "rgb(15, 20, 27)"
    page.locator("#theme-toggle").click()
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert background(page) == light


def test_a_dark_system_gets_the_dark_theme_without_a_click(
    dashboard: DashboardServer, browser: Browser
) -> None:
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(dashboard.url + "/")
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        assert background(page) == "rgb(15, 20, 27)"
        expect(page.locator("#theme-toggle")).to_contain_text("Light")
    finally:
        context.close()


@pytest.mark.parametrize(("locale", "shown", "ago"), [
    ("de-DE", "1.234", re.compile(r"^vor \d+ Sekunden$|^jetzt$")),
    ("en-US", "1,234", re.compile(r"^\d+ seconds ago$|^now$")),
])
def test_numbers_and_times_follow_the_browsers_locale(
    dashboard: DashboardServer, browser: Browser, locale: str, shown: str, ago: re.Pattern[str]
) -> None:
    queue = unique("intl")
    dashboard.run(dashboard.queue(queue).add_bulk([{"name": "n", "data": i} for i in range(1234)]))
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{dashboard.url}/#/queues/{queue}")
        expect(page.locator('a.tab[data-state="waiting"] .tab-count')).to_have_text(shown)
        added = page.locator("tbody tr").first.locator("time")
        expect(added).to_have_text(ago)
    finally:
        context.close()


def test_a_read_token_sees_schedulers_but_no_control_that_changes_them(
    redis_url: str, page: Page
) -> None:
    from conveyor.web.app import create_app

    read, admin = "read-only-token-0123", "admin-token-0123456789"
    with dashboard_servers(redis_url) as start:
        server = start(lambda: create_app(redis_url, tokens={read: "read", admin: "admin"}))
        queue = unique("ro")
        server.run(server.queue(queue).upsert_job_scheduler("nightly", cron="0 3 * * *"))
        page.goto(f"{server.url}/#/queues/{queue}/schedulers")
        expect(page.locator("#token-dialog")).to_be_visible()
        page.locator("#token-input").fill(read)
        page.locator("#token-save").click()
        row = page.locator('tr[data-scheduler="nightly"]')
        expect(row).to_contain_text("cron 0 3 * * *")
        expect(row.get_by_role("button")).to_have_count(0)  # hidden, not only disabled
        expect(page.locator("#scheduler-form")).to_be_hidden()
        status = page.evaluate(
            """async (token) => (await fetch(`api/v1/queues/${location.hash.split("/")[2]}`
                 + "/schedulers/nightly/run", {method: "POST",
                 headers: {Authorization: `Bearer ${token}`}})).status""", read)
        assert status == 403
