"""A preset that changes its image space under the same name (offline-lite → image space 2, then 3) migrates like a
model change: the old collection is handed to the preset that still builds it and keeps serving; a new one is
built."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from indexer.owner.modelslot import complete_collection, retire_old_spaces, target_collection
from indexer.stores.catalog import Catalog
from models.registry import list_presets, retired_variant

OLD_ID = "efficientnet_lite0-5ac0ffee0001"  # generation 1 ids: the same arch, 1000-d vectors
SPACE_2_ID = "efficientnet_lite0-24abe65a12f3"  # generation 2: the center-cropping tower, 2280-d
NEW = SimpleNamespace(image_tower_id="efficientnet_lite0-36648057810c", dim=2280)  # image space 3 (squash)


def test_the_registry_recognises_earlier_generations_without_loading_a_model():
    assert retired_variant("offline-lite", OLD_ID, 1000) == "offline-lite-v1"
    assert retired_variant("offline-lite", SPACE_2_ID, 2280) == "offline-lite-v2"
    assert retired_variant("offline-lite", NEW.image_tower_id, NEW.dim) is None
    assert retired_variant("test-tiny", OLD_ID, 1000) is None
    assert {"offline-lite-v1", "offline-lite-v2"} <= set(list_presets())


def test_the_space_2_preset_builds_the_tower_its_collections_are_recognised_by(lite_bundle):
    """`SPACE_2_IDS` is how a space-2 collection is recognised with no model load; it must name the tower that
    `offline-lite-v2` really builds, and the current preset must build another one (its own collection)."""
    import models
    from models.offline_lite import IMAGE_SPACE, SPACE_2_IDS

    old = models.create("offline-lite-v2", device="cpu")
    assert old.model.image_tower.fingerprint() in SPACE_2_IDS and old.spec["image_space"] == "offline-lite/2"
    assert lite_bundle.model.image_tower.fingerprint() not in SPACE_2_IDS
    assert lite_bundle.spec["image_space"] == IMAGE_SPACE == "offline-lite/3"
    # the text side is the same trained model (only each space's hub correction constant differs)
    new_text, old_text = lite_bundle.model.text_tower.state_dict(), old.model.text_tower.state_dict()
    assert new_text.keys() == old_text.keys() and all(torch.equal(new_text[k], old_text[k]) for k in new_text)
    assert old.model.text_tower.head[0].hub_strength == 0.95


@pytest.mark.parametrize(("old_id", "dim", "legacy"), [(OLD_ID, 1000, "offline-lite-v1"),
                                                       (SPACE_2_ID, 2280, "offline-lite-v2")])
def test_space_2_collections_serve_while_space_3_is_built(tmp_path, old_id, dim, legacy):
    with Catalog.for_home(tmp_path) as catalog:
        catalog.add_collection("images-" + old_id, "offline-lite", old_id, dim)
        catalog.set_active_collection("images-" + old_id)
        info = target_collection(catalog, "offline-lite", lambda: NEW)
        assert info.name == "images-" + NEW.image_tower_id
        assert catalog.get_collection("images-" + old_id).model == legacy
        assert catalog.active_collection().name == "images-" + old_id


def test_old_offline_lite_collection_serves_while_the_new_space_is_built(tmp_path, caplog):
    with Catalog.for_home(tmp_path) as catalog:
        catalog.add_collection("images-" + OLD_ID, "offline-lite", OLD_ID, 1000)
        catalog.set_active_collection("images-" + OLD_ID)
        loads = []

        def slot():
            loads.append(1)
            return NEW

        info = target_collection(catalog, "offline-lite", slot)
        assert (info.name, info.dim, info.model) == ("images-" + NEW.image_tower_id, 2280, "offline-lite")
        assert loads == [1]
        old = catalog.get_collection("images-" + OLD_ID)
        assert old.model == "offline-lite-v1"  # the preset that still builds its space, so search keeps working
        assert catalog.active_collection().name == old.name  # the old one serves until the new one is complete
        assert "keeps serving" in caplog.text and "new image space" in caplog.text
        complete_collection(catalog, info)  # nothing pending: the new collection is complete
        assert catalog.active_collection().name == info.name
        assert catalog.get_collection(old.name).status == "retired"
        assert retire_old_spaces(catalog, "offline-lite") == []  # idempotent: nothing left to hand over


@pytest.mark.parametrize(("tower", "dim", "options", "legacy"), [
    (OLD_ID, 1000, {"image_temperature": 2.0}, "offline-lite-v1"),
    (SPACE_2_ID, 2280, {"pretrained": True, "tuned": True}, "offline-lite-v2"),
])
def test_a_version_tuned_on_an_old_space_is_rebuilt_on_the_preset_that_still_makes_it(tmp_path, monkeypatch, tower,
                                                                                     dim, options, legacy):
    """A promoted text tower tuned on an earlier space must keep serving that space's collection during the
    migration."""
    import json

    import models.registry as registry

    built = []

    class Stop(Exception):
        """Raised by the fake create: what was asked for is all this test checks (no weights loaded)."""

    def fake_create(name, **options):
        built.append((name, options))
        raise Stop

    monkeypatch.setattr(registry, "create", fake_create)
    (tmp_path / "config.json").write_text(json.dumps({
        "format": "loupe-model", "format_version": 1, "image_tower_id": tower, "dim": dim,
        "base": {"preset": "offline-lite", "options": options}}))
    with pytest.raises(Stop):
        registry.load(tmp_path)
    assert built == [(legacy, {"device": "cpu", **options})]


def test_choosing_the_old_space_by_name_finds_its_collection_without_a_model_load(tmp_path):
    """`--model offline-lite-v2` on an index still recorded as 'offline-lite' (never migrated) must write to and serve
    its own collection, not leave it recorded under the preset that now builds another space."""
    with Catalog.for_home(tmp_path) as catalog:
        catalog.add_collection("images-" + SPACE_2_ID, "offline-lite", SPACE_2_ID, 2280)
        catalog.set_active_collection("images-" + SPACE_2_ID)

        def slot():
            raise AssertionError("no model load is needed to find the collection")

        info = target_collection(catalog, "offline-lite-v2", slot)
        assert (info.name, info.model) == ("images-" + SPACE_2_ID, "offline-lite-v2")
        assert catalog.active_collection().model == "offline-lite-v2"


def test_a_search_opened_before_the_indexer_migrated_reads_with_the_old_space_model(tmp_path):
    """Only the indexer re-records collections; a search that comes first must still load the preset that built the
    active collection (same width, so nothing else would notice the mix-up)."""
    from search.backend import LocalBackend

    home = tmp_path / "home"
    home.mkdir()
    with Catalog.for_home(home) as catalog:
        catalog.add_collection("images-" + SPACE_2_ID, "offline-lite", SPACE_2_ID, 2280)
        catalog.set_active_collection("images-" + SPACE_2_ID)
    backend = LocalBackend(home, own=False)
    try:
        assert backend.collection.model == "offline-lite-v2" and backend.slot.name == "offline-lite-v2"
        assert not backend.slot.loaded  # nothing was loaded to find that out
    finally:
        backend.close()

