"""Fixtures of the examples' end-to-end tests: one private PostgreSQL for the
whole session (each example test gets a fresh database of its own), and a
Services factory (Redis, SMTP sink, HTTP receiver) per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import asyncpg
import pytest

from examples.support import PostgresServer, Services


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """$DATABASE_URL's server if set, else a private one for the session."""
    import os

    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with PostgresServer() as server:
        yield server.url


@pytest.fixture
async def database_url(postgres_admin_url: str) -> str:
    """A fresh, empty database on the session's server."""
    name = f"ex_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres_admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def services(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        Callable[..., Services]]:
    """services(smtp=..., http=...): started Services using the test's database."""
    started: list[Services] = []

    def make(*, smtp: bool = False, http: bool = False) -> Services:
        monkeypatch.setenv("DATABASE_URL", database_url)
        s = Services(smtp=smtp, http=http).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.close()
