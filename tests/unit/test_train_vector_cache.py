"""The image-vector cache: embedded once with the locked tower, reused by (path, size, mtime), bad files skipped."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import models
from models.train.vector_cache import CachedTowerSource, vector_cache_path


@pytest.fixture(scope="module")
def bundle():
    return models.create("test-tiny", device="cpu")


def _images(folder, n: int = 3) -> list[str]:
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.new("RGB", (40, 30), (60 * i, 200 - 50 * i, 90)).save(path)
        paths.append(str(path))
    return paths


def test_vectors_are_computed_once_then_reused(tmp_path, bundle):
    paths = _images(tmp_path)
    first = CachedTowerSource(bundle, tmp_path / "home", batch_size=2, progress=False)
    vectors = first.vectors_for(paths)
    assert first.computed == 3 and set(vectors) == set(paths)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors.values())
    cache = vector_cache_path(tmp_path / "home", bundle.image_tower_id)
    stamp = cache.stat().st_mtime_ns, cache.read_bytes()
    again = CachedTowerSource(bundle, tmp_path / "home", progress=False)
    reused = again.vectors_for(paths)
    assert again.computed == 0 and again.reused == 3
    assert all(np.array_equal(reused[p], vectors[p]) for p in paths)
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == stamp  # nothing new: the file is not rewritten


def test_a_changed_file_is_embedded_again(tmp_path, bundle):
    paths = _images(tmp_path)
    CachedTowerSource(bundle, tmp_path / "home", progress=False).vectors_for(paths)
    Image.new("RGB", (40, 30), "white").save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    source = CachedTowerSource(bundle, tmp_path / "home", progress=False)
    source.vectors_for(paths)
    assert source.computed == 1 and source.reused == 2
    with np.load(vector_cache_path(tmp_path / "home", bundle.image_tower_id)) as data:
        assert len(data["keys"]) == 3  # the stale entry was replaced, not kept alongside


def test_missing_and_unreadable_images_are_skipped_with_reasons(tmp_path, bundle):
    good = _images(tmp_path, 1)[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    source = CachedTowerSource(bundle, tmp_path / "home", progress=False)
    vectors = source.vectors_for([good, str(broken), str(tmp_path / "gone.png")])
    assert set(vectors) == {good}
    assert source.skipped[str(broken)].startswith("unreadable image")
    assert source.skipped[str(tmp_path / "gone.png")] == "image file not found"


def test_exif_orientation_is_applied(tmp_path, bundle):
    from models.train.image_vectors import read_image

    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").size == (20, 40)
