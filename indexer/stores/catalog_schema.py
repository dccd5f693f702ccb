"""The catalog's database layer: tables (SQLAlchemy Core), how SQLite and PostgreSQL are set up and driven, and
`Database` (an engine, the transaction runner and the `meta` key/value store) that
`indexer.stores.catalog.Catalog` extends.

Core tables rather than ORM classes: the catalog is a handful of set-based statements (upserts, batch updates) and
returns frozen records (`indexer.stores.records`), so there is no identity map or session state to manage. Databases get
the tables' shape only through `indexer.stores.migrations`; a test checks the two agree.

Concurrency: several threads or processes may write at once.
* SQLite: WAL (readers never block the writer, so searches run while the watcher writes) + a busy timeout, and
  write transactions start with BEGIN IMMEDIATE. A deferred transaction that reads and then writes cannot wait for
  the lock (SQLite answers SQLITE_BUSY at once without calling the busy handler), so writers take the lock up
  front and queue on the timeout instead.
* PostgreSQL: READ COMMITTED, upserts with ON CONFLICT (no unique-violation races), batches sorted by key so
  overlapping writers lock rows in the same order, and a retry on deadlock or serialization failure.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    case,
    create_engine,
    delete,
    event,
    null,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from indexer.stores import fsnames
from indexer.stores.records import (
    COLLECTION_STATUSES,
    FILE_STATUSES,
    TAG_SOURCES,
    CollectionInfo,
    ContentInfo,
    FileRecord,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0  # how long a SQLite writer waits for another writer before giving up
_RETRIES = 8
_CHUNK = 500  # rows per IN (...) list or executemany batch: far below both backends' bound-parameter limits
_PG_RETRYABLE = {"40001", "40P01", "23505"}  # serialization failure, deadlock detected, unique violation
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; PostgreSQL wants 64 bits.
_ID = BigInteger().with_variant(Integer, "sqlite")


class FsPath(TypeDecorator):
    """A file path: the filesystem's form in Python (undecodable bytes as surrogates), valid Unicode in the database
    (`indexer.stores.fsnames`), so a name that is not UTF-8 is stored, matched and read back exactly."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else fsnames.to_text(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else fsnames.from_text(value)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python, naive UTC in the database.

    SQLite has no timezone type and PostgreSQL's `timestamptz` converts to the session's zone; storing naive UTC
    behaves the same on both. Naive datetimes passed in are taken to be UTC already.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


def _in(column: str, values: tuple[str, ...]) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{column}_allowed")


metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("path", FsPath, nullable=False, unique=True),
    Column("folder", FsPath, nullable=False, index=True),
    Column("ext", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),  # ~1.7e18 today: PostgreSQL's 32-bit INTEGER would overflow
    Column("content_hash", String(128), index=True),
    Column("status", String(16), nullable=False, default="pending"),
    Column("error", Text),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("indexed_at", UTCDateTime),
    Column("deleted_at", UTCDateTime),
    _in("status", FILE_STATUSES),
    Index("ix_files_status", "status"),
)

contents = Table(
    "contents",
    metadata,
    Column("hash", String(128), primary_key=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("camera_make", Text),
    Column("camera_model", Text),
    Column("gps_lat", Float),
    Column("gps_lon", Float),
    Column("thumbnail", Text),
)

collections = Table(
    "collections",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("model", String(128), nullable=False),
    Column("image_tower_id", String(256), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    _in("status", COLLECTION_STATUSES),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("content_hash", String(128), ForeignKey("contents.hash", ondelete="CASCADE"), primary_key=True),
    Column("collection", String(128), ForeignKey("collections.name", ondelete="CASCADE"), primary_key=True),
    Column("stored_at", UTCDateTime, nullable=False),
    Index("ix_embeddings_collection", "collection"),
)

tags = Table(
    "tags",
    metadata,
    Column("content_hash", String(128), ForeignKey("contents.hash", ondelete="CASCADE"), primary_key=True),
    # source is part of the key: re-tagging with a new vocabulary replaces only 'zero-shot' rows and never
    # clobbers what a person tagged by hand; both may hold the same tag and readers let 'manual' win.
    Column("source", String(16), primary_key=True),
    Column("tag", String(256), primary_key=True),
    Column("score", Float, nullable=False),
    Column("tagged_at", UTCDateTime, nullable=False),
    _in("source", TAG_SOURCES),
    Index("ix_tags_tag", "tag"),
)

# What people wrote about a photo (indexer.scan.annotations): embedded XMP/IPTC keywords, descriptions and titles.
# Per content, like EXIF; sidecars are per path and read when payloads are built, so they are not stored here.
annotations = Table(
    "annotations",
    metadata,
    Column("content_hash", String(128), ForeignKey("contents.hash", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("position", Integer, primary_key=True),  # order within the kind, as the file lists them
    Column("value", Text, nullable=False),
    CheckConstraint("kind IN ('keyword', 'description', 'title')", name="ck_annotation_kind"),
)


def file_record(row: Row) -> FileRecord:
    return FileRecord(**{name: row._mapping[name] for name in files.c.keys()})


def content_info(row: Row) -> ContentInfo:
    return ContentInfo(**{name: row._mapping[name] for name in contents.c.keys()})


def collection_info(row: Row) -> CollectionInfo:
    return CollectionInfo(**{name: row._mapping[name] for name in collections.c.keys()})


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- engines ---------------------------------------------------------------------------------------------------


def catalog_url(url_or_path: str | os.PathLike[str]) -> str:
    """A SQLAlchemy URL; a bare path means a SQLite file there."""
    text = os.fspath(url_or_path)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


def make_engine(url: str) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ValueError(f"Loupe's catalog runs on SQLite or PostgreSQL, not {backend!r} ({url}).")


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    memory = database in (None, "", ":memory:")
    if not memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        poolclass=StaticPool if memory else None,  # an in-memory database exists in one connection only
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves: pysqlite's own BEGIN is always DEFERRED
        cursor = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("loupe_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def run_in_transaction(engine: Engine, work: Callable[[Connection], T], write: bool = True) -> T:
    """Run `work` in one transaction, retrying when a concurrent writer made it fail harmlessly."""
    for attempt in range(_RETRIES):
        try:
            with engine.connect() as conn:
                conn.execution_options(loupe_write=write)
                with conn.begin():
                    return work(conn)
        except DBAPIError as err:
            if attempt == _RETRIES - 1 or not _retryable(err):
                raise
            log.debug("catalog transaction retried after %s", err.orig)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


def _retryable(err: DBAPIError) -> bool:
    sqlstate = getattr(err.orig, "sqlstate", None)  # psycopg 3 exceptions carry the SQLSTATE
    if sqlstate is not None:
        return sqlstate in _PG_RETRYABLE
    message = str(err.orig).lower()
    return "database is locked" in message or "database is busy" in message


def insert_for(engine: Engine):
    """The dialect's INSERT, which has `on_conflict_do_update` on both SQLite and PostgreSQL."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def seen_files_upsert(engine: Engine):
    """INSERT a seen file, or refresh it: a changed size/mtime (or a deleted file back) makes it 'pending' again
    and forgets its hash, since the bytes may differ; an unchanged file keeps its status and hash."""
    stmt = insert_for(engine)(files)
    new = stmt.excluded
    changed = or_(files.c.size != new.size, files.c.mtime_ns != new.mtime_ns)
    again = or_(changed, files.c.status == "deleted")
    return stmt.on_conflict_do_update(
        index_elements=[files.c.path],
        set_={
            "size": new.size,
            "mtime_ns": new.mtime_ns,
            "content_hash": case((changed, null()), else_=files.c.content_hash),
            "status": case((again, "pending"), else_=files.c.status),
            "error": case((again, null()), else_=files.c.error),
            "updated_at": case((again, new.updated_at), else_=files.c.updated_at),
            "deleted_at": null(),
        },
    )


class Database:
    """An engine plus the transaction discipline above, and the `meta` key/value store (migrations use it too)."""

    def __init__(self, engine: Engine, where: str):
        self._engine = engine
        self.where = where  # the URL without its password, for messages
        self._insert = insert_for(engine)

    def close(self) -> None:
        self._engine.dispose()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, work: Callable[[Connection], T]) -> T:
        return run_in_transaction(self._engine, work, write=True)

    def _read(self, work: Callable[[Connection], T]) -> T:
        return run_in_transaction(self._engine, work, write=False)

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self._read(lambda conn: conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar())
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        stmt = self._insert(meta).values(key=key, value=value)
        stmt = stmt.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": stmt.excluded.value})
        self._tx(lambda conn: conn.execute(stmt))

    def delete_meta(self, key: str) -> None:
        self._tx(lambda conn: conn.execute(delete(meta).where(meta.c.key == key)))
