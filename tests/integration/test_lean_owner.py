"""A long-running owner releases its model when idle, loads it again on the next work, and says which is loaded."""

from __future__ import annotations

import time
from pathlib import Path

from indexer.owner.modelslot import ModelSlot
from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from tests.imagegen import write_jpeg


def test_a_slot_is_released_only_when_both_sides_are_idle() -> None:
    slot = ModelSlot("test-tiny", "cpu")
    bundle = slot()
    now = time.monotonic()
    assert not slot.release_if_idle(10, 10, now=now)
    slot.active().encode_texts(["a query"])  # a text query keeps it warm past the image timeout
    assert not slot.release_if_idle(10, 30, now=slot.last_image_use + 20)
    assert slot.release_if_idle(10, 30, now=slot.last_text_use + 31)
    assert not slot.loaded and slot.describe()["loaded"] is False
    assert bundle.model.encode_texts(["still usable by whoever holds it"]).shape == (1, bundle.dim)
    assert slot().image_tower_id == bundle.image_tower_id and slot.loads == 2


def test_an_idle_service_releases_its_model_and_reloads_it_for_new_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "red.jpg", (96, 72), color="red")
    settings = IndexerSettings.from_env(home=tmp_path / "home", roots=(photos,), model="test-tiny", workers=1,
                                        batch_size=4, image_idle_s=0.0, text_idle_s=0.0)
    service = IndexerService(settings)
    try:
        assert service.scan().embedded == 1
        assert service.model_state()[0]["loaded"]
        assert service.release_idle_models()
        assert service.model_state()[0]["loaded"] is False
        write_jpeg(photos / "navy.jpg", (96, 72), color="navy")
        assert service.handle([photos / "navy.jpg"], []).embedded == 1
        assert service.model_state()[0]["loads"] == 2
        with service.work_lock:  # busy: a batch in flight is never pulled from under the pipeline
            assert not service.release_idle_models()
    finally:
        service.close()
