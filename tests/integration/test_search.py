"""Search on a small indexed library with known answers: every query form and filter, paging, near-duplicate
collapse, and in-process vs through-the-owner congruence (test-tiny for mechanics)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from indexer.stores.vectors import VectorFilter
from search.backend import LocalBackend, NoIndexError
from search.engine import SearchEngine
from search.query import build_query, parse_inline
from tests.imagegen import photo_like_image, write_jpeg, write_png


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """10 photos in two folders with dates and cameras, a PNG, and a re-encoded copy (13 files)."""
    root = tmp_path_factory.mktemp("lib") / "photos"
    for folder, year, make in (("2021", 2021, "Canon"), ("2023", 2023, "Nikon")):
        (root / folder).mkdir(parents=True)
        for i in range(5):
            write_jpeg(root / folder / f"p{i}.jpg", image=photo_like_image((160, 120), seed=year + i),
                       exif={"taken_at": datetime(year, 6, 1 + i, 12), "make": make, "model": f"{make} X"})
    write_png(root / "2023" / "drawing.png", image=photo_like_image((160, 120), seed=99))
    original = photo_like_image((320, 240), seed=7)
    write_jpeg(root / "burst-a.jpg", image=original, quality=95)
    write_jpeg(root / "burst-b.jpg", image=original.resize((300, 225), Image.LANCZOS), quality=70)
    home = tmp_path_factory.mktemp("home")
    settings = IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=2, batch_size=8)
    service = IndexerService(settings)
    assert service.scan().embedded == 13
    service.close()
    return home, root


@pytest.fixture()
def engine(indexed):
    home, _ = indexed
    eng = SearchEngine(LocalBackend(home))
    yield eng
    eng.close()


def everything(engine, query, **kw):
    return engine.search(query, min_score=0.0, collapse_duplicates=False, limit=100, **kw).results


def test_inline_syntax_and_flags_build_the_same_query():
    assert [(t.weight, t.text) for t in parse_inline("beach + 0.5*sunset - people")] == [
        (1.0, "beach"), (0.5, "sunset"), (-1.0, "people")]
    assert [t.text for t in parse_inline("t-shirt + c++")] == ["t-shirt", "c++"]
    flags = build_query("beach", also=["0.5*sunset"], without=["people"])
    assert flags == build_query("beach + 0.5*sunset - people")
    with pytest.raises(ValueError, match="positive"):
        build_query("", without=["people"])
    with pytest.raises(ValueError):
        parse_inline("beach + ")


def test_text_query_ranks_whole_library_by_cosine(engine):
    results = everything(engine, build_query("a red square"))
    assert len(results) == 13
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    vector, _ = engine.query_vector(build_query("a red square"))
    stored = {p.payload["content_hash"]: p.vector for p in engine.backend.store.scroll(engine.collection,
                                                                                       with_vectors=True)}
    assert all(abs(float(stored[r.content_hash] @ vector) - r.score) < 1e-4 for r in results)
    top = results[0]
    assert top.path and top.thumbnail and Path(top.thumbnail).exists() and top.width and top.taken_at


def test_filters_narrow_results(engine, indexed):
    _, root = indexed
    q = build_query("anything")
    in_2021 = everything(engine, q, filter=VectorFilter(folder=str(root / "2021")))
    assert len(in_2021) == 5 and all("/2021/" in r.path for r in in_2021)
    june_2023 = VectorFilter(taken_from=datetime(2023, 1, 1).timestamp(), taken_to=datetime(2024, 1, 1).timestamp())
    assert {Path(r.path).parent.name for r in everything(engine, q, filter=june_2023)} == {"2023"}
    pngs = everything(engine, q, filter=VectorFilter(exts=("png",)))
    assert [Path(r.path).name for r in pngs] == ["drawing.png"]
    nikon = everything(engine, q, filter=VectorFilter(cameras=("Nikon X",)))
    assert len(nikon) == 5 and all(r.camera == "Nikon X" for r in nikon)


def test_paging_is_consistent(engine):
    q = build_query("stripes")
    full = everything(engine, q)
    page1 = engine.search(q, min_score=0.0, collapse_duplicates=False, limit=5, offset=0).results
    page2 = engine.search(q, min_score=0.0, collapse_duplicates=False, limit=5, offset=5).results
    assert [r.path for r in page1 + page2] == [r.path for r in full[:10]]


def test_more_like_an_indexed_photo_costs_no_model_call_and_excludes_itself(engine, indexed):
    _, root = indexed
    calls = []
    original = engine.backend.encode_image
    engine.backend.encode_image = lambda *a, **k: calls.append(1) or original(*a, **k)
    results = everything(engine, build_query(like=[root / "2021" / "p0.jpg"]))
    assert not calls
    assert str(root / "2021" / "p0.jpg") not in [p for r in results for p in r.paths]
    assert len(results) == 12


def test_more_like_an_outside_photo_uses_the_model(engine, tmp_path, indexed):
    _, root = indexed
    outside = write_jpeg(tmp_path / "outside.jpg", image=photo_like_image((160, 120), seed=2021 + 3))
    results = everything(engine, build_query(like=[outside]))
    assert len(results) == 13
    vector = engine.backend.encode_image(path=outside)
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-4


def test_negative_terms_push_results_down(engine, indexed):
    _, root = indexed
    anchor = root / "2021" / "p0.jpg"
    plain = everything(engine, build_query(like=[anchor]))
    runner_up = plain[0].path
    pushed = everything(engine, build_query(like=[anchor], unlike=[Path(runner_up)]))
    assert [r.path for r in pushed].index(runner_up) > 0
    text_plain = everything(engine, build_query("green field"))
    first = text_plain[0]
    text_pushed = everything(engine, build_query("green field", unlike=[Path(first.path)]))
    assert text_pushed[0].path != first.path


def test_calibrated_scores_and_min_score(engine):
    page = engine.search(build_query("anything"), min_score=0.0, limit=100, collapse_duplicates=False)
    assert all(0.0 <= r.calibrated <= 1.0 for r in page.results)
    strict = engine.search(build_query("anything"), min_score=0.99, limit=100, collapse_duplicates=False)
    assert all(r.calibrated >= 0.99 for r in strict.results)
    default = engine.search(build_query("anything"), limit=100)
    assert all(r.relevant for r in default.results)
    assert default.no_good_match == (not default.results)


def test_empty_home_is_a_clear_error(tmp_path):
    with pytest.raises(NoIndexError, match="python -m indexer"):
        LocalBackend(tmp_path / "empty")


def test_cli_json_and_table(indexed):
    home, root = indexed
    cmd = [sys.executable, "-m", "search", "a photo", "--home", str(home), "--min-score", "0", "--limit", "3",
           "--no-collapse"]
    out = subprocess.run(cmd + ["--json", "--folder", str(root / "2023")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["results"]) == 3 and all("/2023/" in r["path"] for r in data["results"])
    assert {"path", "score", "calibrated", "relevant", "thumbnail", "taken_at", "tags", "width", "height"} <= set(
        data["results"][0])
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "score" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "search", "x", "--home", str(home), "--after", "June"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "not a date" in bad.stderr


def test_engine_recall_equals_models_retrieval_on_the_same_vectors(engine, indexed):
    """One ranking path: recall measured through the engine equals recall_at_k on the stored vectors."""
    import torch

    from indexer.scan.hashing import hash_file
    from models.retrieval import recall_at_k
    from search.evaluate import engine_recall

    _, root = indexed
    images = sorted(root.rglob("*.jpg"))[:6]
    captions = ["a red square", "green field", "a dog", "stripes", "sunset", "a cat on a sofa"]
    owners = list(range(6))
    through_engine = engine_recall(engine, images, captions, owners)
    points = list(engine.backend.store.scroll(engine.collection, with_vectors=True))
    row = {p.payload["content_hash"]: i for i, p in enumerate(points)}
    library = torch.tensor(np.stack([p.vector for p in points]))
    texts = torch.tensor(np.stack([engine.text_vector(c) for c in captions]))
    direct = recall_at_k(library, texts, [row[hash_file(images[i])] for i in owners])
    assert through_engine["captions"] == 6
    for k, value in direct["text_to_image"].items():
        assert through_engine["text_to_image"][k] == pytest.approx(value)
