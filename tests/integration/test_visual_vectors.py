"""The visual vector's mechanics with the tiny model, real files, real SQLite and both vector-store backends:
new photos get it in the same pass, an old index (no visual vector) gains it on the next scan without re-embedding
its text-aligned vectors, image-only queries rank by it, and a photo without one still works.

Whether the visual vector tells near-duplicates from distinct photos is measured on real photos with offline-lite
(test_visual_real_photos.py, bench/dedupe_fit.py); here the tiny random tower only has to carry it through.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from indexer.stores.vectors import SEMANTIC, UPGRADE_SUFFIX, VISUAL, VectorFilter, VectorPoint, point_id
from indexer.stores.vectors_edge import EdgeVectorStore
from indexer.stores.vectors_server import ServerVectorStore
from models.visual import like_vector
from search.dedupe import collapse
from search.engine import SearchEngine
from search.query import build_query
from tests.imagegen import photo_like_image, write_jpeg

N_PHOTOS = 6


@pytest.fixture()
def library(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for seed in range(N_PHOTOS):
        write_jpeg(root / f"IMG_{seed:04d}.jpg", image=photo_like_image((320, 240), seed=seed))
    return root


def make_service(home: Path, root: Path, **overrides) -> IndexerService:
    settings = IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=2, batch_size=4,
                                        settle=0.2, serve=False, **overrides)
    return IndexerService(settings)


def semantic_vectors(svc: IndexerService) -> dict[str, np.ndarray]:
    return {p.id: p.vector for p in svc.store.scroll(svc.collection.name, with_vectors=True)}


def test_new_index_stores_both_vectors_in_one_pass(tmp_path, library):
    svc = make_service(tmp_path / "home", library)
    try:
        report = svc.scan()
        name = svc.collection.name
        assert report.embedded == N_PHOTOS and svc.pipeline.model_calls == N_PHOTOS
        dims = svc.store.vector_dims(name)
        bundle = svc.slot()
        assert dims == {SEMANTIC: bundle.dim, VISUAL: bundle.model.visual_dim}
        assert svc.catalog.visual_dim(name) == bundle.model.visual_dim  # the catalog records it
        from indexer.owner.status import status_report

        report_json = status_report(svc.catalog, svc.store, svc.settings)
        assert report_json["collection"]["visual_dim"] == bundle.model.visual_dim
        assert report_json["collection"]["points_without_visual"] == 0
        assert svc.store.count(name, VectorFilter(has_visual=False)) == 0
        for point in svc.store.scroll(name, with_vectors=True):
            assert point.visual is not None and abs(np.linalg.norm(point.visual) - 1) < 1e-3
            # the stored visual vector is what the model computes for that file
        path = library / "IMG_0000.jpg"
        from indexer.scan.decode import decode_image

        decoded = decode_image(path.read_bytes(), min_side=2 * bundle.input_size)
        semantic, visual = bundle.model.encode_images(bundle.preprocess(decoded.image)[None], with_visual=True)
        from indexer.scan.hashing import hash_file

        stored = svc.store.retrieve(name, [point_id(hash_file(path))], with_vectors=True)[0]
        np.testing.assert_allclose(stored.visual, visual[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(stored.vector, semantic[0].numpy(), atol=1e-4)
    finally:
        svc.close()


def test_old_index_gains_the_visual_vector_on_the_next_scan(tmp_path, library, caplog):
    home = tmp_path / "home"
    old = make_service(home, library, visual_vectors=False)  # what an index made before the visual vector holds
    try:
        old.scan()
        name = old.collection.name
        assert VISUAL not in old.store.vector_dims(name) and old.catalog.visual_dim(name) is None
        before = semantic_vectors(old)
    finally:
        old.close()

    # Until it is upgraded, the old index still answers image queries (in the text-aligned space).
    with _engine(home) as engine:
        page = engine.search(build_query(like=[library / "IMG_0001.jpg"]), min_score=0.0, limit=3)
        assert page.results and all(r.path != str(library / "IMG_0001.jpg") for r in page.results)

    caplog.set_level(logging.INFO)
    svc = make_service(home, library)
    try:
        assert svc.store.count(name, VectorFilter(has_visual=False)) == N_PHOTOS  # copied, not yet computed
        report = svc.scan()
        assert report.embedded == 0 and svc.pipeline.model_calls == 0  # the text-aligned vectors are not redone
        assert svc.store.count(name, VectorFilter(has_visual=False)) == 0
        assert svc.catalog.visual_dim(name) == svc.slot().model.visual_dim
        after = semantic_vectors(svc)
        assert after.keys() == before.keys()
        for key, vector in before.items():
            np.testing.assert_allclose(after[key], vector, atol=1e-6)  # kept as they were
        payloads = {p.payload["content_hash"] for p in svc.store.scroll(name)}
        assert len(payloads) == N_PHOTOS
        said = caplog.text
        assert "has no visual vector" in said and f"{N_PHOTOS} photos need a visual vector" in said
        assert "photos/s" in said  # the estimate at the measured rate
        assert UPGRADE_SUFFIX not in " ".join(svc.store.collections())
        assert svc.scan().embedded == 0  # and the next scan has nothing left to do
        assert f"{N_PHOTOS} photos need" not in caplog.text.replace(said, "")
    finally:
        svc.close()


class _engine:
    """A SearchEngine opened in this process, closed on exit."""

    def __init__(self, home: Path):
        self.engine = SearchEngine.open(home, prefer_owner=False)

    def __enter__(self) -> SearchEngine:
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.engine.close()


def test_like_ranks_by_the_visual_vector(tmp_path, library):
    home = tmp_path / "home"
    svc = make_service(home, library)
    try:
        svc.scan()
        name = svc.collection.name
        query_path = library / "IMG_0002.jpg"
        from indexer.scan.hashing import hash_file

        own = svc.store.retrieve(name, [point_id(hash_file(query_path))], with_vectors=True)[0]
        # the visual vector with its parts reweighted for neighbours (models.visual.like_vector), as stored
        expected = [h.id for h in svc.store.query(name, like_vector(own.visual), limit=N_PHOTOS, using=VISUAL)
                    if h.id != own.id]
    finally:
        svc.close()
    with _engine(home) as engine:
        assert engine.visual_complete()
        page = engine.search(build_query(like=[query_path]), min_score=0.0, limit=N_PHOTOS,
                             collapse_duplicates=False)
        got = [point_id(r.content_hash) for r in page.results]
        assert got == expected[: len(got)] and len(got) == N_PHOTOS - 1  # visual order, the photo itself left out
        # A text term makes it a text-aligned query again (the two spaces never mix).
        assert engine.visual_query_vector(build_query("a photo", like=[query_path])) is None


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_backends_store_and_query_the_named_vector(tmp_path, backend):
    store = EdgeVectorStore(tmp_path / "v") if backend == "edge" else ServerVectorStore.local(tmp_path / "q")
    rng = np.random.default_rng(0)

    def unit(d):
        v = rng.standard_normal(d).astype(np.float32)
        return v / np.linalg.norm(v)

    try:
        store.ensure_collection("old", 8)
        ids = [point_id(f"{i:02x}" * 32) for i in range(4)]
        semantic = {i: unit(8) for i in ids}
        store.upsert("old", [VectorPoint(i, semantic[i], {"n": k}) for k, i in enumerate(ids)])
        assert store.vector_dims("old") == {SEMANTIC: 8}
        store.add_visual("old", 4)
        store.add_visual("old", 4)  # idempotent
        assert store.vector_dims("old") == {SEMANTIC: 8, VISUAL: 4} and store.collections() == ["old"]
        assert store.count("old") == 4 and store.count("old", VectorFilter(has_visual=False)) == 4
        visual = {ids[0]: unit(4), ids[1]: unit(4)}
        store.set_visual("old", visual)
        assert store.count("old", VectorFilter(has_visual=True)) == 2
        points = store.retrieve("old", ids, with_vectors=True)
        for point in points:
            np.testing.assert_allclose(point.vector, semantic[point.id], atol=1e-6)  # survived the copy
        assert [p.visual is not None for p in points] == [True, True, False, False]
        assert [p.payload["n"] for p in points] == [0, 1, 2, 3]
        hits = store.query("old", visual[ids[1]], limit=4, using=VISUAL)
        assert [h.id for h in hits] == sorted(visual, key=lambda i: -float(visual[i] @ visual[ids[1]]))
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert len(store.query("old", semantic[ids[3]], limit=4)) == 4  # the text-aligned vector: every point
        with pytest.raises(ValueError, match="norm"):
            store.set_visual("old", {ids[2]: np.ones(4, np.float32)})
        with pytest.raises(ValueError, match="visual"):
            store.ensure_collection("old", 8, 5)
        store.ensure_collection("new", 8, 4)
        store.upsert("new", [VectorPoint(ids[0], semantic[ids[0]], {}, visual[ids[0]])])
        assert store.retrieve("new", [ids[0]], with_vectors=True)[0].visual is not None
    finally:
        store.close()


def test_an_interrupted_upgrade_is_finished(tmp_path):
    """A crash after the copy aside and the drop leaves only `<name>.upgrade`: the next add_visual finishes."""
    store = EdgeVectorStore(tmp_path / "v")
    try:
        vector = np.zeros(8, np.float32)
        vector[0] = 1
        store.ensure_collection("c" + UPGRADE_SUFFIX, 8, 4)
        store.upsert("c" + UPGRADE_SUFFIX, [VectorPoint(point_id("ab" * 32), vector, {"kept": True})])
        store.add_visual("c", 4)
        assert store.collections() == ["c"] and store.vector_dims("c") == {SEMANTIC: 8, VISUAL: 4}
        assert store.retrieve("c", [point_id("ab" * 32)])[0].payload == {"kept": True}
    finally:
        store.close()


def test_collapse_leaves_results_without_a_vector_alone():
    a = np.array([1.0, 0.0], np.float32)
    near = np.array([0.99, 0.141], np.float32) / np.linalg.norm([0.99, 0.141])
    far = np.array([0.0, 1.0], np.float32)
    assert collapse([a, None, near, far], 0.9) == [[0, 2], [1], [3]]
    assert collapse([None, a], 0.9) == [[0], [1]]


def test_fold_rule_reads_the_parts_of_visual_vectors():
    """Same thumbnail (a resize) folds; same features and layout (a crop) folds; same features alone does not."""
    import torch

    from models.visual import visual_vector
    from search.dedupe import FoldRule

    gen = torch.Generator().manual_seed(0)
    features = torch.randn(3, 16, generator=gen)
    pixels = torch.rand(3, 3, 32, 32, generator=gen)
    base = visual_vector(features[:1], pixels[:1])[0].numpy()
    resized = visual_vector(features[1:2], pixels[:1])[0].numpy()  # other features, same pixels
    other = visual_vector(features[:1], pixels[2:3])[0].numpy()  # same features, other pixels
    rule = FoldRule(fine=0.99, features=0.9, layout=0.9)
    assert collapse([base, resized], rule) == [[0, 1]]
    assert collapse([base, other], rule) == [[0], [1]]
    assert collapse([base, other], FoldRule(fine=0.99, features=0.9, layout=-1.0)) == [[0, 1]]


def test_like_through_the_owner_api_matches_in_process(tmp_path, library):
    """The owner's API carries the visual vector (query `using`, points' `visual`, `/dims`, embed_image): "more like
    this" through a running owner answers what the stores answer in-process."""
    from indexer.owner.api import ApiServer, create_app
    from indexer.owner.client import OwnerClient, RemoteVectorStore
    from indexer.owner.ownership import Ownership, free_port
    from search.backend import OwnerBackend

    home = tmp_path / "home"
    svc = make_service(home, library)
    svc.scan()
    ownership = Ownership.acquire(home, "test owner")
    server = ApiServer(create_app(svc, ownership.token), port=free_port())
    ownership.publish("127.0.0.1", server.start())
    try:
        client = OwnerClient.find(home)
        name = svc.collection.name
        remote = RemoteVectorStore(client)
        assert remote.vector_dims(name) == svc.store.vector_dims(name)
        ids = [p.id for p in svc.store.scroll(name)]
        for mine, theirs in zip(svc.store.retrieve(name, ids, with_vectors=True),
                                remote.retrieve(name, ids, with_vectors=True), strict=True):
            np.testing.assert_allclose(theirs.visual, mine.visual, atol=1e-6)
        vector, visual = client.embed_image_both(path=library / "IMG_0003.jpg")
        assert visual is not None and len(visual) == svc.slot().model.visual_dim
        assert [h.id for h in remote.query(name, visual, limit=3, using=VISUAL)] == [
            h.id for h in svc.store.query(name, visual, limit=3, using=VISUAL)]
        engine = SearchEngine(OwnerBackend(client, home))
        page = engine.search(build_query(like=[library / "IMG_0003.jpg"]), min_score=0.0, limit=N_PHOTOS,
                             collapse_duplicates=False)
        own = svc.store.retrieve(name, [point_id(page.results[0].content_hash)], with_vectors=True)
        assert engine.visual_query_vector(build_query(like=[library / "IMG_0003.jpg"])) is not None
        assert own and len(page.results) == N_PHOTOS - 1
    finally:
        server.stop()
        ownership.release()
        svc.close()
