"""Decisions that must hold on real photos (issue 11), with offline-lite and its shipped constants, end to end.

Real photos (Wikimedia photos inside Debian's gcompris-qt-data, see tests/integration/test_offline_lite_real_photos.py
for where the .deb is looked for; the test skips with that reason when there is none) are indexed by the real
indexer and searched through `SearchEngine`:

- a small library: 5 fish among 20 photos — "a fish" flags all five (the library alone would call them its median);
- a skewed library: fish are most of it — "a fish" still flags them;
- absent-concept queries get no good match;
- "more like this" on an indexed fish shows other fish and flags at least one;
- zero-shot tags on the small library: the tags given are mostly right (labels from the captions).
"""

from __future__ import annotations

import os

import pytest

from bench.data.gcompris import GcomprisSource, GcomprisUnavailable
from bench.data.realphotos import materialize, read_list

pytestmark = pytest.mark.slow

ABSENT = ("a spreadsheet", "the French revolution", "a QR code", "a tax return form", "a birthday party",
          "a traffic jam", "a bar chart", "qwzx blorf vreep")
FISH = [p.key for p in read_list("dev") if p.caption == "a fish"]
OTHERS = [p.key for p in read_list("eval") if "/tools/" in p.key or "explore_monuments" in p.key
          or "/others/" in p.key]
CAPTIONS = {p.key: p.caption for p in read_list("dev") + read_list("eval")}


NOT_YET = ("issue 11 target not met by the precision-first constants shipped for offline-lite (bench/quality.py, "
           "held-out: skewed 0/51, tiny libraries 0/9 subjects, neighbour flagged 34%); strict so that it is noticed "
           "when it passes")


def _index(root, home) -> None:
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings

    service = IndexerService(IndexerSettings.from_env(home=home, roots=(root,), model="offline-lite", workers=1))
    try:
        service.scan()
    finally:
        service.close()


@pytest.fixture(scope="module")
def source():
    try:
        return GcomprisSource.locate(download=False)
    except GcomprisUnavailable as err:
        pytest.skip(f"no real photos offline: {err}")


def _library(tmp_path_factory, source, keys):
    from search.backend import LocalBackend
    from search.engine import SearchEngine

    root = tmp_path_factory.mktemp("photos")
    written = materialize(root, only=keys, gcompris=source)
    home = tmp_path_factory.mktemp("home")
    _index(root, home)
    engine = SearchEngine(LocalBackend(home))
    return engine, {str(path): key for key, path in written.items()}


@pytest.fixture(scope="module")
def small(tmp_path_factory, source):
    """5 fish among 20 photos (the other 15: tools, monuments, household things)."""
    assert len(FISH) >= 5 and len(OTHERS) >= 15
    engine, keys = _library(tmp_path_factory, source, FISH[:5] + OTHERS[:15])
    yield engine, keys
    engine.close()


@pytest.fixture(scope="module")
def skewed(tmp_path_factory, source):
    """20 fish and 8 other photos: one subject is most of the library."""
    engine, keys = _library(tmp_path_factory, source, FISH[5:25] + OTHERS[15:23])
    yield engine, keys
    engine.close()


def _search(engine, text=None, like=None, **options):
    """The vector side's decisions (issue 11) alone: these photos keep their source names (fish1.webp under
    fishes/), whose words would flag them in the default hybrid mode whatever the calibration says."""
    from search.query import build_query

    return engine.search(build_query(text, like=[like] if like else []), mode="semantic", **options)


def _describe(page, keys) -> str:
    return ", ".join(f"{keys.get(r.path, r.path).rsplit('/', 1)[-1]} {r.score:.3f}/{r.tier}" for r in page.results)


@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_small_library_flags_every_photo_of_the_subject(small):
    """Calibration, not ranking, is under test: every fish ranked above the first other photo is a good match,
    nothing else is; the model ranks at least four of the five fish first (one is a hard photo for it)."""
    engine, keys = small
    page = _search(engine, "a fish", limit=20, min_score=0.0, collapse_duplicates=False)
    ranked = [keys[r.path] for r in page.results]
    first_other = next(i for i, key in enumerate(ranked) if key not in FISH)
    assert first_other >= 4, _describe(page, keys)
    good = [keys[r.path] for r in page.results if r.relevant]
    assert sorted(good) == sorted(ranked[:first_other]), _describe(page, keys)


@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_skewed_library_still_flags_its_main_subject(skewed):
    engine, keys = skewed
    page = _search(engine, "a fish", limit=30, collapse_duplicates=False)
    good = [keys[r.path] for r in page.results if r.relevant]
    assert all(key in FISH for key in good), _describe(page, keys)
    assert len(good) >= 16, f"{len(good)} of 20 fish flagged: {_describe(page, keys)}"


@pytest.mark.parametrize("query", ABSENT)
def test_absent_concepts_get_no_good_match(small, query):
    engine, keys = small
    page = _search(engine, query, limit=10)
    assert page.no_good_match and not any(r.relevant for r in page.results), _describe(page, keys)


@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_more_like_this_shows_and_flags_the_neighbours(small):
    engine, keys = small
    first = next(path for path, key in keys.items() if key == FISH[0])
    page = _search(engine, like=first, limit=5)
    shown = [keys[r.path] for r in page.results]
    assert FISH[0] not in shown  # the photo itself is not its own neighbour
    assert sum(key in FISH for key in shown[:4]) >= 3, _describe(page, keys)
    assert any(r.relevant and keys[r.path] in FISH for r in page.results), _describe(page, keys)
    assert all(keys[r.path] in FISH for r in page.results if r.relevant), _describe(page, keys)


def _tags_given(small):
    """(tags given, tags right) on the small library, each photo's tags checked against the policy's bar and handful."""
    from bench.quality import Photo, category_of, tag_labels
    from models.tagging import Vocabulary
    from search.tag import FolderTagger

    engine, keys = small
    backend = engine.backend
    tagger = FolderTagger(backend, backend.catalog)
    vocabulary = Vocabulary.load()
    tagger.build(vocabulary)
    synonyms = {t.name: t.synonyms for t in vocabulary.tags}
    folder = os.path.commonpath(list(keys))  # the library's root
    given = right = 0
    for photo in tagger.classify(folder):
        key = keys[photo.paths[0]]
        labels = tag_labels(tagger.classifier.names, synonyms, Photo(key, None, CAPTIONS[key],
                                                                     category_of(key, CAPTIONS[key]), key))
        assert len(photo.tags) <= tagger.classifier.policy.max_tags
        assert all(p >= tagger.classifier.policy.threshold for p in photo.tags.values())
        assert not set(photo.tags) & set(tagger.classifier.policy.disabled)  # tags the model cannot tell apart
        given += len(photo.tags)
        right += sum(labels[tagger.classifier.names.index(t)] for t in photo.tags)
    return given, right


def test_tags_stay_under_the_policy(small):
    """Precision first: few tags, each above the fitted bar (a baseball is tagged 'baseball'; most photos get none)."""
    given, right = _tags_given(small)
    assert given <= 3 * len(small[1])
    assert right >= 1, f"{right} of {given} tags right"


@pytest.mark.xfail(strict=False, reason="issue 11 tag precision target (>= 60%) not met by offline-lite's shipped "
                   "policy: bench/quality.py held-out 19/35 (54%); here 1 of 2 ('bowl' on a teacup)")
def test_tags_given_are_mostly_right(small):
    given, right = _tags_given(small)
    assert given == 0 or right / given >= 0.6, f"{right} of {given} tags right"
