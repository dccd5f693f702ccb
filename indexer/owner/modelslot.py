"""Which model an index uses, and the lazily loaded model for it.

The model used by an index is recorded in the catalog; a run without `--model` keeps it, so a flaky network can
never flip an existing index to another model. Each image tower writes its own collection
(`images-<image_tower_id>`); when the model changes, the new collection is built aside while the old one serves.

Runtime and precision (`--runtime`, `--precision`) do not name a collection: models.runtime only ever encodes with an
option whose vectors match torch fp32's at cos ≥ 0.999 on every calibration vector (ONNX Runtime fp32 is exact;
bf16 is measured on the loaded weights on this machine and refused below the bar), so vectors of either precision
rank alike and share the tower's collection. What embedded a collection's images is recorded with it
(`Catalog.inference`, written by the pipeline) so mixed runtimes stay visible rather than silent.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from indexer.settings import DEFAULT_MODEL, FALLBACK_MODEL, IndexerSettings
from indexer.stores.catalog import META_DEFAULT_MODEL, Catalog
from indexer.stores.records import CollectionInfo

log = logging.getLogger(__name__)


def collection_name(image_tower_id: str) -> str:
    return f"images-{image_tower_id}"


class ModelSlot:
    """Builds the bundle on first use (thread-safe); a rescan that finds nothing new never pays the load.

    A long-running owner releases the bundle again once it has been idle (`release_if_idle`): image work (indexing,
    `embed_image`) and text queries each keep it warm for their own timeout. Releasing only drops this slot's
    references, so a caller still holding the bundle finishes with it safely; the next use loads it again.
    """

    def __init__(self, name: str, device: str | None, home=None, runtime: str = "auto", precision: str | None = None):
        self.name, self.device, self.home, self.runtime, self.precision = name, device, home, runtime, precision
        self.runtime_in_use: str | None = None  # what `runtime` resolved to at the last load
        self._bundle = None
        self._active = None
        self._lock = threading.Lock()
        self.last_image_use = self.last_text_use = time.monotonic()
        self.loads = 0  # how often the bundle was built (a released slot that is used again builds it anew)

    @property
    def loaded(self) -> bool:
        return self._bundle is not None

    def __call__(self):
        bundle = self._get()
        self.last_image_use = time.monotonic()  # after a load, which can take longer than the idle timeout
        return bundle

    def _get(self):
        bundle = self._bundle
        if bundle is None:
            with self._lock:
                if self._bundle is None:
                    self._bundle = self._load()
                    self.loads += 1
                bundle = self._bundle
        return bundle

    def _load(self):
        import models
        from models.registry import accepts_option

        log.info("loading model %s", self.name)
        from models.home import model_cache
        from models.runtime import use_runtime

        options = {"home": str(self.home)} if self.home and accepts_option(self.name, "home") else {}
        bundle = models.create(self.name, device=self.device, **options)
        cache = model_cache(Path(self.home)) / "onnx" if self.home else None
        self.runtime_in_use = use_runtime(bundle, self.runtime, cache, self.precision)
        return bundle

    def active(self):
        """The bundle behind an `ActiveModel`, whose text tower follows promotions (for text queries)."""
        bundle = self._get()  # a text query alone is not image work
        with self._lock:
            if self._active is None or self._active.bundle is not bundle:
                from models.active import ActiveModel

                self._active = ActiveModel(bundle, self.home)
            active = self._active  # a release right after this must not hand the caller None
        self.last_text_use = time.monotonic()
        return active

    def release_if_idle(self, image_idle_s: float, text_idle_s: float, now: float | None = None) -> bool:
        """Drop the bundle when image work has been idle `image_idle_s` and text queries `text_idle_s`."""
        now = time.monotonic() if now is None else now
        if self._bundle is None or now - self.last_image_use < image_idle_s or now - self.last_text_use < text_idle_s:
            return False
        with self._lock:
            self._bundle = self._active = None
        log.info("released model %s after %.0f s without work", self.name, now - max(self.last_image_use,
                                                                                     self.last_text_use))
        return True

    def describe(self, now: float | None = None) -> dict:
        """What `status` shows about this slot: loaded or not, and for how long each side has been idle."""
        now = time.monotonic() if now is None else now
        return {"name": self.name, "loaded": self.loaded, "loads": self.loads, "runtime": self.runtime_in_use,
                "image_idle_s": round(now - self.last_image_use, 1), "text_idle_s": round(now - self.last_text_use, 1)}


def resolve_model(settings: IndexerSettings, catalog: Catalog) -> tuple[str, ModelSlot]:
    """--model wins; else the model recorded for this index; else the default, recorded on first use.

    A first run that cannot fetch the default LiT weights (no network) falls back to `offline-lite` with a warning
    and records that, so a later run with the network back does not silently switch the index to another model.
    """
    recorded = catalog.get_meta(META_DEFAULT_MODEL)
    chosen = settings.model or recorded or DEFAULT_MODEL
    slot = ModelSlot(chosen, settings.device, settings.home, settings.runtime, settings.precision)
    if chosen == DEFAULT_MODEL and settings.model is None and recorded is None:
        slot = _default_or_fallback(slot, settings)
    if recorded is None or slot.name != recorded:
        catalog.set_meta(META_DEFAULT_MODEL, slot.name)
    return slot.name, slot


def _default_or_fallback(slot: ModelSlot, settings: IndexerSettings) -> ModelSlot:
    from models.lit_download import WeightsUnavailable

    try:
        slot()  # downloads the checkpoint once (progress bar), or finds it in the model cache
        return slot
    except WeightsUnavailable as err:
        log.warning("the default model %s is not available (%s). Indexing with %s instead; this index stays on "
                    "%s (use --model %s later to build a %s collection beside it).", DEFAULT_MODEL,
                    str(err).split(":")[0], FALLBACK_MODEL, FALLBACK_MODEL, DEFAULT_MODEL, DEFAULT_MODEL)
        return ModelSlot(FALLBACK_MODEL, settings.device, settings.home, settings.runtime,
                         settings.precision)


def target_collection(catalog: Catalog, model_name: str, slot: ModelSlot) -> CollectionInfo:
    """The collection to write: the active one when it belongs to `model_name`, else one built for it.

    Only a model change loads the model here (its image tower id names the new collection). A preset whose image
    space changed under the same name (offline-lite → image space 2, then 3) counts as a model change: its old
    collections are handed to the preset that still builds them (`retire_old_spaces`), which serves them until
    the new collection is complete.
    """
    retire_old_spaces(catalog, model_name)
    active = catalog.active_collection()
    if active is not None and active.model == model_name:
        return active
    for info in catalog.list_collections():
        if info.model == model_name and info.status == "building":
            return info
    bundle = slot()
    info = catalog.add_collection(collection_name(bundle.image_tower_id), model_name, bundle.image_tower_id,
                                  bundle.dim)
    if active is None:
        catalog.set_active_collection(info.name)  # the first index serves while it is being built
    else:
        log.warning("model changed to %s: building collection %s while %s keeps serving", model_name, info.name,
                    active.name)
    return info


def retire_old_spaces(catalog: Catalog, model_name: str) -> list[str]:
    """Collections recorded under a preset that has since moved to another image space: re-recorded under the
    preset that still makes their space (no model load: the registry knows by tower id and dim). Every collection
    is looked at, not only `model_name`'s: `--model offline-lite-v2` on an index recorded as 'offline-lite' must
    find its own collection, not leave it to be served by the new space's model. Returns their names."""
    from models.registry import retired_variant

    moved = []
    for info in catalog.list_collections():
        if info.status == "retired":
            continue
        legacy = retired_variant(info.model, info.image_tower_id, info.dim)
        if legacy is None:
            continue
        catalog.set_collection_model(info.name, legacy)
        moved.append(info.name)
        if info.model == model_name:
            log.warning("%s now embeds photos in a new image space: collection %s (%d-d) was built by its previous "
                        "version, which keeps serving it as %s until the new collection is complete (every photo "
                        "is embedded once more; nothing else changes)", model_name, info.name, info.dim, legacy)
        else:
            log.info("collection %s (%d-d) was built by %s's previous version: now recorded as %s", info.name,
                     info.dim, info.model, legacy)
    return moved


def complete_collection(catalog: Catalog, info: CollectionInfo) -> None:
    """Once every live file has a vector (or failed), the collection becomes ready and, if new, active."""
    counts = catalog.counts(info.name)
    if counts["pending"] or counts["embedded"] < counts["indexed"]:
        return
    if info.status != "ready":
        catalog.set_collection_status(info.name, "ready")
    active = catalog.active_collection()
    if active is None or active.name != info.name:
        catalog.set_active_collection(info.name)
        if active is not None:
            catalog.set_collection_status(active.name, "retired")
            log.info("collection %s is complete and now serves; %s retired", info.name, active.name)
