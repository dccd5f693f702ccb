"""The Search page through `AppTest`: the engine's ranking with thumbnails, "no good match", every filter, paging,
the detail view, "more like this", and refusal of paths that are not in the index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from tests.ui.appkit import QUERY, hash_of, result_hashes, run_app, texts

pytestmark = pytest.mark.usefixtures("app_home")


def search(at, text: str = QUERY, *, closest: bool = True, limit: int = 48):
    """Every result, ranked as the engine ranks (near-duplicate grouping off: test-tiny vectors are close)."""
    at.sidebar.checkbox(key="closest").set_value(closest)
    at.sidebar.checkbox(key="f_collapse").set_value(False)
    at.sidebar.select_slider(key="f_limit").set_value(limit)
    at.text_input(key="q").input(text)
    return at.run()


def test_page_renders_an_overview_of_the_library(library):
    at = run_app()
    assert any("14 photos indexed" in text for text in texts(at.info))
    assert len(at.sidebar.selectbox(key="f_folder").options) == 1 + 6  # all; photos, 2021, beach, 2023, city, night
    assert sorted(at.sidebar.multiselect(key="f_types").options) == ["jpg", "png"]


def test_query_shows_the_engines_ranking_with_thumbnails(library):
    at = search(run_app())
    assert result_hashes(at) == library.expected["all"] and len(library.expected["all"]) == 14
    assert len(at.get("image")) == 14  # every card has its cached thumbnail


def test_negative_terms_push_results_as_the_engine_does(library):
    at = run_app()
    at.text_input(key="without").input("blue, stripes")
    at = search(at)
    assert result_hashes(at) == library.expected["without"] != library.expected["all"]


def test_no_good_match_state_follows_the_engine(library):
    at = search(run_app(), closest=False)
    assert result_hashes(at) == library.expected["relevant"]
    if library.no_good_match and not library.expected["relevant"]:  # nothing even possible: say so, offer more
        assert any("No good match" in text for text in texts(at.info))
        at.button(key="show-closest").click().run()
        assert result_hashes(at) == library.expected["all"]
    elif library.no_good_match:  # possible matches only: shown, under a warning
        assert any("No good match" in text for text in texts(at.warning))


def test_filters_that_leave_nothing_say_so_without_a_button_that_does_nothing(library):
    """Found by a breaker pass: with "closest" on, filters that matched nothing offered "Show the closest photos
    anyway", which did nothing."""
    at = run_app()
    at.sidebar.multiselect(key="f_types").set_value(["png"])  # the beach folder holds jpgs only
    at.sidebar.selectbox(key="f_folder").set_value(str(library.root / "2021" / "beach"))
    at = search(at, closest=True)
    assert not result_hashes(at) and not at.error
    assert any("No photo matches these filters" in text for text in texts(at.info))
    assert not [b for b in at.button if b.key == "show-closest"]


def test_folder_filter_narrows_to_the_folder(library):
    at = run_app()
    at.sidebar.selectbox(key="f_folder").set_value(str(library.root / "2021" / "beach"))
    at = search(at)
    assert result_hashes(at) == library.expected["beach"]
    assert set(result_hashes(at)) == {hash_of(library.files[c]) for c in ("red", "green", "blue", "yellow")}


def test_type_camera_and_date_filters_narrow(library):
    at = run_app()
    at.sidebar.multiselect(key="f_types").set_value(["png"])
    assert result_hashes(search(at)) == [hash_of(library.files["stripes"])]
    at.sidebar.multiselect(key="f_types").set_value([])
    at.sidebar.multiselect(key="f_cameras").set_value(["Nikon Z6"])
    assert result_hashes(at.run()) == [hash_of(library.files["disk"])]
    at.sidebar.multiselect(key="f_cameras").set_value([])
    at.sidebar.checkbox(key="f_use_dates").check().run()
    at.sidebar.date_input(key="f_dates").set_value((date(2023, 12, 1), date(2023, 12, 31))).run()
    assert set(result_hashes(at)) == {hash_of(library.files["n0"]), hash_of(library.files["n1"])}


def test_paging_walks_through_the_results(library):
    at = search(run_app(), limit=12)
    assert result_hashes(at) == library.expected["all"][:12]
    assert at.button(key="prev").disabled and not at.button(key="next").disabled
    at.button(key="next").click().run()
    assert result_hashes(at) == library.expected["all"][12:]
    assert at.button(key="next").disabled


def test_more_like_this_searches_by_the_photo(library):
    at = search(run_app())
    red = hash_of(library.files["red"])
    at.button(key=f"results-like-{red}").click().run()
    found = result_hashes(at)
    assert red not in found and len(found) == 13  # the photo itself is excluded from its own neighbours
    assert any("More like **red.jpg**" in text for text in texts(at.caption))


def test_an_uploaded_image_searches_like_the_indexed_photo_it_is(library):
    red = hash_of(library.files["red"])
    similar = search(run_app())
    similar.button(key=f"results-like-{red}").click().run()
    similar.text_input(key="q").input("").run()  # the photo alone, as the upload below
    at = search(run_app(), "")
    at.get("file_uploader")[0].set_value(("mine.jpg", library.files["red"].read_bytes(), "image/jpeg"))
    at.run()
    assert result_hashes(at) == result_hashes(similar) and red not in result_hashes(at)


def test_back_from_the_detail_view_keeps_the_query_the_filters_and_the_results(library):
    """Found by a breaker pass: the detail view does not draw the query box or the filters, so Streamlit forgot
    them, and "Back to results" came back to an empty page."""
    at = search(run_app(), limit=12)
    at.text_input(key="without").input("stripes")
    at.run()
    before = result_hashes(at)
    assert before
    at.button(key=f"results-open-{before[0]}").click().run()
    assert not result_hashes(at) and not at.error  # the detail view
    at.button(key="back").click().run()
    assert at.text_input(key="q").value == QUERY and at.text_input(key="without").value == "stripes"
    assert at.sidebar.select_slider(key="f_limit").value == 12 and at.sidebar.checkbox(key="closest").value
    assert result_hashes(at) == before


def test_similar_on_a_photo_whose_file_is_gone_says_so(library):
    """Found by a breaker pass: "Similar" on an indexed photo deleted since showed FileNotFoundError."""
    at = search(run_app(), limit=12)
    red = hash_of(library.files["red"])
    away = library.files["red"].with_name("away.tmp")
    library.files["red"].rename(away)
    try:
        at.button(key=f"results-like-{red}").click().run()
        assert not at.error and any("no longer on disk" in text for text in texts(at.warning))
    finally:
        away.rename(library.files["red"])


def test_photo_link_opens_the_detail_view(library):
    at = run_app()
    at.sidebar.checkbox(key="f_collapse").set_value(False)
    red = hash_of(library.files["red"])
    at.query_params["photo"] = red
    at.run()
    assert not at.error
    table = at.table[0].value
    assert str(library.files["red"]) in table.to_string()
    neighbours = result_hashes(at, "neighbours")
    assert len(neighbours) == 8 and red not in neighbours
    assert len(at.get("image")) == 1 + 8  # the photo and its neighbours' thumbnails


def test_indexed_path_link_opens_that_photo(library):
    at = run_app()
    at.query_params["path"] = str(library.files["stripes"])
    at.run()
    assert not at.error and str(library.files["stripes"]) in at.table[0].value.to_string()


@pytest.mark.parametrize("raw", ["/etc/passwd", "../../../../../etc/passwd", "/tmp/../etc/passwd", "etc/passwd",
                                 "/etc/passwd\x00.jpg"])
def test_paths_outside_the_index_are_refused_unread(library, raw):
    at = run_app()
    at.query_params["path"] = raw
    at.run()
    assert any("Refused" in text for text in texts(at.error))
    assert not at.get("image") and not at.table
    assert "root:" not in " ".join(texts(at.markdown) + texts(at.error) + texts(at.code))


@pytest.mark.parametrize("raw", ["0" * 64, "../etc/passwd", "abc"])
def test_photo_ids_not_in_the_index_are_refused(library, raw):
    at = run_app()
    at.query_params["photo"] = raw
    at.run()
    assert any("Refused" in text for text in texts(at.error)) and not at.get("image")


def test_cli_searches_go_through_the_ui_while_it_owns_the_home(library):
    """With no indexer running the UI is the owner, so `python -m search` answers through it (no store conflict)."""
    import ui.state
    from indexer.owner.ownership import read_owner_file

    run_app()
    assert ui.state.services().mode == "local"
    assert read_owner_file(library.home).pid == os.getpid()
    out = subprocess.run([sys.executable, "-m", "search", QUERY, "--home", str(library.home), "--min-score", "0",
                          "--no-collapse", "--limit", "48", "--json"], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert [r["content_hash"] for r in json.loads(out.stdout)["results"]] == library.expected["all"]


def test_cards_say_which_words_matched(library):
    at = search(run_app(), "beach")
    beach = {hash_of(library.files[c]) for c in ("red", "green", "blue", "yellow")}
    assert set(result_hashes(at)[:4]) == beach  # the folder's name is the query: its photos come first
    said = [text for text in texts(at.markdown) if "matched:" in text]
    assert len(said) == 4 and all('matched: folder "beach"' in text for text in said)
