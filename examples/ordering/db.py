"""The ordering platform's PostgreSQL access: one asyncpg pool per process,
read from ``$DATABASE_URL``, and the schema applied at start."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

__all__ = ["apply_schema", "close_pool", "pool"]

SCHEMA = Path(__file__).with_name("schema.sql")

_pool: asyncpg.Pool | None = None


async def pool() -> asyncpg.Pool:
    """This process's pool, made on first use from ``$DATABASE_URL``."""
    global _pool
    if _pool is None:
        _pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=8)
    return _pool


async def close_pool() -> None:
    """Close this process's pool (the next :func:`pool` makes a new one)."""
    global _pool
    if _pool is not None:
        await _pool.close()
        _pool = None


async def apply_schema(database_url: str) -> None:
    """Create the tables that do not exist yet."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SCHEMA.read_text())
    finally:
        await conn.close()
