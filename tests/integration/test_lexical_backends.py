"""The words ranking (search.lexical) gives the same answer on Qdrant Edge and on qdrant-client's local mode (the
server's stand-in): same photos, same BM25 scores, same reasons, under the same filters."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from indexer.scan.sync import text_tokens
from indexer.stores.vectors import VectorFilter, VectorPoint, build_payload, point_id
from indexer.stores.vectors_edge import EdgeVectorStore
from indexer.stores.vectors_server import ServerVectorStore
from search.lexical import query_words, search_words

TEXTS = [
    {"folder": ["Egypt 2019"], "name": ["pyramid", "at", "dawn"]},
    {"folder": ["Egypt 2019"], "keyword": ["Anna"]},
    {"folder": ["Birthdays"], "keyword": ["Anna", "cake"], "description": ["Anna's birthday at the lake"]},
    {"folder": ["Birthdays"]},
    {"tag": ["Grandpa Joe"], "title": ["Lake Garda"]},
    {},
]


def _points() -> list[VectorPoint]:
    rng = np.random.default_rng(0)
    points = []
    for i, texts in enumerate(TEXTS):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        words = text_tokens(texts)
        vector = rng.normal(size=8).astype(np.float32)
        payload = build_payload(digest, [f"/lib/{i}.jpg"], 1e9 + i * 1e7, 4, 3, texts=texts, words=words)
        points.append(VectorPoint(point_id(digest), vector / np.linalg.norm(vector), payload))
    return points


@pytest.fixture()
def stores(tmp_path):
    edge, local = EdgeVectorStore(tmp_path / "edge"), ServerVectorStore.local(tmp_path / "local")
    for store in (edge, local):
        store.ensure_collection("c", 8)
        store.upsert("c", _points())
    yield edge, local
    edge.close()
    local.close()


@pytest.mark.parametrize("text, flt", [
    ("anna", None), ("anna birthday lake", None), ("egypt", VectorFilter(taken_from=1e9 + 5e6)),
    ("lake", VectorFilter(exts=("jpg",))), ("grandpa garda", None), ("red car", None),
])
def test_same_words_ranking_on_both_backends(stores, text, flt):
    words = query_words([text])
    answers = [[(h.id, round(h.score, 6), h.matched) for h in search_words(s, "c", words, flt, 10)] for s in stores]
    assert answers[0] == answers[1]
    if text == "red car":
        assert answers[0] == []
    if text == "anna birthday lake":
        assert answers[0][0][2] == ['keyword "Anna"', 'folder "Birthdays"', 'description "lake"']
