"""Schema versions and the steps between them (rclip's habit: a list of functions, applied in order).

`MIGRATIONS[i]` takes a catalog from version `i` to `i + 1`; the version lives in `meta.schema_version`, an empty
database is version 0. A fresh catalog runs the very same steps as an old one, so every step is exercised by every
test run. Opening a catalog newer than the code is an error, never a guess: an older Loupe must not write rows it
does not understand.

Rule for later steps: never edit a released step. When step N changes a table, first freeze the table definitions
that step 1 creates (copy them here from `catalog_schema`), then write step N as the delta (ALTER TABLE, an index,
a data backfill), and bump `catalog_schema.SCHEMA_VERSION`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, inspect, select, text

from indexer.stores import catalog_schema as schema

log = logging.getLogger(__name__)

Migration = Callable[[Connection], None]
VERSION_KEY = "schema_version"
# Any constant: a PostgreSQL advisory lock so two processes opening a fresh catalog do not both create it.
_PG_MIGRATION_LOCK = 0x10_0BE_CA7


class SchemaTooNewError(RuntimeError):
    """The catalog was written by a newer Loupe."""


def _m1_initial(conn: Connection) -> None:
    """Files, contents, embeddings, collections, tags, meta."""
    step1 = (schema.meta, schema.files, schema.contents, schema.collections, schema.embeddings, schema.tags)
    schema.metadata.create_all(conn, tables=list(step1))


def _m2_annotations(conn: Connection) -> None:
    """Keywords, descriptions and titles people embedded in their photos (indexer.scan.annotations). Contents
    indexed before this step have none recorded until they are indexed again."""
    schema.annotations.create(conn)


MIGRATIONS: list[Migration] = [_m1_initial, _m2_annotations]
assert len(MIGRATIONS) == schema.SCHEMA_VERSION, "add a migration step when bumping SCHEMA_VERSION"


def schema_version(conn: Connection) -> int:
    """The catalog's version; 0 for an empty database."""
    if not inspect(conn).has_table(schema.meta.name):
        return 0
    value = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == VERSION_KEY)).scalar()
    return int(value) if value is not None else 0


def migrate(conn: Connection, where: str, steps: Sequence[Migration] | None = None) -> int:
    """Bring the catalog up to date inside the caller's write transaction; returns the version reached.

    Both SQLite and PostgreSQL have transactional DDL, so a failing step leaves the catalog at its old version.
    `where` names the catalog in error messages; `steps` is for tests.
    """
    steps = MIGRATIONS if steps is None else steps
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    version = schema_version(conn)
    if version > len(steps):
        raise SchemaTooNewError(
            f"The catalog {where} has schema version {version}, but this Loupe knows versions up to {len(steps)}. "
            "Upgrade Loupe (pip install -U loupe), or point --db-url / LOUPE_DB_URL at another catalog."
        )
    for index in range(version, len(steps)):
        log.info("migrating catalog %s: version %d -> %d (%s)", where, index, index + 1, steps[index].__name__)
        steps[index](conn)
        _set_version(conn, index + 1)
    return len(steps)


def _set_version(conn: Connection, version: int) -> None:
    table = schema.meta
    updated = conn.execute(table.update().where(table.c.key == VERSION_KEY).values(value=str(version))).rowcount
    if not updated:
        conn.execute(table.insert().values(key=VERSION_KEY, value=str(version)))
