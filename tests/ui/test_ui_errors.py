"""Friendly errors: an empty data home, a home held by a silent process, and the message table itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.ui.appkit import run_app, texts
from ui.errors import explain


@pytest.fixture()
def empty_home(tmp_path, monkeypatch):
    import ui.state

    home = tmp_path / "home"
    monkeypatch.setenv("LOUPE_HOME", str(home))
    monkeypatch.setattr(sys, "argv", ["app.py", "--model", "test-tiny"])  # a new index's model, as `--model` sets it
    yield home
    ui.state._open.clear()


@pytest.mark.parametrize("page", [None, "tags_page.py", "tune_page.py"])
def test_an_empty_home_says_how_to_index(empty_home, page):
    at = run_app(page)
    message = " ".join(texts(at.error) + texts(at.info))
    assert "python -m indexer FOLDER" in message and "Index" in message


def test_the_index_page_works_on_an_empty_home(empty_home):
    at = run_app("index_page.py")
    assert not at.error
    assert {m.label: m.value for m in at.metric}["Indexed"] == "0"
    assert any("Nothing is indexed yet" in text for text in texts(at.info))


def test_a_home_held_by_a_silent_process_is_explained(tmp_path, monkeypatch):
    from indexer.owner.ownership import Ownership

    home = tmp_path / "held"
    monkeypatch.setenv("LOUPE_HOME", str(home))
    held = Ownership.acquire(home, "indexer scan")  # holds the lock, never publishes an API
    try:
        at = run_app()
        assert any("owns this data home" in text and "Fix:" in text for text in texts(at.error))
    finally:
        held.release()


def test_messages_name_the_fix():
    from indexer.owner.ownership import HomeOwnedError
    from indexer.stores.vectors import StoreLockedError, VectorStoreUnavailableError
    from models.lit_download import WeightsUnavailable
    from search.backend import NoIndexError

    cases = {
        NoIndexError("x"): "python -m indexer FOLDER",
        StoreLockedError("x"): "stop the other Loupe process",
        VectorStoreUnavailableError("x"): "LOUPE_QDRANT_URL",
        HomeOwnedError(Path("/h"), None): "reload",
        WeightsUnavailable("x"): "offline-lite",
        KeyError("unknown model 'nope'; known presets: test-tiny"): "presets",
    }
    for err, fix in cases.items():
        assert fix in explain(err, Path("/h")).fix, (err, explain(err).fix)
    generic = explain(RuntimeError("boom"))
    assert "terminal" in generic.fix and generic.detail == "boom"


def test_only_query_errors_get_query_advice():
    """Found by a breaker pass: every ValueError (a learning rate 'abc', a truncated upload) was answered with
    "That query cannot be run … write at least one positive term"."""
    from indexer.scan.decode import DecodeError
    from search.query import build_query

    with pytest.raises(ValueError) as refused:
        build_query("0*cat")
    query = explain(refused.value)
    assert query.title.startswith("That query cannot be run") and "positive term" in query.fix
    upload = explain(DecodeError("truncated image", "upload"))
    assert upload.title == "That image cannot be used: truncated image." and "photo file" in upload.fix
    form = explain(ValueError("--lr must be positive"))
    assert form.title == "That cannot be done: --lr must be positive" and "positive term" not in form.fix


def test_a_failed_background_task_reads_like_any_other_error():
    """Found by a breaker pass: a failed index task showed "failed: ApiError: ..." (a raw class name)."""
    from streamlit.testing.v1 import AppTest

    def page():
        from search.backend import NoIndexError
        from ui.jobs import Task
        from ui.widgets import task_status

        task_status(Task("index", "Indexing /photos", state="failed", error="NoIndexError: x",
                         exception=NoIndexError("x")))

    at = AppTest.from_function(page).run()
    shown = texts(at.error)
    assert any(t.startswith("Indexing /photos failed. **Nothing is indexed") and "python -m indexer" in t
               for t in shown), shown
    assert not any("NoIndexError" in t for t in shown)
