"""Near-duplicates and "more like this" on real photos with `offline-lite`, through the real indexer and search.

Real Wikimedia photos from Debian's gcompris-qt-data (found as in test_offline_lite_real_photos.py: the .deb named
by $LOUPE_TEST_GCOMPRIS_DEB, an installed /usr/share/gcompris-qt, or a .deb in the download cache or
scratch/offline/debs/; skipped, with that reason, when there is none; nothing is downloaded). Photos of the photo
set's *held-out* side only (bench.data.photoset.split), so the fold threshold fitted on its dev side
(bench/dedupe_fit.py) is tested on photos it never saw:

* three families: an original and its near-duplicates as a library really holds them (a 50% resize, a JPEG q60
  re-encode, a 6% crop, a burst-like shot: a small shift and rotation with a brightness change);
* distinct photos of the same class beside them (other tape measures, wind turbines and pliers, scissors), which
  offline-lite's text-aligned space puts as close as cos 0.98 and must never be folded.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from bench.data.gcompris import GcomprisSource, GcomprisUnavailable

pytestmark = pytest.mark.slow

TOOLS = "gcompris/src/activities/categorization/resource/images/tools"
RENEWABLE = "gcompris/src/activities/categorization/resource/images/renewable"
FAMILIES = {"tape": f"{TOOLS}/measuringTape1.webp", "turbine": f"{RENEWABLE}/windmill1.webp",
            "pliers": f"{TOOLS}/plier1.webp"}
DISTINCT = [*(f"{TOOLS}/measuringTape{i}.webp" for i in (2, 3, 4)),
            *(f"{RENEWABLE}/windmill{i}.webp" for i in (2, 3, 4)),
            *(f"{TOOLS}/plier{i}.webp" for i in (2, 3)), f"{TOOLS}/scissors1.webp"]
VARIANTS = ("resize", "jpeg", "crop", "burst")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def variants(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    burst = image.rotate(1.5, translate=(round(0.02 * w), round(-0.015 * h)), resample=Image.BICUBIC)
    burst = burst.crop((round(0.04 * w), round(0.04 * h), round(0.96 * w), round(0.96 * h))).resize((w, h))
    return {
        "resize": _jpeg(image.resize((w // 2, h // 2), Image.LANCZOS), 90),
        "jpeg": _jpeg(image, 60),
        "crop": _jpeg(image.crop((round(0.06 * w), 0, w, round(0.94 * h))), 90),
        "burst": _jpeg(ImageEnhance.Brightness(burst).enhance(0.88), 90),
    }


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """(home, {family: {variant: path}}, [distinct paths]) indexed with offline-lite in a fresh data home."""
    from bench.data.photoset import read_photoset, split
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings

    try:
        source = GcomprisSource.locate(download=False)
    except GcomprisUnavailable as err:
        pytest.skip(f"no real photos offline: {err}")
    sides = split(read_photoset())
    wanted = [*FAMILIES.values(), *DISTINCT]
    assert all(sides[f"gcompris:{p}"] == "heldout" for p in wanted), "photos must come from the held-out side"
    data = source.read_many(wanted)
    root = tmp_path_factory.mktemp("real") / "DCIM"
    root.mkdir()
    number = iter(range(1000, 2000))
    families, distinct = {}, []
    for name, inner in FAMILIES.items():
        image = Image.open(io.BytesIO(data[inner])).convert("RGB")
        members = {"original": _jpeg(image, 92), **variants(image)}
        families[name] = {}
        for variant, raw in members.items():
            path = root / f"IMG_{next(number)}.JPG"
            path.write_bytes(raw)
            families[name][variant] = str(path)
    for inner in DISTINCT:
        path = root / f"IMG_{next(number)}.JPG"
        path.write_bytes(_jpeg(Image.open(io.BytesIO(data[inner])).convert("RGB"), 92))
        distinct.append(str(path))
    home = tmp_path_factory.mktemp("home")
    service = IndexerService(IndexerSettings.from_env(home=home, roots=(root,), model="offline-lite", workers=1,
                                                      serve=False))
    try:
        assert service.scan().embedded == len(FAMILIES) * (1 + len(VARIANTS)) + len(DISTINCT)
    finally:
        service.close()
    return home, families, distinct


@pytest.fixture(scope="module")
def engine(library):
    from search.backend import LocalBackend
    from search.engine import SearchEngine

    eng = SearchEngine(LocalBackend(library[0]))
    yield eng
    eng.close()


def _groups(engine, query) -> list[set[str]]:
    """Every photo of the library, as the result groups search shows (a result and the twins folded into it)."""
    page = engine.search(query, limit=100, min_score=0.0)
    return [{r.path, *r.duplicates} for r in page.results]


def test_like_an_indexed_photo_returns_its_near_neighbours(library, capsys):
    """`python -m search --like PATH`: the photo's own near-duplicates come first, flagged, folded into one result;
    the photo itself is left out. Runs first: the CLI opens the data home itself, so no engine may hold it yet."""
    from search.cli import main

    home, families, _ = library
    members = families["tape"]
    assert main(["--like", members["original"], "--home", str(home), "--json", "--limit", "5"]) == 0
    page = json.loads(capsys.readouterr().out)
    results = page["results"]
    assert not page["no_good_match"] and results
    first = results[0]
    twins = {first["path"], *first["duplicates"]}
    assert twins == set(members.values()) - {members["original"]}, twins
    assert first["relevant"]
    assert all(r["path"] != members["original"] for r in results)


def test_families_fold_and_distinct_same_class_photos_do_not(engine, library):
    """What bench/dedupe_fit.py measured on held-out photos, on these: resized and re-encoded copies always fold
    (20 of 20 there), most whole families fold (18 of 20 there: a crop or burst shot is sometimes missed), and
    no distinct photo of the same class is ever folded into another result."""
    from search.query import build_query

    _, families, distinct = library
    for text in ("a tape measure", "a wind turbine", "pliers"):
        groups = _groups(engine, build_query(text))
        assert sum(len(g) for g in groups) == len(distinct) + sum(len(f) for f in families.values())
        whole = 0
        for name, members in families.items():
            group = next(g for g in groups if members["original"] in g)
            foreign = group - set(members.values())
            assert not foreign, f"{text!r}: family {name} merged with {foreign}"
            assert {members["original"], members["resize"], members["jpeg"]} <= group, f"{text!r}: {name}: {group}"
            whole += group == set(members.values())
        assert whole >= 2, f"{text!r}: only {whole} of {len(families)} families folded whole"
        for path in distinct:
            group = next(g for g in groups if path in g)
            assert group == {path}, f"{text!r}: a distinct photo was folded with {group - {path}}"


def test_like_through_the_engine_ranks_by_the_visual_vector(engine, library):
    from search.query import build_query

    _, families, distinct = library
    members = families["turbine"]
    query = build_query(like=[Path(members["crop"])])
    assert engine.visual_query_vector(query) is not None
    page = engine.search(query, limit=20, min_score=0.0, collapse_duplicates=False)
    ranked = [r.path for r in page.results]
    neighbours = set(members.values()) - {members["crop"]}
    assert set(ranked[:len(neighbours)]) == neighbours, ranked[:6]  # its own family before any other turbine
    assert page.results[0].relevant
    default = engine.search(query)  # relevant ones only, near-duplicates folded: the family, as one result
    assert {default.results[0].path, *default.results[0].duplicates} == neighbours
