"""A preset that changes its image space under the same name (offline-lite → image space 2) migrates like a model
change: the old collection is handed to the preset that still builds it and keeps serving; a new one is built."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from indexer.owner.modelslot import complete_collection, retire_old_spaces, target_collection
from indexer.stores.catalog import Catalog
from models.registry import list_presets, retired_variant

OLD_ID = "efficientnet_lite0-5ac0ffee0001"  # generation 1 ids: the same arch, 1000-d vectors
NEW = SimpleNamespace(image_tower_id="efficientnet_lite0-24abe65a12f3", dim=2280)


def test_the_registry_recognises_generation_1_collections_without_loading_a_model():
    assert retired_variant("offline-lite", OLD_ID, 1000) == "offline-lite-v1"
    assert retired_variant("offline-lite", NEW.image_tower_id, NEW.dim) is None
    assert retired_variant("test-tiny", OLD_ID, 1000) is None
    assert "offline-lite-v1" in list_presets()


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


def test_a_version_tuned_on_the_old_space_is_rebuilt_on_the_preset_that_still_makes_it(tmp_path, monkeypatch):
    """A promoted v1 text tower must keep serving the v1 collection during the migration."""
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
        "format": "loupe-model", "format_version": 1, "image_tower_id": OLD_ID, "dim": 1000,
        "base": {"preset": "offline-lite", "options": {"image_temperature": 2.0}}}))
    with pytest.raises(Stop):
        registry.load(tmp_path)
    assert built == [("offline-lite-v1", {"device": "cpu", "image_temperature": 2.0})]
