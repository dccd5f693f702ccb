"""Where a search runs: in this process (opening the stores) or through the data home's owner (its local API).

Both backends offer the same four things — encode texts, encode an image, the vector store, the active collection —
so the engine has one ranking path and both give identical results. The owner backend never imports torch: a CLI
query through a running indexer costs an HTTP round trip, not a model load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from indexer.stores.vectors import VectorStore

log = logging.getLogger(__name__)


class NoIndexError(RuntimeError):
    """The data home has no index yet."""


@dataclass(frozen=True)
class CollectionRef:
    name: str
    model: str
    image_tower_id: str
    dim: int


class Backend(Protocol):
    store: VectorStore
    collection: CollectionRef
    home: Path
    kind: str  # 'local' or 'owner'

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...  # (N, D) unit float32

    def encode_image(self, path: Path | None = None, data: bytes | None = None) -> np.ndarray: ...  # (D,)

    def encode_image_both(self, path: Path | None = None,
                          data: bytes | None = None) -> tuple[np.ndarray, np.ndarray | None]: ...  # (D,), (V,)

    def close(self) -> None: ...


class OwnerBackend:
    """Everything through the owner's API (the owner holds the stores and a warm model)."""

    kind = "owner"

    def __init__(self, client, home: Path):
        from indexer.owner.client import RemoteVectorStore

        self.client, self.home = client, home
        self.store = RemoteVectorStore(client)
        status = client.status()
        info = status.get("collection")
        # A lean `--watch` owner's worker may be asleep (indexer.watcher): the first query then starts it.
        self.asleep = (status.get("worker") or {}).get("state") in ("asleep", "stopping")
        if not info:
            raise NoIndexError(f"nothing is indexed in {home} yet: run `python -m indexer FOLDER` first")
        self.collection = CollectionRef(info["name"], info["model"], info["image_tower_id"], info["dim"])

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.client.embed_texts(texts)

    def encode_image(self, path: Path | None = None, data: bytes | None = None) -> np.ndarray:
        return self.client.embed_image(path=path, data=data)

    def encode_image_both(self, path: Path | None = None,
                          data: bytes | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        return self.client.embed_image_both(path=path, data=data)

    def close(self) -> None:
        pass


class LocalBackend:
    """Opens the catalog, the vector store and (lazily) the model of the active collection itself.

    With the embedded store this process takes ownership of the data home for as long as it runs, so an indexer
    started meanwhile gets a clear "owned by" message instead of a store error.
    """

    kind = "local"

    def __init__(self, home: Path, db_url: str | None = None, qdrant_url: str | None = None,
                 qdrant_api_key: str | None = None, device: str | None = None, own: bool = True):
        from indexer.owner.ownership import Ownership
        from indexer.stores.catalog import Catalog
        from indexer.stores.factory import open_vector_store
        from indexer.stores.homedir import NoHomeError, require_home
        from models.registry import collection_builder

        try:
            self.home = require_home(home)  # a search is a read: a mistyped --home is an error, never a new home
        except NoHomeError as err:
            raise NoIndexError(str(err)) from None
        self._ownership = Ownership.acquire(home, "search", create=False) if own and qdrant_url is None else None
        try:
            self.catalog = Catalog.for_home(home, db_url)
            active = self.catalog.active_collection()
            if active is None:
                raise NoIndexError(f"nothing is indexed in {home} yet: run `python -m indexer FOLDER` first")
            # an index from before its preset's new image space is read by the preset that still builds it
            model = collection_builder(active.model, active.image_tower_id, active.dim)
            self.collection = CollectionRef(active.name, model, active.image_tower_id, active.dim)
            self.store = open_vector_store(home, qdrant_url, qdrant_api_key)
        except BaseException:
            self.close()
            raise
        from indexer.owner.modelslot import ModelSlot

        self.slot = ModelSlot(model, device, home)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.slot.active().encode_texts(list(texts)).cpu().numpy()

    def encode_image(self, path: Path | None = None, data: bytes | None = None) -> np.ndarray:
        return self.encode_image_both(path, data)[0]

    def encode_image_both(self, path: Path | None = None,
                          data: bytes | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(text-aligned, visual) vectors of an image from one forward pass, decoded as the indexer does."""
        from indexer.scan.decode import decode_image

        bundle = self.slot()
        raw = data if data is not None else Path(path).read_bytes()
        decoded = decode_image(raw, min_side=2 * bundle.input_size, name=str(path or "upload"))
        pixels = bundle.preprocess(decoded.image)[None]
        vectors, visuals = bundle.model.encode_images(pixels, with_visual=True)
        return vectors[0].float().cpu().numpy(), visuals[0].float().cpu().numpy()

    def encode_images(self, blobs: list[bytes], batch: int = 32) -> np.ndarray:
        """(N, D) for many small images at once (the relevance reference set): one forward pass per batch."""
        import torch

        from indexer.scan.decode import decode_image

        bundle = self.slot()
        rows = []
        for start in range(0, len(blobs), batch):
            pixels = [bundle.preprocess(decode_image(raw, min_side=2 * bundle.input_size, name="reference").image)
                      for raw in blobs[start:start + batch]]
            rows.append(bundle.model.encode_images(torch.stack(pixels)).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, self.collection.dim), np.float32)

    def close(self) -> None:
        for resource in (getattr(self, "store", None), getattr(self, "catalog", None)):
            if resource is not None:
                resource.close()
        if self._ownership is not None:
            self._ownership.release()


def open_backend(home: Path, *, prefer_owner: bool = True, **local_options) -> Backend:
    """The owner's API when an owner runs, else the stores in-process."""
    if prefer_owner:
        from indexer.owner.client import OwnerClient

        client = OwnerClient.find(home)
        if client is not None:
            return OwnerBackend(client, home)
    return LocalBackend(home, **local_options)
