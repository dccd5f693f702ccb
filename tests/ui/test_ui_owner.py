"""When an indexer owns the data home, the UI works through its API: same search answers, its status, its jobs.

The owner here is what `python -m indexer --watch` runs (lock, `IndexerService`, `ApiServer`, owner file), started in
this process on a library of the module's own (the tests write to it).
"""

from __future__ import annotations

import pytest

from tests.imagegen import solid_color_image, write_jpeg
from tests.ui.appkit import QUERY, build_library, hash_of, result_hashes, run_app, texts, wait_for_tasks


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    from indexer.owner.api import ApiServer, create_app
    from indexer.owner.ownership import Ownership
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings

    library = build_library(tmp_path_factory.mktemp("ui-owner"))
    ownership = Ownership.acquire(library.home, "indexer --watch")
    service = IndexerService(IndexerSettings.from_env(home=library.home, roots=(library.root,), workers=1))
    server = ApiServer(create_app(service, ownership.token))
    ownership.publish("127.0.0.1", server.start())
    try:
        yield library, service
    finally:
        server.stop()
        service.close()
        ownership.release()


@pytest.fixture(scope="module")
def app_home(owner):
    import ui.state

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOUPE_HOME", str(owner[0].home))
        yield owner[0]
        ui.state._open.clear()


def test_search_goes_through_the_owner_with_the_engines_answers(owner, app_home):
    import ui.state
    from search.engine import SearchEngine
    from search.query import build_query

    library, service = owner
    at = run_app()
    assert ui.state.services().mode == "owner"
    at.sidebar.checkbox(key="closest").set_value(True)
    at.sidebar.checkbox(key="f_collapse").set_value(False)
    at.text_input(key="q").input(QUERY).run()
    from search.backend import OwnerBackend

    engine = SearchEngine(OwnerBackend(ui.state.services().client, library.home))
    expected = engine.search(build_query(QUERY), min_score=0.0, collapse_duplicates=False, limit=48)
    assert result_hashes(at) == [r.content_hash for r in expected.results] and len(expected.results) == 14
    assert len(at.get("image")) == 14


def test_status_and_an_index_job_come_from_the_owner(owner, app_home, tmp_path):
    library, service = owner
    at = run_app("index_page.py")
    assert any("through process" in text for text in texts(at.caption))
    assert {m.label: m.value for m in at.metric}["Indexed"] == "14"
    extra = tmp_path / "more"
    extra.mkdir()
    write_jpeg(extra / "teal.jpg", image=solid_color_image("teal", (80, 60)))
    at.text_input(key="add-folder-path").input(str(extra))
    wait_for_tasks(next(b for b in at.button if b.label == "Index this folder").click().run())
    assert {m.label: m.value for m in at.metric}["Indexed"] == "15"
    assert service.catalog.get_file(str(extra / "teal.jpg")).status == "indexed"  # the owner did the work


def test_tags_written_beside_the_owner_reach_its_payloads(owner, app_home):
    library, service = owner
    at = run_app("tags_page.py")
    at.selectbox(key="tag_folder").set_value(str(library.root / "2021" / "beach"))
    at.checkbox(key="tag_edit").check()
    at.text_area(key="tag_vocab").input("red\nblue\n")
    at.number_input(key="tag_topk").set_value(1)
    at.checkbox(key="tag_fixed").check()
    at.slider(key="tag_threshold").set_value(0.0)
    wait_for_tasks(next(b for b in at.button if b.label == "Tag this folder").click().run())
    red = hash_of(library.files["red"])
    assert set(service.catalog.tags_for([red])[red]) <= {"red", "blue"}
    from indexer.stores.vectors import point_id

    payload = service.store.retrieve(service.collection.name, [point_id(red)])[0].payload
    assert len(payload["tags"]) == 1 and payload["tags"][0] in {"red", "blue"}
