"""What a photographer reads on the Search page (issue 15): one plain verdict per card with the numbers in the detail
view, image queries shown as the photo (not its path) and started fresh, and file dates labelled as such."""

from __future__ import annotations

import re

import pytest

from tests.ui.appkit import QUERY, hash_of, result_hashes, run_app, texts

pytestmark = pytest.mark.usefixtures("app_home")


def search(at, text: str = QUERY):
    at.sidebar.checkbox(key="closest").set_value(True)
    at.sidebar.checkbox(key="f_collapse").set_value(False)
    at.sidebar.select_slider(key="f_limit").set_value(48)
    at.text_input(key="q").input(text)
    return at.run()


def card_texts(at) -> list[str]:
    """The markdown of each result card (title + caption), in display order."""
    return [text for text in texts(at.markdown) if text.startswith("**") and "badge[" in text]


def test_cards_show_one_plain_verdict_and_the_detail_view_the_numbers(library):

    at = search(run_app())
    cards = card_texts(at)
    assert len(cards) == len(result_hashes(at)) == 14
    good = set(library.expected["good"])  # the engine's precision-first tier; the rest shown are possible matches
    for digest, card in zip(result_hashes(at), cards, strict=True):
        assert ("Good match" in card) == (digest in good) and ("Possible match" in card) == (digest not in good)
        assert "cos" not in card and "%" not in card  # no raw numbers on a card
    first = result_hashes(at)[0]
    at.button(key=f"results-open-{first}").click().run()
    match = at.table[0].value.loc["Match"].iloc[0]
    assert re.fullmatch(rf"(Good|Possible) match for “{QUERY}” · score \d+% · cosine -?\d\.\d{{3}}", match), match


def test_verdict_reads_a_tier_when_the_engine_gives_one():
    from types import SimpleNamespace

    from ui.widgets import verdict, verdict_label

    assert verdict_label(SimpleNamespace(relevant=True))[0] == "Good match"
    assert verdict_label(SimpleNamespace(relevant=False))[0] == "Possible match"
    assert verdict_label(SimpleNamespace(relevant=False, tier="good"))[0] == "Good match"
    assert verdict(SimpleNamespace(relevant=True, tier="possible")) == ":gray-badge[Possible match]"


def test_similar_starts_a_fresh_image_query_shown_by_name_and_thumbnail(library):
    at = run_app()
    at.text_input(key="without").input("blue")
    at = search(at)
    red = hash_of(library.files["red"])
    at.button(key=f"results-like-{red}").click().run()
    assert at.text_input(key="q").value == "" and at.text_input(key="without").value == ""
    header = next(text for text in texts(at.caption) if text.startswith("Results "))
    assert header == "Results 1–13 for photos like **red.jpg**", header
    assert str(library.root) not in " ".join(texts(at.caption) + texts(at.markdown))  # no path anywhere
    images = at.get("image")
    assert len(images) == 1 + 1 + 13  # the chosen photo, the header's thumbnail, the results
    assert QUERY not in header


def test_an_upload_is_named_by_its_file_name(library):
    at = search(run_app(), "")
    at.get("file_uploader")[0].set_value(("my holiday.jpg", library.files["green"].read_bytes(), "image/jpeg"))
    at.run()
    header = next(text for text in texts(at.caption) if text.startswith("Results "))
    assert "photos like **my holiday.jpg**" in header and "loupe-ui-uploads" not in header


def test_photos_without_an_exif_date_show_their_file_date(library):
    at = search(run_app())
    by_hash = dict(zip(result_hashes(at), card_texts(at), strict=True))
    assert "taken 2021-06-01" in by_hash[hash_of(library.files["red"])]
    stripes = by_hash[hash_of(library.files["stripes"])]  # a PNG with no EXIF: its date is the file's mtime
    assert "file date " in stripes and "taken" not in stripes
    at.button(key=f"results-open-{hash_of(library.files['stripes'])}").click().run()
    rows = at.table[0].value.index
    assert "File date (no date in EXIF)" in rows and "Taken" not in rows


def test_the_date_filter_says_which_date_it_uses(library):
    at = run_app()
    label = at.sidebar.checkbox(key="f_use_dates").label
    assert "file date" in label.lower()
