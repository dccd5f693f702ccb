"""Tags, Tune and Index pages through `AppTest`: each renders; tagging, a tiny tuning run and adding a folder run as
background tasks to completion, and what they wrote is really in the catalog, the payloads and the versions.

These tests write (tags, versions, new photos), so the module works on a library of its own, not the shared one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imagegen import solid_color_image, write_jpeg
from tests.ui.appkit import QUERY, build_library, hash_of, result_hashes, run_app, texts, wait_for_tasks

pytestmark = pytest.mark.usefixtures("app_home")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A fresh library for this module (overrides the shared one; `app_home` then points the app at it)."""
    return build_library(tmp_path_factory.mktemp("ui-workflows"))

VOCABULARY = "red: crimson, scarlet\nblue\ngreen\nsquare\nstripes | a photo of {} | {} pattern\n"


def version_box(at, prefix: str):
    """The comparison's version selectbox (its key carries the number of versions)."""
    return next(box for box in at.selectbox if box.key and box.key.startswith(f"{prefix}-"))


def click(at, label: str):
    return next(b for b in at.button if b.label == label).click().run()


def test_tagging_a_folder_writes_tags_that_filters_and_browsing_find(library):
    import ui.state
    from ui.tagging import load_vocabulary

    at = run_app("tags_page.py")
    assert [s for s in texts(at.subheader)] == ["Folders and their top tags", "Tag a folder", "Browse by tag"]
    shipped = at.text_area(key="tag_vocab").value  # opens on the tags, not on the file format's comments
    assert shipped.startswith("# --- ") and shipped.splitlines()[1] == "beach: sandy beach, seashore"
    assert load_vocabulary(shipped).tags == load_vocabulary(None).tags  # the same vocabulary
    at.selectbox(key="tag_folder").set_value(str(library.root))
    at.checkbox(key="tag_edit").check()
    at.text_area(key="tag_vocab").input(VOCABULARY)
    at.number_input(key="tag_topk").set_value(2)
    at.checkbox(key="tag_fixed").check()
    at.slider(key="tag_threshold").set_value(0.0)  # test-tiny is random: every tag "applies", the top 2 are kept
    wait_for_tasks(click(at, "Tag this folder"))
    assert any("done. 14 of 14 photos tagged" in text for text in texts(at.success)), texts(at.success)

    services = ui.state.services()
    lib = ui.state.library()
    stored = services.catalog().tags_for(lib.photos)
    assert len(stored) == 14 and all(len(tags) == 2 for tags in stored.values())
    assert set().union(*stored.values()) <= {"red", "blue", "green", "square", "stripes"}
    assert {h: set(tags) for h, tags in stored.items()} == {h: set(p.tags) for h, p in lib.photos.items() if p.tags}

    tag = at.selectbox(key="browse_tag").value
    assert result_hashes(at, "tagged") == [p.content_hash for p in lib.with_tag(tag)][:24]
    assert "—" not in at.dataframe[0].value["top tags"].iloc[0]
    cards = [text for text in texts(at.markdown) if text.startswith("**") and "/\u200b" in text]
    assert len(cards) == len(result_hashes(at, "tagged"))  # folders break between names, never inside one
    assert not any(str(library.root) in card for card in cards)  # the short folder, full paths in the tooltip
    first = result_hashes(at, "tagged")[0]
    at.button(key=f"tagged-open-{first}").click().run()  # opens on the Search page
    assert lib.photos[first].paths[0] in at.table[0].value.to_string()

    search = run_app()
    search.sidebar.multiselect(key="f_tags").set_value([tag])
    search.sidebar.checkbox(key="closest").set_value(True)
    search.sidebar.checkbox(key="f_collapse").set_value(False)
    search.text_input(key="q").input(QUERY).run()
    assert set(result_hashes(search)) == {p.content_hash for p in lib.with_tag(tag)}


def captions_file(library, folder: Path) -> Path:
    rows = ["image,caption"]
    for colour in ("red", "green", "blue", "yellow"):
        rows += [f"{library.files[colour]},a {colour} square", f"{library.files[colour]},something {colour}"]
    rows += [f"{library.files['disk']},a red disk on white", f"{library.files['stripes']},blue stripes"]
    rows += [f"{library.files[f'p{i}']},a blurry photo number {i}" for i in range(6)]
    path = folder / "captions.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_tiny_tuning_run_completes_then_promote_and_roll_back(library, tmp_path):
    from models import versions

    at = run_app("tune_page.py")
    at.text_input(key="t_captions").input(str(tmp_path / "missing.csv"))
    at = click(at, "Start tuning")
    assert any("no captions file" in text for text in texts(at.error))
    at.text_input(key="t_captions").input("")
    at.get("file_uploader")[0].set_value(("my captions.csv", captions_file(library, tmp_path).read_bytes(), "text/csv"))
    at.selectbox(key="t_mode").set_value("whole")
    at.number_input(key="t_epochs").set_value(2)
    at.selectbox(key="t_batch").set_value(8)
    at.text_input(key="t_lr").input("0.01")
    at.slider(key="t_valfrac").set_value(0.3)
    at.text_input(key="t_name").input("ui-tiny")
    wait_for_tasks(click(at, "Start tuning"))
    assert any("Saved **ui-tiny**" in text for text in texts(at.success)), texts(at.error)
    assert len(at.get("vega_lite_chart")) >= 2  # loss and recall curves

    assert (library.home / "captions" / "my_captions.csv").is_file()  # uploads are kept for --resume
    saved = {v.name: v for v in versions.list_versions(library.home)}
    assert "ui-tiny" in saved and saved["ui-tiny"].metrics is not None
    at.run()
    assert version_box(at, "cmp_b").value.name == "ui-tiny"
    at.toggle(key="cmp_run").set_value(True).run()
    assert len(at.get("image")) >= 2  # example queries ranked under both towers
    assert at.button(key="promote").disabled  # trained on a handful of pairs: promotion asks first, and says why
    assert any("trained on only" in text for text in texts(at.warning)), texts(at.warning)
    at.checkbox(key="promote-confirm").check().run()
    at.button(key="promote").click().run()
    assert versions.active(library.home, saved["ui-tiny"].image_tower_id).name == "ui-tiny"
    assert any("ui-tiny" in text for text in texts(at.markdown) if "Search uses" in text)
    at.button(key="rollback").click().run()
    assert versions.active(library.home, saved["ui-tiny"].image_tower_id) is None


def test_an_unvalidated_run_shows_empty_states_and_guards_its_promotion(library, tmp_path):
    from models import versions

    at = run_app("tune_page.py")
    at.get("file_uploader")[0].set_value(("tiny.csv", captions_file(library, tmp_path).read_bytes(), "text/csv"))
    at.selectbox(key="t_mode").set_value("head")
    at.number_input(key="t_epochs").set_value(1)
    at.selectbox(key="t_batch").set_value(8)
    at.slider(key="t_valfrac").set_value(0.0)  # no held-out captions: nothing measures this version
    at.text_input(key="t_name").input("ui-unvalidated")
    wait_for_tasks(click(at, "Start tuning"))
    assert any("Saved **ui-unvalidated**" in text for text in texts(at.success)), texts(at.error)
    shown = " ".join(texts(at.caption) + texts(at.markdown) + texts(at.warning))
    assert "No held-out recall" in shown and "None" not in shown and "null" not in shown
    assert version_box(at, "cmp_b").value.name == "ui-unvalidated"  # the comparison opens on the new version
    assert version_box(at, "cmp_a").index == 0  # the base model
    assert len(at.get("vega_lite_chart")) == 1  # the loss curve; no empty recall chart, no empty comparison
    assert not at.dataframe  # no table of empty metrics
    assert any("not validated" in text for text in texts(at.caption))
    warning = next(text for text in texts(at.warning) if "may make search worse" in text)
    assert "trained without validation" in warning and "trained on only" in warning
    assert at.button(key="promote").disabled and at.button(key="promote").proto.type == "secondary"
    at.checkbox(key="promote-confirm").check().run()
    assert not at.button(key="promote").disabled
    tower = next(v for v in versions.list_versions(library.home) if v.name == "ui-unvalidated").image_tower_id
    assert versions.active(library.home, tower) is None  # nothing promoted without the click



def test_index_page_shows_counts_failures_model_and_store(library):
    at = run_app("index_page.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Indexed"] == "14" and metrics["Pending"] == "0" and metrics["Failed"] == "1"
    assert metrics["Photos in the vector store"] == "14"
    assert "notes.jpg" in at.dataframe[0].value["file"].iloc[0]
    table = at.table[0].value.to_string()
    assert "test-tiny" in table and "edge" in table and str(library.home) in table
    folders = at.dataframe[1].value  # the root the user added, not its leaf folders
    assert list(folders["folder"]) == [str(library.root)]
    assert folders["photos"].iloc[0] == 14 and folders["subfolders"].iloc[0] == 5  # 2021, beach, 2023, city, night
    assert not folders["followed"].iloc[0]
    assert not at.button(key="watch-start").disabled


def test_an_index_job_reports_what_it_did_not_the_library_totals():
    """Found by a breaker pass: adding an empty folder said "done. 9 indexed · 0 pending · 1 failed" (the library)."""
    from ui.jobs import job_summary

    assert job_summary({"embedded": 0, "reused": 0, "unchanged": 0, "failed": 0}) == "no photos found there"
    assert job_summary({"embedded": 3, "failed": 1, "unchanged": 2}) == "3 new · 2 unchanged · 1 failed"


def test_adding_a_folder_indexes_it_in_the_background(library, tmp_path):
    at = run_app("index_page.py")
    at.text_input(key="add-folder-path").input(str(tmp_path / "missing"))
    at = click(at, "Index this folder")
    assert any("Not a folder" in text for text in texts(at.error))
    at.text_input(key="add-folder-path").input(".")  # a folder, but relative to the UI's own working folder
    at = click(at, "Index this folder")
    assert any("Not a folder: `.`" in text and "absolute path" in text for text in texts(at.error))

    extra = tmp_path / "extra"
    extra.mkdir()
    for colour in ("purple", "orange"):
        write_jpeg(extra / f"{colour}.jpg", image=solid_color_image(colour, (80, 60)))
    at.text_input(key="add-folder-path").input(str(extra))
    wait_for_tasks(click(at, "Index this folder"))
    assert any(f"Indexing {extra}: done. 2 new" in text for text in texts(at.success)), texts(at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Indexed"] == "16" and metrics["Photos in the vector store"] == "16"
    assert str(extra) in list(at.dataframe[-1].value["folder"])  # now one of the index's folders
    search = run_app()
    assert any("16 photos indexed" in text for text in texts(search.info))
    search.sidebar.selectbox(key="f_folder").set_value(str(extra))
    search.sidebar.checkbox(key="closest").set_value(True)
    search.text_input(key="q").input("purple").run()
    assert set(result_hashes(search)) <= {hash_of(extra / "purple.jpg"), hash_of(extra / "orange.jpg")}
    assert result_hashes(search)


def test_following_changes_picks_up_a_new_photo(library, tmp_path):
    """The UI runs the watcher itself when it owns the home (Follow changes), over the folders it indexes."""
    import time

    import ui.state

    at = run_app("index_page.py")
    at.button(key="watch-start").click().run()
    assert ui.state.services().watching and at.button(key="watch-stop")
    assert all(at.dataframe[-1].value["followed"])  # every added folder is followed now
    extra = Path(next(r for r in ui.state.services().status()["roots"]))
    write_jpeg(extra / "lime.jpg", image=solid_color_image("lime", (80, 60)))
    deadline = time.monotonic() + 30
    while {m.label: m.value for m in at.run().metric}["Indexed"] != "17":
        assert time.monotonic() < deadline, ("the watcher did not index the new photo", ui.state.services().status(),
                                             ui.state.services().watch_error, ui.state.services().watching)
        time.sleep(0.3)
    at.button(key="watch-stop").click().run()
    assert not ui.state.services().watching and at.button(key="watch-start")
