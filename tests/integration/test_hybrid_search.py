"""Hybrid search on a small library with words people gave their photos: --mode words/semantic/hybrid, why each
result matched, filters and paging on the fused ranking, and the same answers through a running owner (test-tiny:
mechanics, not quality; bench.hybrid measures quality)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from indexer.stores.vectors import VectorFilter
from search.backend import LocalBackend
from search.engine import SearchEngine
from search.fusion import fuse
from search.query import build_query
from tests.imagegen import photo_like_image, write_jpeg
from tests.integration.test_indexer_words import _with_xmp
from tests.unit.test_words import XMP


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """Camera-named photos: 4 in 'Egypt 2019', 4 in 'Birthdays' (one keyworded 'Anna' inside the file, one through
    a sidecar), 6 loose ones; dates 2019 for Egypt, 2023 for the rest."""
    root = tmp_path_factory.mktemp("lib") / "photos"
    for i in range(14):
        folder = "Egypt 2019" if i < 4 else "Birthdays" if i < 8 else ""
        year = 2019 if i < 4 else 2023
        write_jpeg(root / folder / f"IMG_{1000 + i}.jpg", image=photo_like_image((128, 96), seed=i),
                   exif={"taken_at": datetime(year, 5, 1 + i, 12)})
    anna = root / "Birthdays" / "IMG_1004.jpg"
    anna.write_bytes(_with_xmp(anna.read_bytes()))
    (root / "Birthdays" / "IMG_1005.jpg.xmp").write_bytes(XMP.replace(b"Birthday cake", b"Lunch"))
    (root / "IMG_1008.jpg.xmp").write_bytes(XMP)  # Anna outside the Birthdays folder
    home = tmp_path_factory.mktemp("home")
    service = IndexerService(IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=2,
                                                      batch_size=8))
    assert service.scan().embedded == 14
    service.close()
    return home, root


@pytest.fixture()
def engine(indexed):
    eng = SearchEngine(LocalBackend(indexed[0]))
    yield eng
    eng.close()


def run(engine, text, **kw):
    options = dict(min_score=0.0, collapse_duplicates=False, limit=100)
    return engine.search(build_query(text), **{**options, **kw}).results


def names(results):
    return [r.path.rsplit("/", 2)[-2] + "/" + r.path.rsplit("/", 1)[-1] for r in results]


def test_rrf_keeps_the_semantic_order_without_words():
    assert fuse(["a", "b", "c"], []) == ["a", "b", "c"]
    assert fuse(["a", "b", "c"], ["c"])[0] == "c"  # in both lists beats first in one
    assert fuse(["a", "b"], ["x"], words_weight=0.5) == ["a", "b", "x"]


def test_words_mode_finds_folder_and_keyword_photos_and_says_why(engine):
    egypt = run(engine, "egypt", mode="words")
    assert sorted(names(egypt)) == [f"Egypt 2019/IMG_{1000 + i}.jpg" for i in range(4)]
    assert all(r.matched == ['folder "Egypt 2019"'] for r in egypt)
    assert all(r.relevant for r in egypt)  # a person's word holding every query word: a good match
    anna = run(engine, "Anna", mode="words")
    assert {r.path.rsplit("/", 1)[-1] for r in anna} == {"IMG_1004.jpg", "IMG_1005.jpg", "IMG_1008.jpg"}
    assert all(r.matched == ['keyword "Anna"'] for r in anna)
    assert run(engine, "red car", mode="words") == []


def test_hybrid_puts_word_matches_first_and_keeps_the_rest(engine):
    hybrid = run(engine, "egypt")
    assert len(hybrid) == 14
    assert sorted(names(hybrid[:4])) == [f"Egypt 2019/IMG_{1000 + i}.jpg" for i in range(4)]
    assert all(r.matched for r in hybrid[:4]) and not any(r.matched for r in hybrid[4:])
    semantic = run(engine, "egypt", mode="semantic")
    assert not any(r.matched for r in semantic)
    assert [r.score for r in semantic] == sorted((r.score for r in semantic), reverse=True)
    by_hash = {r.content_hash: r.score for r in semantic}
    assert all(abs(by_hash[r.content_hash] - r.score) < 1e-5 for r in hybrid)  # scores stay cosines


def test_hybrid_equals_semantic_when_no_word_matches(engine):
    for text in ("red car", "a dog on the beach", "sunset - people"):
        for kw in ({}, {"min_score": None, "collapse_duplicates": True, "limit": 5}):
            hybrid = run(engine, text, **kw)
            semantic = run(engine, text, mode="semantic", **kw)
            assert [r.to_json() for r in hybrid] == [r.to_json() for r in semantic]


def test_fusion_respects_folder_and_date_filters_and_paging(engine, indexed):
    _, root = indexed
    birthdays = VectorFilter(folder=str(root / "Birthdays"))
    inside = run(engine, "anna birthday", filter=birthdays)
    assert len(inside) == 4 and all("/Birthdays/" in r.path for r in inside)
    assert all(r.matched for r in inside)  # every one is in the folder "Birthdays"
    ranked = run(engine, "anna birthday", filter=birthdays, mode="words")
    assert names(ranked)[0] == "Birthdays/IMG_1004.jpg"  # folder + keyword + caption: both words, twice
    assert ranked[0].matched == ['keyword "Anna"', 'folder "Birthdays"']
    dated = run(engine, "egypt", filter=VectorFilter(taken_from=datetime(2023, 1, 1).timestamp()))
    assert len(dated) == 10 and not any(r.matched for r in dated)  # Egypt's photos are from 2019
    whole = run(engine, "anna")
    pages = [r for offset in (0, 3, 6) for r in run(engine, "anna", limit=3, offset=offset)]
    assert [r.content_hash for r in pages[:6]] == [r.content_hash for r in whole[:6]]


def test_unknown_mode_is_refused(engine):
    with pytest.raises(ValueError, match="hybrid, semantic, words"):
        run(engine, "egypt", mode="fuzzy")


def test_cli_modes_and_matched_in_json_and_table(indexed, capsys):
    from search.cli import main

    home, _ = indexed
    base = ["egypt", "--home", str(home), "--min-score", "0", "--no-collapse"]
    assert main([*base, "--json", "--mode", "words"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["results"]) == 4 and all(r["matched"] == ['folder "Egypt 2019"'] for r in data["results"])
    assert main([*base, "--json", "--mode", "semantic", "--limit", "14"]) == 0
    assert all(r["matched"] == [] for r in json.loads(capsys.readouterr().out)["results"])
    assert main([*base, "--limit", "5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert sum('matched: folder "Egypt 2019"' in line for line in table) == 4


def test_through_the_owner_matches_in_process(tmp_path, indexed):
    import shutil

    from indexer.owner.api import ApiServer, create_app
    from indexer.owner.client import OwnerClient
    from indexer.owner.ownership import Ownership, free_port
    from search.backend import OwnerBackend

    home = tmp_path / "home"
    shutil.copytree(indexed[0], home)
    local = SearchEngine(LocalBackend(home))
    expected = {t: [(r.content_hash, r.matched, r.tier) for r in run(local, t)] for t in ("anna cake", "egypt")}
    local.close()
    service = IndexerService(IndexerSettings.from_env(home=home, roots=(indexed[1],), model="test-tiny"))
    ownership = Ownership.acquire(home, "test owner")
    server = ApiServer(create_app(service, ownership.token), port=free_port())
    ownership.publish("127.0.0.1", server.start())
    try:
        remote = SearchEngine(OwnerBackend(OwnerClient.find(home), home))
        for text, want in expected.items():
            assert [(r.content_hash, r.matched, r.tier) for r in run(remote, text)] == want
    finally:
        server.stop()
        ownership.release()
        service.close()
