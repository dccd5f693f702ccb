"""The catalog: what the indexer knows about files, photos (content hashes), vector collections and tags.

SQLite under the data home by default, any PostgreSQL URL for shared deployments (see `catalog_schema` for how
both are set up for concurrent writers). Every public method is one transaction and returns frozen records
(`indexer.stores.records`), so callers never hold database state; methods take lists where the indexer works in batches.

Crash safety: the indexer stores a vector first, then `record_embeddings`, then `mark_indexed`; `mark_indexed`
with a collection refuses files whose vector is not recorded, so the catalog never claims work that was not done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Row, Select, Table, and_, delete, exists, func, or_, select, union, update
from sqlalchemy.engine import make_url

from indexer.stores import catalog_schema as schema
from indexer.stores import fsnames
from indexer.stores.catalog_schema import annotations, collections, contents, embeddings, files, meta, tags
from indexer.stores.catalog_schema import chunks as _chunks
from indexer.stores.catalog_schema import utc_now as _now
from indexer.stores.migrations import migrate
from indexer.stores.records import (
    FILE_STATUSES,
    CollectionInfo,
    CollectionStatus,
    ContentInfo,
    FileRecord,
    FileStatus,
    SeenFile,
    TagSource,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
META_ACTIVE_COLLECTION = "active_collection"
META_VISUAL_DIM = "visual_dim:{}"  # the collection has a visual vector of this size
META_INFERENCE = "inference:{}"  # JSON list: what embedded the collection's images ('torch fp32', 'torch bf16', …)
META_DEFAULT_MODEL = "default_model"
_MAX_ERROR_LEN = 2000
MOVED_TO = "moved to "  # the note on a deleted path whose photo was renamed or moved (`record_moves`)


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lstrip(".").lower()


def _rows_in(conn: Connection, query: Select, column: Column, keys: Sequence[str]) -> Iterator[Row]:
    """`query` restricted to rows whose `column` is in `keys`, a chunk of keys at a time."""
    for chunk in _chunks(keys):
        yield from conn.execute(query.where(column.in_(chunk)))


def _files_by_path(conn: Connection, paths: Sequence[str]) -> dict[str, FileRecord]:
    return {row.path: schema.file_record(row) for row in _rows_in(conn, select(files), files.c.path, paths)}


class Catalog(schema.Database):
    """Files, contents, vector collections, embeddings, tags and settings (meta) of one data home."""

    @classmethod
    def open(cls, url_or_path: str | os.PathLike[str]) -> Catalog:
        """Open (creating or migrating as needed) the catalog at a SQLAlchemy URL or a SQLite file path."""
        url = schema.catalog_url(url_or_path)
        engine = schema.make_engine(url)
        catalog = cls(engine, where=make_url(url).render_as_string(hide_password=True))
        try:
            catalog._tx(lambda conn: migrate(conn, catalog.where))
        except BaseException:
            engine.dispose()
            raise
        return catalog

    @classmethod
    def for_home(cls, home: Path, url: str | None = None) -> Catalog:
        """The data home's catalog: `url` when given (PostgreSQL for shared use), else `<home>/catalog.db` (0600)."""
        from indexer.stores.homedir import prepare_home, private_file

        prepare_home(home)
        return cls.open(url or private_file(home / "catalog.db"))

    def __enter__(self) -> Catalog:
        return self

    # -- files --------------------------------------------------------------------------------------------------

    def upsert_seen_files(self, seen: Iterable[SeenFile]) -> list[FileRecord]:
        """Record files found by a scan or an event; returns their records, in path order.

        A new path, or one whose size or mtime changed, becomes 'pending' (and forgets its hash: the bytes may
        differ). A deleted path that reappears becomes 'pending' again. An unchanged file keeps its status, so a
        'failed' file is not retried until it changes (the reconciler retries `records.UNREADABLE` failures).
        """
        latest = {item.path: item for item in seen}
        now = _now()
        rows = [
            dict(path=p, folder=os.path.dirname(p), ext=_ext(p), size=s.size, mtime_ns=s.mtime_ns,
                 status="pending", first_seen=now, updated_at=now)
            for p, s in sorted(latest.items())
        ]  # fmt: skip
        stmt = schema.seen_files_upsert(self._engine)

        def work(conn: Connection) -> list[FileRecord]:
            for chunk in _chunks(rows):
                conn.execute(stmt, list(chunk))
            found = _files_by_path(conn, [row["path"] for row in rows])
            return [found[row["path"]] for row in rows]

        return self._tx(work) if rows else []

    def upsert_seen_file(self, path: str, size: int, mtime_ns: int) -> FileRecord:
        return self.upsert_seen_files([SeenFile(path, size, mtime_ns)])[0]

    def get_file(self, path: str) -> FileRecord | None:
        return self.get_files([path]).get(path)

    def get_files(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        return self._read(lambda conn: _files_by_path(conn, sorted(set(paths))))

    def files_under(self, folder: str, statuses: Iterable[FileStatus] | None = None) -> list[FileRecord]:
        """Files in `folder` or below it, by path. '/a/b' covers '/a/b/x.jpg' and '/a/b/c/y.jpg', not '/a/bc'."""
        folder = os.path.normpath(folder)
        prefix = folder if folder.endswith(os.sep) else folder + os.sep
        # substr, not LIKE: SQLite's LIKE ignores ASCII case and both treat '_' and '%' in paths as wildcards.
        prefix = fsnames.to_text(prefix)  # substr works on the stored (text) form of the path
        inside = or_(files.c.folder == folder, func.substr(files.c.folder, 1, len(prefix)) == prefix)
        query = select(files).where(inside).order_by(files.c.path)
        if statuses is not None:
            query = query.where(files.c.status.in_(list(statuses)))
        return self._read(lambda conn: [schema.file_record(row) for row in conn.execute(query)])

    def set_hashes(self, hashes: Mapping[str, str]) -> int:
        """Store the content hash of each path (path → hash); returns how many files were found."""
        return self._update_each(hashes, lambda h: {"content_hash": h})

    def set_hash(self, path: str, content_hash: str) -> None:
        self.set_hashes({path: content_hash})

    def mark_pending(self, paths: Iterable[str]) -> int:
        """Queue files for (re)indexing, e.g. after a model change or a manual retry of failures."""
        return self._update_status(paths, status="pending", error=None)

    def mark_indexed(self, paths: Iterable[str], collection: str | None = None) -> int:
        """Mark hashed files indexed; with `collection`, only those whose vector is recorded there.

        Returns how many files were marked: fewer than asked means some had no hash (or no recorded vector).
        """
        where = [files.c.content_hash.is_not(None)]
        if collection is not None:
            stored = and_(embeddings.c.content_hash == files.c.content_hash, embeddings.c.collection == collection)
            where.append(exists().where(stored))
        return self._update_status(paths, where, status="indexed", error=None, indexed_at=_now())

    def mark_failed(self, path: str, reason: str) -> None:
        self.mark_failed_many({path: reason})

    def mark_failed_many(self, reasons: Mapping[str, str]) -> int:
        """Record per-file failures (path → reason) so a scan skips them until the file changes."""
        return self._update_each(reasons, lambda r: {"status": "failed", "error": r[:_MAX_ERROR_LEN]})

    def mark_deleted(self, paths: Iterable[str]) -> int:
        """Files gone from disk. Their rows stay (with the hash) so a later sweep can drop orphaned vectors."""
        live = [files.c.status != "deleted"]
        return self._update_status(paths, live, status="deleted", deleted_at=_now())

    def _update_status(self, paths: Iterable[str], where: Sequence[Any] = (), **values: Any) -> int:
        ordered = sorted(set(paths))
        values["updated_at"] = _now()

        def work(conn: Connection) -> int:
            total = 0
            for chunk in _chunks(ordered):
                stmt = update(files).where(files.c.path.in_(chunk), *where).values(**values)
                total += conn.execute(stmt).rowcount
            return total

        return self._tx(work) if ordered else 0

    def _update_each(self, per_path: Mapping[str, T], values: Callable[[T], dict[str, Any]]) -> int:
        now = _now()

        def work(conn: Connection) -> int:
            total = 0
            for path in sorted(per_path):
                stmt = update(files).where(files.c.path == path).values(updated_at=now, **values(per_path[path]))
                total += conn.execute(stmt).rowcount
            return total

        return self._tx(work) if per_path else 0

    def paths_for_hash(self, content_hash: str, include_deleted: bool = False) -> list[str]:
        return self.paths_for_hashes([content_hash], include_deleted).get(content_hash, [])

    def paths_for_hashes(self, hashes: Iterable[str], include_deleted: bool = False) -> dict[str, list[str]]:
        """hash → its paths, sorted (live paths only unless `include_deleted`); hashes without paths are absent."""
        wanted = sorted(set(hashes))

        query = select(files.c.content_hash, files.c.path).order_by(files.c.path)
        if not include_deleted:
            query = query.where(files.c.status != "deleted")

        def work(conn: Connection) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for content_hash, path in _rows_in(conn, query, files.c.content_hash, wanted):
                out.setdefault(content_hash, []).append(path)
            return out

        return self._read(work)

    def hashes_without_live_paths(self) -> list[str]:
        """Known contents whose every path is deleted: their vectors, tags and thumbnails can go."""
        live = select(files.c.content_hash).where(files.c.status != "deleted", files.c.content_hash.is_not(None))
        known = union(
            select(contents.c.hash),
            select(files.c.content_hash.label("hash")).where(files.c.content_hash.is_not(None)),
        ).subquery()
        query = select(known.c.hash).where(known.c.hash.not_in(live)).order_by(known.c.hash)
        return self._read(lambda conn: list(conn.execute(query).scalars()))

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every failed file, by path."""
        query = select(files.c.path, files.c.error).where(files.c.status == "failed").order_by(files.c.path)
        return self._read(lambda conn: [(path, error or "") for path, error in conn.execute(query)])

    def counts(self, collection: str | None = None) -> dict[str, int]:
        """Files per status (every status present). With `collection`, also 'embedded': live files whose vector
        is recorded in that collection."""
        query = select(files.c.status, func.count()).group_by(files.c.status)

        def work(conn: Connection) -> dict[str, int]:
            out = dict.fromkeys(FILE_STATUSES, 0)
            out.update({status: n for status, n in conn.execute(query)})
            if collection is not None:
                join = files.join(embeddings, embeddings.c.content_hash == files.c.content_hash)
                stored = (
                    select(func.count())
                    .select_from(join)
                    .where(embeddings.c.collection == collection, files.c.status != "deleted")
                )
                out["embedded"] = conn.execute(stored).scalar_one()
            return out

        return self._read(work)

    def record_moves(self, paths: Iterable[str], since: datetime) -> dict[str, str]:
        """Among deleted `paths`, those whose content now lives at a path that (re)appeared at or after `since`
        (the start of the scan or event batch that saw them vanish): renames and moves, noted on the old row as
        'moved to NEW' so that `moved_count` can tell them from deletions. Returns {old path: new path}."""
        dead, live = files.alias("dead"), files.alias("live")
        query = (select(dead.c.path, func.min(live.c.path))
                 .join(live, and_(live.c.content_hash == dead.c.content_hash, live.c.status != "deleted",
                                  live.c.updated_at >= since))
                 .where(dead.c.status == "deleted").group_by(dead.c.path))
        chunks = list(_chunks(sorted(set(paths))))

        def work(conn: Connection) -> dict[str, str]:
            moves = {old: new for chunk in chunks for old, new in conn.execute(query.where(dead.c.path.in_(chunk)))}
            for old, new in sorted(moves.items()):
                conn.execute(update(files).where(files.c.path == old).values(error=f"{MOVED_TO}{new}"[:_MAX_ERROR_LEN]))
            return moves

        return self._tx(work) if chunks else {}

    def moved_count(self) -> int:
        """Deleted paths that were renames or moves (see `record_moves`); `counts()` files them under 'deleted'."""
        query = select(func.count()).where(files.c.status == "deleted",
                                           func.substr(files.c.error, 1, len(MOVED_TO)) == MOVED_TO)
        return self._read(lambda conn: conn.execute(query).scalar_one())

    # -- contents -----------------------------------------------------------------------------------------------

    def upsert_contents(self, infos: Iterable[ContentInfo]) -> None:
        """Insert or refresh photo metadata; a None thumbnail keeps the one already recorded."""
        rows = [vars(info) for info in sorted({i.hash: i for i in infos}.values(), key=lambda i: i.hash)]
        stmt = self._insert(contents)
        fields = {c.name: stmt.excluded[c.name] for c in contents.c if c.name != "hash"}
        fields["thumbnail"] = func.coalesce(stmt.excluded.thumbnail, contents.c.thumbnail)
        stmt = stmt.on_conflict_do_update(index_elements=[contents.c.hash], set_=fields)
        if rows:
            self._tx(lambda conn: [conn.execute(stmt, list(chunk)) for chunk in _chunks(rows)])

    def upsert_content(self, info: ContentInfo) -> None:
        self.upsert_contents([info])

    def content(self, content_hash: str) -> ContentInfo | None:
        return self.contents([content_hash]).get(content_hash)

    def contents(self, hashes: Iterable[str]) -> dict[str, ContentInfo]:
        wanted = sorted(set(hashes))

        def work(conn: Connection) -> dict[str, ContentInfo]:
            rows = _rows_in(conn, select(contents), contents.c.hash, wanted)
            return {row.hash: schema.content_info(row) for row in rows}

        return self._read(work)

    def delete_contents(self, hashes: Iterable[str]) -> int:
        """Forget photos entirely (their embeddings and tags go with them); file rows keep their hash."""
        return self._delete_where(contents, contents.c.hash, hashes)

    def _delete_where(self, table: Table, column: Column, keys: Iterable[str], *where: Any) -> int:
        ordered = sorted(set(keys))

        def work(conn: Connection) -> int:
            return sum(conn.execute(delete(table).where(column.in_(c), *where)).rowcount for c in _chunks(ordered))

        return self._tx(work) if ordered else 0

    # -- embeddings ---------------------------------------------------------------------------------------------

    def record_embeddings(self, hashes: Iterable[str], collection: str) -> None:
        """Note that these contents' vectors are stored in `collection` (call after the vector store's upsert)."""
        now = _now()
        rows = [{"content_hash": h, "collection": collection, "stored_at": now} for h in sorted(set(hashes))]
        stmt = self._insert(embeddings)
        stmt = stmt.on_conflict_do_update(index_elements=list(embeddings.primary_key), set_={"stored_at": now})
        if rows:
            self._tx(lambda conn: [conn.execute(stmt, list(chunk)) for chunk in _chunks(rows)])

    def forget_embeddings(self, hashes: Iterable[str], collection: str) -> int:
        return self._delete_where(embeddings, embeddings.c.content_hash, hashes, embeddings.c.collection == collection)

    def embedded_hashes(self, collection: str) -> set[str]:
        """Every content whose vector is recorded in `collection` (the self-check compares it with the store)."""
        query = select(embeddings.c.content_hash).where(embeddings.c.collection == collection)
        return self._read(lambda conn: set(conn.execute(query).scalars()))

    def has_embedding(self, content_hash: str, collection: str) -> bool:
        return not self.missing_embeddings([content_hash], collection)

    def missing_embeddings(self, hashes: Iterable[str], collection: str) -> set[str]:
        """The subset of `hashes` with no vector recorded in `collection`: the only ones the model must see."""
        wanted = sorted(set(hashes))

        query = select(embeddings.c.content_hash).where(embeddings.c.collection == collection)

        def work(conn: Connection) -> set[str]:
            return set(wanted) - {row[0] for row in _rows_in(conn, query, embeddings.c.content_hash, wanted)}

        return self._read(work)

    # -- collections --------------------------------------------------------------------------------------------

    def add_collection(self, name: str, model: str, image_tower_id: str, dim: int) -> CollectionInfo:
        """Register a vector collection as 'building'; adding the same one again returns it unchanged."""
        row = dict(name=name, model=model, image_tower_id=image_tower_id, dim=dim, status="building",
                   created_at=_now())  # fmt: skip
        self._tx(lambda conn: conn.execute(self._insert(collections).on_conflict_do_nothing(), row))
        found = self.get_collection(name)
        assert found is not None
        if (found.image_tower_id, found.dim) != (image_tower_id, dim):
            raise ValueError(
                f"collection {name!r} already holds vectors of tower {found.image_tower_id!r} (dim {found.dim}), "
                f"not {image_tower_id!r} (dim {dim}); vectors of different towers never share a collection."
            )
        return found

    def get_collection(self, name: str) -> CollectionInfo | None:
        query = select(collections).where(collections.c.name == name)
        return self._read(lambda conn: next((schema.collection_info(r) for r in conn.execute(query)), None))

    def list_collections(self) -> list[CollectionInfo]:
        query = select(collections).order_by(collections.c.created_at, collections.c.name)
        return self._read(lambda conn: [schema.collection_info(row) for row in conn.execute(query)])

    def set_collection_status(self, name: str, status: CollectionStatus) -> None:
        """'ready' stamps completed_at: every file was embedded into it."""
        values: dict[str, Any] = {"status": status}
        if status == "ready":
            values["completed_at"] = _now()
        stmt = update(collections).where(collections.c.name == name).values(**values)
        if not self._tx(lambda conn: conn.execute(stmt).rowcount):
            raise KeyError(f"no collection {name!r} in the catalog {self.where}")

    def set_collection_model(self, name: str, model: str) -> None:
        """Record which preset builds a collection's space (a preset name that now builds another space hands its
        old collections to the preset that still builds theirs: `models.registry.retired_variant`)."""
        stmt = update(collections).where(collections.c.name == name).values(model=model)
        if not self._tx(lambda conn: conn.execute(stmt).rowcount):
            raise KeyError(f"no collection {name!r} in the catalog {self.where}")

    def delete_collection(self, name: str) -> None:
        """Forget a collection and its embedding records (drop its vectors from the vector store too)."""

        def work(conn: Connection) -> None:
            conn.execute(delete(embeddings).where(embeddings.c.collection == name))
            conn.execute(delete(collections).where(collections.c.name == name))
            conn.execute(delete(meta).where(meta.c.key == META_ACTIVE_COLLECTION, meta.c.value == name))
            conn.execute(delete(meta).where(meta.c.key == META_VISUAL_DIM.format(name)))
            conn.execute(delete(meta).where(meta.c.key == META_INFERENCE.format(name)))

        self._tx(work)

    def inference(self, name: str) -> list[str]:
        """What embedded the collection's images, in order of first use: 'torch fp32', 'onnxruntime fp32',
        'torch bf16', 'torch cuda autocast bf16'. Each matches torch fp32's vectors at cos ≥ 0.999 (models.runtime
        uses no option that does not), which is why they share one collection. Empty for collections made before
        this was recorded."""
        value = self.get_meta(META_INFERENCE.format(name))
        return list(json.loads(value)) if value else []

    def note_inference(self, name: str, label: str) -> None:
        """Record that `label` embedded images into collection `name` (once per label)."""
        seen = self.inference(name)
        if label not in seen:
            self.set_meta(META_INFERENCE.format(name), json.dumps([*seen, label]))

    def visual_dim(self, name: str) -> int | None:
        """Size of the collection's visual vector (near-duplicates, "more like this"); None when it has none yet.
        Kept in `meta` (`visual_dim:<collection>`), so collections made before it need no schema change."""
        value = self.get_meta(META_VISUAL_DIM.format(name))
        return int(value) if value else None

    def set_visual_dim(self, name: str, dim: int) -> None:
        """Record that the vector store's collection declares the visual vector (of `dim`)."""
        self.set_meta(META_VISUAL_DIM.format(name), str(int(dim)))

    def active_collection(self) -> CollectionInfo | None:
        """The collection searches read from."""
        name = self.get_meta(META_ACTIVE_COLLECTION)
        return self.get_collection(name) if name else None

    def set_active_collection(self, name: str) -> None:
        found = self.get_collection(name)
        if found is None or found.status == "retired":
            raise ValueError(f"cannot activate collection {name!r}: it is {found.status if found else 'unknown'}")
        self.set_meta(META_ACTIVE_COLLECTION, name)

    # -- tags ---------------------------------------------------------------------------------------------------

    def set_tags(self, content_hash: str, scores: Mapping[str, float], source: TagSource = "zero-shot") -> None:
        self.set_tags_many({content_hash: scores}, source)

    def set_tags_many(self, scores: Mapping[str, Mapping[str, float]], source: TagSource = "zero-shot") -> None:
        """Replace `source`'s tags of each content (hash → {tag: score}); the other source's tags stay."""
        now = _now()
        ordered = sorted(scores)
        rows = [dict(content_hash=h, source=source, tag=t, score=float(s), tagged_at=now)
                for h in ordered for t, s in sorted(scores[h].items())]  # fmt: skip

        def work(conn: Connection) -> None:
            for chunk in _chunks(ordered):
                conn.execute(delete(tags).where(tags.c.content_hash.in_(chunk), tags.c.source == source))
            for chunk in _chunks(rows):
                conn.execute(tags.insert(), list(chunk))

        if ordered:
            self._tx(work)

    def tags_for(self, hashes: Iterable[str], source: TagSource | None = None) -> dict[str, dict[str, float]]:
        """hash → {tag: score}; where both sources hold a tag, the person's ('manual') score wins.
        `source` keeps one source's tags only (e.g. 'manual': what a person wrote, for search words and captions)."""
        wanted = sorted(set(hashes))
        # 'zero-shot' sorts after 'manual', so reading in descending source order lets manual rows overwrite.
        query = select(tags.c.content_hash, tags.c.tag, tags.c.score).order_by(tags.c.source.desc())
        if source is not None:
            query = query.where(tags.c.source == source)

        def work(conn: Connection) -> dict[str, dict[str, float]]:
            out: dict[str, dict[str, float]] = {}
            for content_hash, tag, score in _rows_in(conn, query, tags.c.content_hash, wanted):
                out.setdefault(content_hash, {})[tag] = score
            return out

        return self._read(work)

    # -- annotations ---------------------------------------------------------------------------------------------

    def set_annotations(self, found: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        """Replace the embedded annotations of each content (hash → {kind: [values]}; {} clears them)."""
        ordered = sorted(found)
        rows = [dict(content_hash=h, kind=kind, position=i, value=value)
                for h in ordered for kind, values in sorted(found[h].items()) for i, value in enumerate(values)]

        def work(conn: Connection) -> None:
            for chunk in _chunks(ordered):
                conn.execute(delete(annotations).where(annotations.c.content_hash.in_(chunk)))
            for chunk in _chunks(rows):
                conn.execute(annotations.insert(), list(chunk))

        if ordered:
            self._tx(work)

    def annotations_for(self, hashes: Iterable[str]) -> dict[str, dict[str, list[str]]]:
        """hash → {kind: [values]} of the contents that have any."""
        wanted = sorted(set(hashes))
        query = select(annotations.c.content_hash, annotations.c.kind, annotations.c.value).order_by(
            annotations.c.content_hash, annotations.c.kind, annotations.c.position)

        def work(conn: Connection) -> dict[str, dict[str, list[str]]]:
            out: dict[str, dict[str, list[str]]] = {}
            for content_hash, kind, value in _rows_in(conn, query, annotations.c.content_hash, wanted):
                out.setdefault(content_hash, {}).setdefault(kind, []).append(value)
            return out

        return self._read(work)
