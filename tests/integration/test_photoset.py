"""The shared real-photo set (bench/data/photoset.py): a well-formed list, a deterministic disjoint split, camera
names that give nothing away, and a materialized copy made of readable, EXIF-free JPEGs.

The list checks need nothing but the repository. Materializing reads a handful of photos out of Debian's
gcompris-qt-data .deb (named by $LOUPE_TEST_GCOMPRIS_DEB, an installed /usr/share/gcompris-qt, or a .deb in the
download cache / scratch/offline/debs/) and scikit-image; it skips with that reason when the .deb is not on this
machine, and never downloads.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from bench.data import photoset
from bench.data.gcompris import GcomprisSource, GcomprisUnavailable


@pytest.fixture(scope="module")
def photos():
    return photoset.read_photoset()


def test_list_is_well_formed(photos):
    assert len(photos) >= 500
    lines = [line for line in photoset.LIST.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#") and not line.startswith("key\t")]
    assert all(len(line.split("\t")) == 4 for line in lines)
    assert all(len(p.sha256) == 16 and int(p.sha256, 16) >= 0 for p in photos), "every row records its digest"
    assert all(not p.source.startswith("tuxpaint") for p in photos), "tuxpaint-stamps are reserved"
    assert len({p.key for p in photos}) == len(photos)
    # the 207 hand captions of bench/data/realphotos keep their keys and captions
    from bench.data.realphotos import read_list

    by_key = {p.key: p.caption for p in photos}
    for old in read_list("eval") + read_list("dev"):
        assert by_key.get(old.key) == old.caption
    categories = Counter(p.category for p in photos)
    assert categories["animal"] >= 50 and categories["building"] >= 50 and len(categories) >= 10


def test_split_is_deterministic_disjoint_and_keeps_captions_together(photos):
    sides = photoset.split(photos, seed=0)
    assert sides == photoset.split(list(reversed(photos)), seed=0), "the split depends on the seed only"
    assert set(sides) == {p.key for p in photos} and set(sides.values()) == set(photoset.SPLITS)
    side_of_caption = {}
    for photo in photos:
        assert side_of_caption.setdefault(photo.caption, sides[photo.key]) == sides[photo.key], photo.caption
    counts = Counter(sides.values())
    assert abs(counts["dev"] - counts["heldout"]) <= 0.1 * len(photos)
    assert photoset.split(photos, seed=1) != sides

    tuning = photoset.inhouse(photos, seed=0)
    assert {sides[p.key] for p, _ in tuning["train"]} == {"dev"}
    assert {sides[p.key] for p, _ in tuning["heldout"]} == {"heldout"}
    assert len(tuning["train"]) >= 300 and len(tuning["heldout"]) >= 300
    assert all(text.strip() for _, text in tuning["train"] + tuning["heldout"])
    assert tuning == photoset.inhouse(photos, seed=0)

    nonsense = photoset.nonsense_split(seed=0)
    assert len(nonsense["dev"]) + len(nonsense["heldout"]) >= 200
    assert not set(nonsense["dev"]) & set(nonsense["heldout"])
    assert nonsense == photoset.nonsense_split(seed=0)
    captions = {p.caption.lower() for p in photos}
    assert not captions & {q.lower() for q in nonsense["dev"] + nonsense["heldout"]}


def test_camera_names_carry_no_caption_words(photos):
    paths = photoset.camera_paths((p.key for p in photos), seed=0, prefix=photoset.LIBRARY + "/")
    assert len(set(paths.values())) == len(photos)
    caption_words = {w for p in photos for w in photoset.name_words(p.caption)}
    leaked = {path: photoset.name_words(path) & caption_words for path in paths.values()}
    assert not {path: words for path, words in leaked.items() if words}
    camera_style = re.compile(r"(IMG_|DSC_?|PXL_)[0-9_]{4,}\.(jpg|JPG)")
    assert all(camera_style.fullmatch(path.rsplit("/", 1)[-1]) for path in paths.values())
    assert paths == photoset.camera_paths(reversed([p.key for p in photos]), seed=0, prefix=photoset.LIBRARY + "/")
    some = [p.key for p in photos[::7]]
    assert photoset.camera_paths(some, seed=0, prefix=photoset.LIBRARY + "/") == {k: paths[k] for k in some}, \
        "adding photos renames no other"


def test_libraries_for_the_hard_cases(photos):
    sides = photoset.split(photos, seed=0)
    dev = [p for p in photos if sides[p.key] == "dev"]
    skewed = photoset.skewed_library(dev, category="animal", share=0.6, seed=0)
    assert sum(p.category == "animal" for p in skewed) >= 0.6 * len(skewed)
    assert skewed == photoset.skewed_library(dev, category="animal", share=0.6, seed=0)
    subject = photoset.tiny_subjects(dev, k=5)[0]
    library, chosen = photoset.tiny_library(dev, subject=subject, n=20, k=5, seed=0)
    assert len(library) == 20 and len(chosen) == 5 and set(chosen) <= set(library)
    assert all(subject in photoset.subject_words(p.caption) for p in chosen)
    assert sum(subject in photoset.subject_words(p.caption) for p in library) == 5
    # one tiny library per subject: head nouns, and the phrase a user would type for them
    assert photoset.subject_phrase("a wind turbine on a hill") == ["wind", "turbine"]
    assert photoset.head_noun("a woman talking on a phone") == "woman"
    assert photoset.head_noun("on a") is None
    assert photoset.shared_subject(["a wind turbine", "two wind turbine at sea"], "turbine") == "wind turbine"
    assert photoset.shared_subject(["a wind turbine", "a turbine hall"], "turbine") == "turbine"
    heads = photoset.tiny_head_subjects(dev, k=5)
    counts = Counter(photoset.head_noun(p.caption) for p in dev)
    assert heads and all(counts[h] >= 5 for h in heads)
    assert [counts[h] for h in heads] == sorted((counts[h] for h in heads), reverse=True)
    for head in heads:
        library, chosen = photoset.tiny_library(dev, subject=head, n=20, k=5, seed=0)
        assert len(library) == 20 and len(chosen) == 5
    pairs = photoset.same_class_pairs(photos, sides, seed=0)
    assert pairs and all(a.key != b.key and sides[a.key] == sides[b.key] == s for s, _, a, b in pairs)
    assert all(a.caption == b.caption if rel == "same caption" else a.category == b.category
               for _, rel, a, b in pairs)


@pytest.fixture(scope="module")
def gcompris():
    try:
        return GcomprisSource.locate(download=False)
    except GcomprisUnavailable as err:
        pytest.skip(f"gcompris-qt-data .deb not on this machine: {err}")


def test_materialize_writes_readable_jpegs_and_reuses_them(photos, gcompris, tmp_path):
    from PIL import Image

    wanted = [p for p in photos if p.source == "gcompris"][:5] + [p for p in photos if p.source == "skimage"][:1]
    keys = [p.key for p in wanted]
    manifest = photoset.materialize(tmp_path, seed=0, keys=keys, families_per_split=1, download=False,
                                    gcompris=gcompris)
    assert set(manifest["files"]) >= set(keys) and not manifest["failed"]
    for key in keys:
        assert manifest["files"][key].startswith(photoset.LIBRARY + "/")
        path = tmp_path / manifest["files"][key]
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert not image.getexif(), "no EXIF"
            image.load()
    rows = (tmp_path / "captions.tsv").read_text().splitlines()
    assert rows[0] == "path\tcaption\tcategory" and len(rows) == 1 + len(keys)
    by_path = {r.split("\t")[0]: r.split("\t")[1:] for r in rows[1:]}
    for photo in wanted:
        assert by_path[manifest["files"][photo.key]] == [photo.caption, photo.category]
    split_rows = [line for side in photoset.SPLITS for line in (tmp_path / f"{side}.tsv").read_text().splitlines()]
    assert sorted(r.split("\t")[0] for r in split_rows) == sorted(by_path)
    families = [r.split("\t") for r in (tmp_path / "dup_families.tsv").read_text().splitlines()[1:]]
    assert {f[2] for f in families} == set(photoset.VARIANTS)
    for family in families:
        with Image.open(tmp_path / family[3]) as image:
            assert image.format == "JPEG"
    stamp = {p: (tmp_path / p).stat().st_mtime_ns for p in manifest["files"].values()}
    again = photoset.materialize(tmp_path, seed=0, keys=keys, families_per_split=1, download=False,
                                 gcompris=gcompris)
    assert again["files"] == manifest["files"]
    assert stamp == {p: (tmp_path / p).stat().st_mtime_ns for p in again["files"].values()}, "cached, not rewritten"
    assert json.loads((tmp_path / "manifest.json").read_text())["arguments"]["keys"] == sorted(keys)
    fewer = photoset.materialize(tmp_path, seed=0, keys=keys[:2], families_per_split=0, download=False,
                                 gcompris=gcompris)
    on_disk = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.suffix.lower() == ".jpg"}
    assert on_disk == set(fewer["files"].values()), "a rewrite leaves no photo of the previous copy behind"
