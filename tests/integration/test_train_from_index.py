"""Tuning reads image vectors from the index (LiT: the image side is never recomputed) and leaves them untouched;
a promoted text tower is used by search at once, without re-indexing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np

from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from search.backend import LocalBackend
from search.engine import SearchEngine
from search.query import build_query
from tests.imagegen import write_jpeg

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]


def test_tuning_from_index_then_promote_changes_search_not_vectors(tmp_path):
    root, home = tmp_path / "photos", tmp_path / "home"
    root.mkdir()
    for colour in COLOURS:
        for i in range(3):
            write_jpeg(root / f"{colour}-{i}.jpg", size=(48 + i, 40), color=colour)
    service = IndexerService(IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=1))
    service.scan()
    collection = service.collection.name
    before = {p.id: p.vector for p in service.store.scroll(collection, with_vectors=True)}
    service.close()

    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image", "caption"])
        for colour in COLOURS:
            for i in range(3):
                writer.writerow([str(root / f"{colour}-{i}.jpg"), f"a {colour} photo"])
    cmd = [sys.executable, "-m", "models.train", str(captions), "--model", "test-tiny", "--home", str(home),
           "--epochs", "3", "--batch-size", "8", "--name", "colours", "--json", "-q", "--val-fraction", "0.25"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result
    assert not (home / "cache" / "image_vectors").exists() or not any((home / "cache" / "image_vectors").iterdir())

    engine = SearchEngine(LocalBackend(home))
    try:
        base = engine.backend.encode_texts(["a red photo"])
        promote = subprocess.run([sys.executable, "-m", "models.train", "--promote", "colours", "--home", str(home),
                                  "--force"],  # a handful of pairs: promoting needs --force
                                 capture_output=True, text=True, timeout=300)
        assert promote.returncode == 0, promote.stderr
        tuned = engine.backend.encode_texts(["a red photo"])  # same engine, no restart
        assert not np.allclose(base, tuned)
        assert engine.backend.slot.active().text_version == "colours"
        engine.search(build_query("a red photo"), min_score=0.0)
        after = {p.id: p.vector for p in engine.backend.store.scroll(collection, with_vectors=True)}
    finally:
        engine.close()
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
