"""Screenshots of the dashboard for the docs, in light and dark mode.

Run by hand (not part of ``make test``)::

    PYTHONPATH=src python docs/screenshots.py [--seconds 150]

It starts a private redis-server, the dashboard (uvicorn) and workers on a
free port, makes demo data (a flow, job schedulers, jobs that succeed and
fail over ``--seconds`` so the charts have a few minutes of points), then
saves PNGs of the queue page, the schedulers page, a flow tree and a job
search with Debian's chromium into ``docs/images/``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import Page, async_playwright

from conveyor import FlowProducer, Job, Queue, Worker
from conveyor.embedded import RedisServer, free_port
from conveyor.web.app import create_app

IMAGES = Path(__file__).with_name("images")
CHROMIUM = "/usr/bin/chromium"


async def send(job: Job) -> Any:
    """Demo processor: a few ms to a few hundred, one job in eight fails."""
    await asyncio.sleep(random.lognormvariate(-3.5, 0.9))
    if random.random() < 0.125:  # noqa: S311
        raise RuntimeError("SMTP 451: try again later")
    return {"sent": True}


async def part(job: Job) -> Any:
    if job.data.get("fail"):
        raise RuntimeError("upstream API answered 503")
    return {"rows": job.data["rows"]}


async def demo_data(url: str, seconds: float) -> str:
    """Flows, schedulers and a stream of jobs; returns the flow's root job id."""
    async with FlowProducer(connection=url) as flow:
        root = await flow.add({
            "name": "monthly-report", "queue_name": "reports", "data": {"month": "2026-11"},
            "children": [
                {"name": "fetch-sales", "queue_name": "parts", "data": {"rows": 1240}},
                {"name": "fetch-costs", "queue_name": "parts", "data": {"rows": 310}},
                {"name": "fetch-forecast", "queue_name": "parts",
                 "data": {"rows": 0, "fail": True},
                 "opts": {"ignore_dependency_on_failure": True}},
                {"name": "render-charts", "queue_name": "parts", "data": {"rows": 12},
                 "opts": {"delay": 3_600_000}},
            ],
        })
    async with Queue("email", url) as email:
        await email.upsert_job_scheduler("daily-digest", cron="0 8 * * *", tz="Europe/Berlin",
                                         job_name="send-digest", data={"list": "daily"})
        await email.upsert_job_scheduler("retry-bounces", every=15 * 60_000,
                                         job_name="retry-bounces", data={})
        await email.upsert_job_scheduler("weekly-invoice", cron="0 6 * * 1",
                                         tz="America/New_York", limit=52,
                                         job_name="send-invoice", data={"plan": "pro"})
        for _ in range(3):
            await email.run_job_scheduler_now("daily-digest")
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        n = 0
        while loop.time() < end:
            await email.add_bulk([{"name": "welcome", "data": {"user": n + i}}
                                  for i in range(random.randint(3, 12))])  # noqa: S311
            n += 12
            await asyncio.sleep(1.5)
    return root.job.id


async def search(page: Page) -> None:
    """The failed jobs named "welcome" whose reason says SMTP, the form in view."""
    await page.fill("#search-name", "welcome")
    await page.click("details.filters summary")
    await page.fill("#search-reason", "SMTP")
    await page.press("#search-name", "Enter")
    await page.wait_for_timeout(2000)
    await page.evaluate("""() => { const form = document.querySelector("form.job-search");
        window.scrollBy(0, form.getBoundingClientRect().top - 70); }""")


async def main(seconds: float) -> None:
    IMAGES.mkdir(exist_ok=True)
    with RedisServer() as redis:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(redis.url), host="127.0.0.1",
                                               port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        workers = [Worker("email", send, connection=redis.url, concurrency=4,
                          handle_signals=False),
                   Worker("parts", part, connection=redis.url, handle_signals=False)]
        running = [asyncio.create_task(w.run()) for w in workers]
        root = await demo_data(redis.url, seconds)
        await asyncio.sleep(3)
        base = f"http://127.0.0.1:{port}/#/queues"
        pages = {"queue": f"{base}/email", "schedulers": f"{base}/email/schedulers",
                 "flow-tree": f"{base}/reports/jobs/{root}", "search": f"{base}/email?state=failed"}
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=["--no-sandbox"])
            for theme in ("light", "dark"):
                context = await browser.new_context(
                    viewport={"width": 1280, "height": 860}, color_scheme=theme,
                    locale="en-GB", timezone_id="Europe/Berlin")
                page = await context.new_page()
                for name, address in pages.items():
                    await page.goto(address)
                    await page.wait_for_selector("#live-text:text('live')")
                    await page.wait_for_timeout(2500)  # a poll or two: charts and tree drawn
                    if name == "search":
                        await search(page)
                    path = IMAGES / f"{name}-{theme}.png"
                    await page.screenshot(path=str(path))
                    print(f"{path} {path.stat().st_size // 1024} KB")
                await context.close()
            await browser.close()
        for worker in workers:
            await worker.close()
        await asyncio.gather(*running)
        server.should_exit = True
        await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=150,
                        help="how long to make jobs first (the charts' minutes)")
    asyncio.run(main(parser.parse_args().seconds))
