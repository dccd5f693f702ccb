"""Integration fixtures: catalog backends.

`catalog_url` is parametrised over SQLite (always: a file in tmp_path) and PostgreSQL (only when the environment
variable LOUPE_TEST_PG_URL is set, else skipped). The PostgreSQL variant connects to that URL as an administrator
database, runs `CREATE DATABASE loupe_test_<random>` (so the URL's role needs CREATEDB), hands the test a URL to
that fresh, empty database and drops it afterwards (`DROP DATABASE … WITH (FORCE)` ends leftover connections).
To start a local server: `eval "$(bash scratch/pg_setup.sh)"`, which prints
`export LOUPE_TEST_PG_URL=postgresql+psycopg://loupe:loupe@127.0.0.1:5432/loupe`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from indexer.stores.catalog import Catalog

PG_ENV = "LOUPE_TEST_PG_URL"
CATALOG_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A URL to a new, empty PostgreSQL database, dropped after the test."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL to test against")
    name = f"loupe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=CATALOG_BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with Catalog.open(catalog_url) as opened:
        yield opened
