"""The vector store on real Qdrant Edge and on qdrant-client's local mode (standing in for a Qdrant server).

The congruence test runs one sequence of operations against both and checks each answer against a brute-force
numpy reference, so the backends agree with each other *and* with the meaning of VectorFilter.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.stores.factory import open_vector_store
from indexer.stores.vectors import (
    Hit,
    StoreLockedError,
    UnknownCollectionError,
    VectorFilter,
    VectorPoint,
    VectorStore,
    VectorStoreUnavailableError,
    ancestor_folders,
    build_payload,
    point_id,
)
from indexer.stores.vectors_edge import EdgeVectorStore
from indexer.stores.vectors_server import ServerVectorStore

DIM = 16
FOLDERS = ["/photos/2023/trip", "/photos/2023/trip2", "/photos/2024", "/other"]
TAGS = ["dog", "cat", "beach", "sunset"]
CAMERAS = ["FUJIFILM X100V", "Apple iPhone 15", None]
Y2023, Y2024 = 1672531200.0, 1704067200.0  # 2023-01-01 and 2024-01-01, UTC

BACKENDS: dict[str, Callable[[Path], VectorStore]] = {
    "edge": lambda root: EdgeVectorStore(root / "vectors"),
    "local": lambda root: ServerVectorStore.local(root / "qdrant"),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Callable[[Path], VectorStore]:
    return BACKENDS[request.param]


@pytest.fixture
def store(backend: Callable[[Path], VectorStore], tmp_path: Path) -> Iterator[VectorStore]:
    opened = backend(tmp_path)
    yield opened
    opened.close()


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # (n, D)


def make_points(rng: np.random.Generator, n: int = 200) -> list[VectorPoint]:
    points = []
    for i, vector in enumerate(unit(rng, n)):
        content_hash = hashlib.sha256(str(i).encode()).hexdigest()
        exts = rng.choice(["jpg", "JPG", "png", "heic"], size=rng.integers(1, 3))
        paths = [f"{rng.choice(FOLDERS)}/img{i}_{k}.{ext}" for k, ext in enumerate(exts)]
        payload = build_payload(
            content_hash,
            paths,
            taken_at=float(rng.uniform(Y2023 - 3e7, Y2024 + 3e7)),
            width=int(rng.integers(100, 5000)),
            height=int(rng.integers(100, 5000)),
            tags=[t for t in TAGS if rng.random() < 0.4],
            camera=CAMERAS[int(rng.integers(0, 3))],
        )
        points.append(VectorPoint(point_id(content_hash), vector, payload))
    return points


def matches(payload: dict, flt: VectorFilter | None) -> bool:
    """The meaning of VectorFilter, written independently of both backends."""
    if flt is None:
        return True
    in_range = (flt.taken_from is None or payload["taken_at"] >= flt.taken_from) and (
        flt.taken_to is None or payload["taken_at"] < flt.taken_to
    )
    return (
        in_range
        and (flt.folder is None or flt.folder.rstrip("/") in payload["folders"])
        and all(t in payload["tags"] for t in flt.tags_all)
        and (not flt.tags_any or any(t in payload["tags"] for t in flt.tags_any))
        and (not flt.exts or any(e.lower().lstrip(".") in payload["ext"] for e in flt.exts))
        and (not flt.cameras or payload["camera"] in flt.cameras)
        and payload["content_hash"] not in flt.exclude_hashes
        and point_id(payload["content_hash"]) not in flt.exclude_ids
    )


def reference_query(points, vector, limit, offset, flt, threshold=None) -> list[tuple[str, float]]:
    scored = [(p.id, float(p.vector @ vector)) for p in points if matches(p.payload, flt)]
    scored = [s for s in scored if threshold is None or s[1] >= threshold]
    return sorted(scored, key=lambda s: -s[1])[offset : offset + limit]


FILTERS = [
    None,
    VectorFilter(folder="/photos/2023/trip"),  # must not match /photos/2023/trip2
    VectorFilter(folder="/photos/"),
    VectorFilter(taken_from=Y2023, taken_to=Y2024),
    VectorFilter(tags_all=("dog", "beach")),
    VectorFilter(tags_any=("cat", "sunset")),
    VectorFilter(exts=("PNG", ".heic")),
    VectorFilter(cameras=("FUJIFILM X100V",)),
    VectorFilter(folder="/photos", tags_any=("dog",), taken_from=Y2023, exts=("jpg",)),
]


def rounded(payload: dict) -> dict:
    """Qdrant Edge parses payload floats to within 1 ulp, not always exactly (12% of taken_at values in a trial)."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in payload.items()}


def _same_hits(a: list[Hit], b: list[Hit]) -> None:
    assert [h.id for h in a] == [h.id for h in b]
    assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
    assert [rounded(h.payload) for h in a] == [rounded(h.payload) for h in b]


def _check_queries(stores: list[VectorStore], points: list[VectorPoint], rng: np.random.Generator) -> None:
    excluded = VectorFilter(exclude_hashes=tuple(p.payload["content_hash"] for p in points[:50:3]))
    by_id = VectorFilter(exclude_ids=tuple(p.id for p in points[1:50:3]))
    for vector in unit(rng, 4):
        for flt in [*FILTERS, excluded, by_id]:
            for limit, offset in ((10, 0), (7, 5)):
                hits = [s.query("c", vector, limit=limit, offset=offset, filter=flt) for s in stores]
                _same_hits(hits[0], hits[1])
                expected = reference_query(points, vector, limit, offset, flt)
                assert [h.id for h in hits[0]] == [i for i, _ in expected], flt
                assert np.allclose([h.score for h in hits[0]], [s for _, s in expected], atol=1e-4)
            counts = {s.count("c", flt) for s in stores}
            assert counts == {sum(matches(p.payload, flt) for p in points)}, flt
        threshold = [s.query("c", vector, limit=50, score_threshold=0.3) for s in stores]
        _same_hits(*threshold)
        assert [h.id for h in threshold[0]] == [i for i, _ in reference_query(points, vector, 50, 0, None, 0.3)]


def _check_updates(stores: list[VectorStore], points: list[VectorPoint]) -> None:
    merged, replaced = [p.id for p in points[:10]], points[10]
    for s in stores:
        s.set_payload("c", merged, {"tags": ["new"], "extra": 1})
        s.overwrite_payload("c", replaced.id, {"content_hash": "x", "tags": []})
        s.delete("c", [p.id for p in points[150:170]] + [str(uuid.uuid4())])
    got = [s.retrieve("c", [replaced.id, points[0].id, points[160].id], with_vectors=True) for s in stores]
    expected = [{"content_hash": "x", "tags": []}, rounded({**points[0].payload, "tags": ["new"], "extra": 1})]
    assert [rounded(p.payload) for p in got[0]] == [rounded(p.payload) for p in got[1]] == expected
    assert np.allclose(got[0][1].vector, points[0].vector, atol=1e-6)
    assert np.allclose(got[1][1].vector, points[0].vector, atol=1e-6)
    assert [s.count("c", VectorFilter(tags_all=("new",))) for s in stores] == [10, 10]

    live = points[:150] + points[170:]
    flt = VectorFilter(folder="/photos")
    scrolled = [list(s.scroll("c", flt, with_vectors=True, batch=16)) for s in stores]
    expected_ids = sorted(p.id for p in live if p is not replaced and matches(p.payload, flt))
    assert [p.id for p in scrolled[0]] == [p.id for p in scrolled[1]] == expected_ids
    assert all(np.allclose(a.vector, b.vector, atol=1e-6) for a, b in zip(*scrolled, strict=True))
    assert [s.count("c") for s in stores] == [len(live)] * 2


def test_backends_agree_with_each_other_and_the_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    points = make_points(rng)
    stores = [BACKENDS["edge"](tmp_path), BACKENDS["local"](tmp_path)]
    try:
        for s in stores:
            s.ensure_collection("c", DIM)
            s.ensure_collection("c", DIM)  # idempotent
            s.upsert("c", points[:120])
            s.upsert("c", points[120:])
            assert s.collections() == ["c"] and s.count("c") == len(points)
        _check_queries(stores, points, rng)
        _check_updates(stores, points)
    finally:
        for s in stores:
            s.close()


# -- each backend on its own -----------------------------------------------------------------------------------


def test_reopen_after_close_keeps_data(backend: Callable[[Path], VectorStore], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    points = make_points(rng, 30)
    with backend(tmp_path) as store:
        store.ensure_collection("c", DIM)
        store.upsert("c", points)
        before = store.query("c", points[3].vector, limit=5)
    with backend(tmp_path) as store:
        assert store.collections() == ["c"] and store.count("c") == 30
        _same_hits(store.query("c", points[3].vector, limit=5), before)
        assert before[0].id == points[3].id and before[0].score == pytest.approx(1.0, abs=1e-5)


def test_non_unit_vectors_are_rejected(store: VectorStore) -> None:
    store.ensure_collection("c", DIM)
    good = VectorPoint(point_id("a" * 64), unit(np.random.default_rng(0), 1)[0], {})
    for bad in (good.vector * 1.01, np.zeros(DIM, np.float32), np.full(DIM, np.nan, np.float32), np.ones((2, 8))):
        with pytest.raises(ValueError, match="norm"):
            store.upsert("c", [good, VectorPoint(point_id("b" * 64), bad, {})])
    assert store.count("c") == 0  # nothing of a rejected batch is stored


def test_collections_lifecycle_and_errors(store: VectorStore) -> None:
    with pytest.raises(UnknownCollectionError):
        store.count("missing")
    with pytest.raises(ValueError, match="invalid collection name"):
        store.ensure_collection("../escape", DIM)
    store.ensure_collection("a", DIM)
    store.ensure_collection("b", 8)
    with pytest.raises(ValueError, match="16-d"):
        store.ensure_collection("a", 8)
    assert store.collections() == ["a", "b"]
    store.drop_collection("a")
    assert store.collections() == ["b"]
    assert store.retrieve("b", [point_id("c" * 64)]) == []


def test_point_ids_are_stable_uuids_of_the_hash() -> None:
    content_hash = hashlib.sha256(b"photo").hexdigest()
    assert point_id(content_hash) == point_id(content_hash.upper()) == str(uuid.UUID(content_hash[:32]))
    assert point_id("not-hex") == point_id("not-hex") != point_id("not-hex2")
    uuid.UUID(point_id("not-hex"))


def test_payload_convention() -> None:
    payload = build_payload("h", ["/a/b/x.JPG", "/a/c/y.png", "/a/b/z.jpg"], 1.5, 4, 3, ["dog", "dog"], None)
    assert payload["folders"] == ["/", "/a", "/a/b", "/a/c"] == ancestor_folders(payload["paths"])
    assert payload["ext"] == ["jpg", "png"] and payload["tags"] == ["dog"] and payload["taken_at"] == 1.5


# -- ownership, servers, factory -------------------------------------------------------------------------------

_SECOND_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import qdrant_edge
    from indexer.stores.vectors import StoreLockedError
    from indexer.stores.vectors_edge import EdgeVectorStore, _edge_call
    root = Path(sys.argv[1])
    for attempt in (lambda: EdgeVectorStore(root),  # the store's own lock file
                    lambda: _edge_call(root / "c", qdrant_edge.EdgeShard.load, str(root / "c"))):  # Edge's WAL lock
        try:
            attempt()
        except StoreLockedError as err:
            print("LOCKED:", err)
    """
)


def test_second_process_gets_a_clear_locked_error(tmp_path: Path) -> None:
    with EdgeVectorStore(tmp_path / "vectors") as store:
        store.ensure_collection("c", DIM)
        out = subprocess.run(
            [sys.executable, "-c", _SECOND_PROCESS, str(tmp_path / "vectors")], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == 2 and all("another Loupe process owns this data home" in line for line in lines)
    EdgeVectorStore(tmp_path / "vectors").close()  # released on close


def test_local_mode_second_client_is_locked(tmp_path: Path) -> None:
    with ServerVectorStore.local(tmp_path / "q"), pytest.raises(StoreLockedError, match="another Loupe process"):
        ServerVectorStore.local(tmp_path / "q")


def test_local_mode_warns_past_its_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """qdrant-client warns above 20,000 points in local mode; lowered here so the test stays fast."""
    from qdrant_client.local.local_collection import LocalCollection

    monkeypatch.setattr(LocalCollection, "LARGE_DATA_THRESHOLD", 20)
    with ServerVectorStore.local(None) as store, pytest.warns(UserWarning, match="not recommended"):
        store.ensure_collection("c", DIM)
        store.upsert("c", make_points(np.random.default_rng(2), 25))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(VectorStoreUnavailableError, match=f"Cannot reach the Qdrant server at {url}"):
        open_vector_store(tmp_path, url=url, shard_number=2, timeout=2)


def test_factory_and_cluster_options(tmp_path: Path) -> None:
    with open_vector_store(tmp_path) as store:
        assert isinstance(store, EdgeVectorStore) and store.root == tmp_path / "vectors"
    from qdrant_client import QdrantClient

    options = dict(shard_number=2, replication_factor=2, write_consistency_factor=1)
    with ServerVectorStore(QdrantClient(location=":memory:"), "memory", local=True, **options) as store:
        store.ensure_collection("c", DIM)  # passed through to create_collection; harmless in local mode
        assert store.collections() == ["c"]
    with pytest.raises(TypeError, match="shards"):
        ServerVectorStore(QdrantClient(location=":memory:"), "memory", shards=2)
