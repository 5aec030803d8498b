"""The pricing platform's conveyor app: four queues and their tasks.

``ingestion`` loads index values, ``calculation`` runs a PAM batch (and queues
the ``calc.batch.completed`` webhook), ``webhooks`` delivers signed webhooks,
``reports`` renders a batch's price-math report. Every job retries on failure
(3 attempts, webhooks 5) with the seed's backoff, 5 s, 25 s, 125 s, ...
(:func:`backoff`, the workers' ``backoff_strategy``). Workers are started by
:mod:`examples.pricing.workers` with each queue's concurrency and limiter.

Configuration comes from the environment: ``CONVEYOR_REDIS_URL``,
``DATABASE_URL``, ``RECEIVER_URL`` (where tenants' webhook endpoints live in
the demo), ``PRICING_STEP_MS`` (a pause per job step, so progress is visible).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx

from conveyor import Job, UnrecoverableError
from conveyor.app import Conveyor, current_job

from . import db, reports, webhooks

__all__ = [
    "ATTEMPTS", "QUEUES", "app", "backoff", "deliver_webhook", "generate_report",
    "ingest_index_data", "run_calculation",
]

app = Conveyor()

QUEUES = ("ingestion", "calculation", "webhooks", "reports")
#: Default retry count (the seed: 3); webhooks get 5.
ATTEMPTS = 3
CUSTOM_BACKOFF = {"type": "custom"}  # the workers' backoff_strategy decides
#: Finished jobs stay a week (completed) or a month (failed), as the seed's cleanup.
KEEP_COMPLETED = {"age": 7 * 24 * 3600, "count": 10_000}
KEEP_FAILED = {"age": 30 * 24 * 3600, "count": 10_000}
CENT = Decimal("0.0001")


def backoff(attempts_made: int, error: BaseException | None = None,
            job: Job | None = None) -> int:
    """The seed's retry delays: 5 s after the 1st failure, 25 s, 125 s, ... (ms).

    ``$PRICING_BACKOFF_MS`` replaces the 5 s base (the test uses 100 ms)."""
    base = int(os.environ.get("PRICING_BACKOFF_MS", "5000"))
    return int(base * 5 ** (max(attempts_made, 1) - 1))


async def _step() -> None:
    """A pause standing for a step of real work, so progress can be seen."""
    ms = int(os.environ.get("PRICING_STEP_MS", "0"))
    if ms:
        await asyncio.sleep(ms / 1000)


@app.task(queue="ingestion", attempts=ATTEMPTS, backoff=CUSTOM_BACKOFF,
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def ingest_index_data(tenant_id: str, series_code: str, as_of_date: str, version_tag: str,
                            source: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    """Load index values (``[{"date": "2024-01-15", "value": 78.12}, ...]``)."""
    job = current_job()
    await job.update_progress(0)
    rows = [(tenant_id, series_code, date.fromisoformat(v["date"]), version_tag,
             Decimal(str(v["value"])), source) for v in data]
    pool = await db.pool()
    async with pool.acquire() as conn, conn.transaction():
        # An upsert: a retried or duplicated ingestion writes the same rows once.
        await conn.executemany(
            """INSERT INTO index_values (tenant_id, series_code, value_date, version_tag,
                                         value, source)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (tenant_id, series_code, value_date, version_tag)
               DO UPDATE SET value = EXCLUDED.value, source = EXCLUDED.source""", rows)
        await conn.execute(
            """INSERT INTO ingestions (tenant_id, series_code, as_of_date, version_tag,
                                       rows_loaded)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (tenant_id, series_code, as_of_date, version_tag)
               DO UPDATE SET rows_loaded = EXCLUDED.rows_loaded, finished_at = now()""",
            tenant_id, series_code, date.fromisoformat(as_of_date), version_tag, len(rows))
    await job.update_progress(100)
    return {"status": "SUCCESS", "rows": len(rows), "timestamp": _now()}


@app.task(queue="calculation", attempts=ATTEMPTS, backoff=CUSTOM_BACKOFF, timeout=300_000,
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def run_calculation(tenant_id: str, batch_id: str) -> dict[str, Any]:
    """Price every contract line of a batch from the index as of the batch's date,
    then queue the tenant's ``calc.batch.completed`` webhook."""
    job = current_job()
    await job.update_progress(0)
    pool = await db.pool()
    async with pool.acquire() as conn:
        batch = await conn.fetchrow(
            "UPDATE calc_batches SET runs = runs + 1, status = 'running', "
            "first_started_at = coalesce(first_started_at, clock_timestamp()) "
            "WHERE tenant_id = $1 AND batch_id = $2 RETURNING series_code, as_of_date",
            tenant_id, batch_id)
        if batch is None:
            raise UnrecoverableError(f"no batch {batch_id!r} for tenant {tenant_id!r}")
        # The final value wins over a preliminary one of the same date.
        index = await conn.fetchval(
            """SELECT value FROM index_values
               WHERE tenant_id = $1 AND series_code = $2 AND value_date <= $3
               ORDER BY value_date DESC, (version_tag = 'final') DESC LIMIT 1""",
            tenant_id, batch["series_code"], batch["as_of_date"])
        if index is None:
            raise LookupError(f"no {batch['series_code']} value on or before "
                              f"{batch['as_of_date']} for {tenant_id}")
        items = await conn.fetch(
            "SELECT contract_id, base_price, base_index FROM calc_items "
            "WHERE tenant_id = $1 AND batch_id = $2 ORDER BY contract_id", tenant_id, batch_id)
        await _step()
        await job.update_progress(33)
        results = [(tenant_id, batch_id, item["contract_id"], index,
                    (item["base_price"] * index / item["base_index"]).quantize(
                        CENT, ROUND_HALF_EVEN)) for item in items]
        await _step()
        await job.update_progress(66)
        message_id = f"msg-calc-{tenant_id}-{batch_id}"
        async with conn.transaction():
            await conn.executemany(
                """INSERT INTO calc_results (tenant_id, batch_id, contract_id, index_value,
                                             adjusted_price)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (tenant_id, batch_id, contract_id) DO UPDATE
                   SET index_value = EXCLUDED.index_value,
                       adjusted_price = EXCLUDED.adjusted_price""", results)
            await conn.execute(
                "UPDATE calc_batches SET status = 'completed', completed_at = now() "
                "WHERE tenant_id = $1 AND batch_id = $2", tenant_id, batch_id)
            payload = {"tenantId": tenant_id, "batchId": batch_id, "items": len(results),
                       "index": str(index)}
            await conn.execute(
                "INSERT INTO webhook_messages (message_id, tenant_id, event_type, payload) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING",
                message_id, tenant_id, "calc.batch.completed", json.dumps(payload))
    await _step()
    # After the commit; a job id per message, so a rerun of this job queues it once.
    from .queue import enqueue_webhook  # here: queue.py imports this module's tasks

    await enqueue_webhook(tenant_id=tenant_id, message_id=message_id,
                          event_type="calc.batch.completed")
    await job.update_progress(100)
    return {"status": "SUCCESS", "timestamp": _now(), "items": len(results)}


@app.task(queue="webhooks", attempts=5, backoff=CUSTOM_BACKOFF,
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def deliver_webhook(tenant_id: str, message_id: str, event_type: str) -> dict[str, Any]:
    """Deliver one outbox message to the tenant's endpoint, signed with its secret."""
    pool = await db.pool()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT m.payload, m.delivered_at, e.url, e.secret
               FROM webhook_messages m JOIN webhook_endpoints e USING (tenant_id)
               WHERE m.message_id = $1 AND m.tenant_id = $2""", message_id, tenant_id)
        if row is None:
            raise UnrecoverableError(f"no message {message_id!r} or endpoint for {tenant_id!r}")
        if row["delivered_at"] is not None:
            return {"status": "SUCCESS", "alreadyDelivered": True, "timestamp": _now()}
        await conn.execute("UPDATE webhook_messages SET attempts = attempts + 1 "
                           "WHERE message_id = $1", message_id)
    async with httpx.AsyncClient(timeout=10) as client:
        status = await webhooks.deliver(client, row["url"], row["secret"], message_id,
                                        event_type, json.loads(row["payload"]))
    async with pool.acquire() as conn:
        await conn.execute("UPDATE webhook_messages SET delivered_at = now(), last_status = $2 "
                           "WHERE message_id = $1", message_id, status)
    return {"status": "SUCCESS", "httpStatus": status, "timestamp": _now()}


@app.task(queue="reports", attempts=ATTEMPTS, backoff=CUSTOM_BACKOFF,
          remove_on_complete=KEEP_COMPLETED, remove_on_fail=KEEP_FAILED)
async def generate_report(tenant_id: str, report_type: str, batch_id: str, format: str,
                          user_id: str) -> dict[str, Any]:
    """Render a batch's price-math report and store it for the user to download."""
    job = current_job()
    await job.update_progress(0)
    pool = await db.pool()
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT r.contract_id, i.base_price, i.base_index, r.index_value,
                      r.adjusted_price
               FROM calc_results r JOIN calc_items i USING (tenant_id, batch_id, contract_id)
               WHERE r.tenant_id = $1 AND r.batch_id = $2 ORDER BY r.contract_id""",
            tenant_id, batch_id)
        await _step()
        await job.update_progress(50)
        content = reports.render(format, f"{report_type} {tenant_id} {batch_id}",
                                 [tuple(row.values()) for row in rows])
        await conn.execute(
            """INSERT INTO reports (tenant_id, report_type, batch_id, format, user_id,
                                    content, rows)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (tenant_id, report_type, batch_id, format)
               DO UPDATE SET content = EXCLUDED.content, rows = EXCLUDED.rows,
                             user_id = EXCLUDED.user_id, created_at = now()""",
            tenant_id, report_type, batch_id, format, user_id, content, len(rows))
    await job.update_progress(100)
    return {"status": "SUCCESS", "bytes": len(content), "rows": len(rows), "timestamp": _now()}


def _now() -> str:
    return datetime.now(UTC).isoformat()
