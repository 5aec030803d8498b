"""Roles and several Redis instances in a real browser (headless Debian chromium
through Playwright): a read token sees the queues and jobs but none of the
controls that change something ([data-admin]); an admin token sees and uses
them; with two private redis-servers the page offers a switcher that shows the
other instance's queues and remembers the choice."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser_support import dashboard_servers, needs_chromium
from conveyor import Queue
from conveyor.embedded import RedisServer
from dashboard_server import DashboardServer
from redis_server import flushed

pytestmark = needs_chromium

expect.set_options(timeout=10_000)

READ = "read-only-token-0123"
ADMIN = "admin-token-0123456789"

MakeServer = Callable[..., DashboardServer]


@pytest.fixture(scope="module")
def second_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def make_server(redis_url: str) -> Iterator[MakeServer]:
    """make_server(**create_app options) -> a started dashboard on the test's Redis."""
    from conveyor.web.app import create_app

    with dashboard_servers(redis_url) as start:

        def make(**options: Any) -> DashboardServer:
            if "instances" not in options:
                options["connection"] = redis_url
            return start(lambda: create_app(**options))

        yield make


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def enter_token(page: Page, token: str) -> None:
    expect(page.locator("#token-dialog")).to_be_visible()
    page.locator("#token-input").fill(token)
    page.locator("#token-save").click()


def test_a_read_token_sees_no_control_that_changes_something(
    make_server: MakeServer, page: Page
) -> None:
    server = make_server(tokens={READ: "read", ADMIN: "admin"})
    queue = unique("reports")
    job = server.add(queue, "monthly", {"n": 1}, delay=3_600_000)

    page.goto(f"{server.url}/#/queues/{queue}?state=delayed")
    enter_token(page, READ)
    expect(page.locator("html")).to_have_attribute("data-role", "read")
    expect(page.locator(f'tbody tr[data-job-id="{job.id}"]')).to_be_visible()
    for control in ("#pause-toggle", "#clean-all"):
        expect(page.locator(control)).to_be_attached()  # there, and hidden
        expect(page.locator(control)).to_be_hidden()
    page.goto(f"{server.url}/#/queues/{queue}/jobs/{job.id}")
    expect(page.locator("#job-name")).to_have_text("monthly")
    expect(page.locator("section", has_text="Data")).to_contain_text('"n": 1')
    for control in ("#job-retry", "#job-promote", "#job-remove"):
        expect(page.locator(control)).to_be_attached()
        expect(page.locator(control)).to_be_hidden()
    assert page.locator("[data-admin]").count() >= 3
    expect(page.locator("[data-admin]:visible")).to_have_count(0)

    # Log out, log in as admin: the same page shows the controls, and they work.
    page.locator("#logout").click()
    enter_token(page, ADMIN)
    expect(page.locator("html")).to_have_attribute("data-role", "admin")
    promote = page.locator("#job-promote")
    expect(promote).to_be_visible()
    promote.click()
    expect(page.locator("#job-state")).to_have_text("waiting")
    assert server.run(server.queue(queue).get_job_state(job.id)) == "waiting"


def test_without_a_token_the_controls_show(make_server: MakeServer, page: Page) -> None:
    server = make_server()
    queue = unique("open")
    server.add(queue, "x", {})
    page.goto(f"{server.url}/#/queues/{queue}")
    expect(page.locator("html")).to_have_attribute("data-role", "admin")
    expect(page.locator("#pause-toggle")).to_be_visible()
    expect(page.locator("#clean-all")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("data-instances", "1")
    expect(page.locator("#instance")).to_have_count(0)  # one instance: no switcher


def test_the_switcher_shows_the_other_instance_and_remembers_it(
    make_server: MakeServer, page: Page, redis_url: str, second_server: RedisServer
) -> None:
    from conveyor.web import Instance

    second_url = flushed(second_server)
    server = make_server(instances={"billing": redis_url,
                                    "search": Instance(second_url, prefix="search")})
    billing, search = unique("invoices"), unique("index")
    server.add(billing, "x", {})

    async def add_to_search() -> str:
        q = Queue(search, second_url, prefix="search")
        try:
            return (await q.add("reindex", {"shard": 3})).id
        finally:
            await q.close()

    job_id = server.run(add_to_search())

    page.goto(server.url + "/")
    switcher = page.locator("#instance")
    expect(switcher).to_be_visible()
    expect(switcher.locator("option")).to_have_text(["billing", "search"])
    expect(switcher).to_have_value("billing")
    expect(page.locator(f'article[data-queue="{billing}"]')).to_be_visible()
    expect(page.locator(f'article[data-queue="{search}"]')).to_have_count(0)

    switcher.select_option("search")
    expect(page.locator(f'article[data-queue="{search}"]')).to_be_visible()
    expect(page.locator(f'article[data-queue="{billing}"]')).to_have_count(0)
    # The queue and job pages read the chosen instance too.
    page.locator(f'article[data-queue="{search}"] a.queue-link').click()
    expect(page.locator("h1")).to_have_text(search)
    page.locator(f'tbody tr[data-job-id="{job_id}"]').get_by_role("link", name=job_id,
                                                                  exact=True).click()
    expect(page.locator("#job-name")).to_have_text("reindex")

    page.goto(server.url + "/")
    page.reload()
    expect(page.locator("#instance")).to_have_value("search")
    expect(page.locator(f'article[data-queue="{search}"]')).to_be_visible()
    expect(page.locator(f'article[data-queue="{billing}"]')).to_have_count(0)
