"""The owner's local JSON API: search, embeddings, payload edits, status and "index this folder" over HTTP.

The embedded vector stores admit one process at a time, so the process that owns a data home (indexer.owner.ownership)
serves everyone else through this API: a CLI query then costs no model load, and the UI can search while the
watcher writes. It listens on 127.0.0.1 only, and every endpoint but `/health` and the OpenAPI spec needs
`Authorization: Bearer <token>` with the token from the data home's 0600 `owner.token`: other local users can
reach the port, but not read the token. Vectors are never written, deleted or overwritten here: only the owner's
indexer does that, so the catalog and the store stay in step (a reader that changed tags asks the owner to rebuild
those payloads from the catalog: `/payloads/sync`; `/check` verifies and repairs the invariant). Paths are guarded
(`indexer.owner.pathguard`): `/embed/image` reads only photos of the index, `/index` never takes system folders.
Handlers are plain `def`s: FastAPI runs them in its thread pool (all of the
model, SQLite and Qdrant Edge block).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import secrets
import threading
import time
import typing
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model

from indexer.owner.jobs import MAX_JOBS_KEPT, JobRunner
from indexer.owner.ownership import UNAUTHORIZED
from indexer.owner.pathguard import UNAVAILABLE, PathRefused, indexable_folder, read_indexed_image
from indexer.owner.status import status_report
from indexer.scan.decode import DecodeError, decode_image
from indexer.stores.vectors import (
    StoreLockedError,
    UnknownCollectionError,
    VectorFilter,
    VectorPoint,
    VectorStoreError,
    VectorStoreUnavailableError,
    check_collection_name,
)

log = logging.getLogger(__name__)



class ApiError(Exception):
    """An error answer: HTTP status, a stable machine-readable code (clients map it to their own errors), a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


# -- request bodies -----------------------------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silently ignored option


def _filter_model() -> type[BaseModel]:
    """The JSON form of `VectorFilter`, built from its own fields: a new filter field needs no edit here."""
    hints = typing.get_type_hints(VectorFilter)
    fields = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(VectorFilter)}
    return create_model("VectorFilterBody", __base__=Body, **fields)


FilterBody = _filter_model()


class TextsBody(Body):
    texts: list[str]


class ImageBody(Body):
    path: str | None = None  # absolute path on the owner's machine
    data_b64: str | None = None  # the file's bytes, base64
    name: str | None = Field(None, max_length=4096)  # what to call uploaded bytes in an error (e.g. the file name)


class QueryBody(Body):
    vector: list[float]
    limit: int = Field(10, ge=1, le=10_000)
    offset: int = Field(0, ge=0)
    filter: FilterBody | None = None
    score_threshold: float | None = None
    using: str = ""  # the vector to rank by: "" the text-aligned one, "visual" the visual one


class IdsBody(Body):
    ids: list[str]


class RetrieveBody(IdsBody):
    with_vectors: bool = False


class CountBody(Body):
    filter: FilterBody | None = None


class ScrollBody(CountBody):
    with_vectors: bool = False
    batch: int = Field(256, ge=1, le=10_000)  # points per store call and per streamed chunk


class SyncBody(Body):
    hashes: list[str] = Field(max_length=100_000)  # content hashes whose payloads follow the catalog again


class CheckBody(Body):
    repair: bool = False


class IndexBody(Body):
    paths: list[str] = Field(min_length=1)  # absolute folder paths
    add_roots: bool = False  # also follow them from now on (only when the user asked for it: CLI, UI)


def _vector_filter(body: BaseModel | None) -> VectorFilter | None:
    return None if body is None else VectorFilter(**dict(body))


def _point_json(point: VectorPoint) -> dict[str, Any]:
    vector = None if point.vector is None else np.asarray(point.vector, dtype=np.float32).tolist()
    visual = None if point.visual is None else np.asarray(point.visual, dtype=np.float32).tolist()
    return {"id": point.id, "vector": vector, "payload": point.payload, "visual": visual}


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """The vector store's errors as answers (404 unknown collection or point, 422 bad input, 503 locked, 500 else),
    each with a code the client maps back to the exception a local store raises."""
    try:
        yield
    except UnknownCollectionError as err:
        raise ApiError(404, "unknown_collection", str(err)) from err
    except KeyError as err:  # set_payload on an id the collection lacks
        raise ApiError(404, "unknown_point", str(err.args[0]) if err.args else "unknown point") from err
    except (StoreLockedError, VectorStoreUnavailableError) as err:
        raise ApiError(503, "store_unavailable", str(err)) from err
    except ValueError as err:  # invalid collection name, id or vector
        raise ApiError(422, "invalid", str(err)) from err
    except VectorStoreError as err:  # e.g. a vector of the wrong dimension (Qdrant Edge says so in its message)
        raise ApiError(500, "store_error", str(err)) from err


# -- handlers -----------------------------------------------------------------------------------------------------


class OwnerApi:
    """The endpoints, bound to one `IndexerService`."""

    def __init__(self, service):
        self.service = service
        self.jobs = JobRunner(service)
        # Model calls take turns: Hugging Face fast tokenizers raise "Already borrowed" when two threads share one,
        # and concurrent batches on one accelerator only contend for it.
        self.model_lock = threading.Lock()

    async def health(self) -> dict[str, Any]:
        """Answered on the event loop, never queued behind blocking handlers: clients give it one second."""
        return {"ok": True, "pid": os.getpid(), "home": str(self.service.settings.home)}

    def status(self) -> dict[str, Any]:
        service = self.service
        report = status_report(service.catalog, service.store, service.settings, roots=service.roots,
                               watching=service.watching, models=service.model_state())
        worker = getattr(service, "worker", None)  # a `--watch` owner's worker process (indexer.watcher.worker)
        if worker is not None:
            report["worker"] = worker.describe()
        return report

    def embed_texts(self, body: TextsBody) -> dict[str, Any]:
        """Text vectors from the active text tower (a promotion takes effect at the next request)."""
        active = self.service.serving_slot().active()
        with self.model_lock:
            vectors = active.encode_texts(body.texts).float().cpu().numpy()  # (N, D)
            version = active.text_version
        return {"vectors": vectors.tolist(), "dim": active.bundle.dim, "text_version": version,
                "image_tower_id": active.bundle.image_tower_id}

    def embed_image(self, body: ImageBody) -> dict[str, Any]:
        """An image vector, decoded and preprocessed exactly as the indexer does, so it matches stored vectors."""
        data, name = _image_bytes(body, self.service)
        bundle = self.service.serving_slot()()
        try:
            decoded = decode_image(data, min_side=2 * bundle.input_size, name=name,
                                   max_megapixels=self.service.settings.max_megapixels)
        except DecodeError as err:
            if body.path is not None:  # the same answer as for a path outside the index: no oracle
                raise ApiError(422, "unavailable_image", UNAVAILABLE) from err
            raise ApiError(422, "undecodable", str(err)) from err
        pixels = bundle.preprocess(decoded.image).unsqueeze(0)  # (1, 3, H, W)
        with self.model_lock:
            vectors, visuals = bundle.model.encode_images(pixels, with_visual=True)
        vector, visual = vectors[0].float().cpu().numpy(), visuals[0].float().cpu().numpy()  # (D,), (V,)
        return {"vector": vector.tolist(), "dim": bundle.dim, "image_tower_id": bundle.image_tower_id,
                "visual": visual.tolist()}

    def collections(self) -> dict[str, Any]:
        active = self.service.catalog.active_collection()
        with _store_errors():
            names = self.service.store.collections()
        return {"collections": names, "active": active.name if active else None}

    def query(self, collection: str, body: QueryBody) -> dict[str, Any]:
        vector = np.asarray(body.vector, dtype=np.float32)
        with _store_errors():
            hits = self.service.store.query(check_collection_name(collection), vector, body.limit, body.offset,
                                            _vector_filter(body.filter), body.score_threshold, using=body.using)
        return {"hits": [{"id": h.id, "score": h.score, "payload": h.payload} for h in hits]}

    def dims(self, collection: str) -> dict[str, Any]:
        with _store_errors():
            return {"dims": self.service.store.vector_dims(check_collection_name(collection))}

    def retrieve(self, collection: str, body: RetrieveBody) -> dict[str, Any]:
        with _store_errors():
            points = self.service.store.retrieve(check_collection_name(collection), body.ids, body.with_vectors)
        return {"points": [_point_json(p) for p in points]}

    def count(self, collection: str, body: CountBody) -> dict[str, Any]:
        with _store_errors():
            return {"count": self.service.store.count(check_collection_name(collection), _vector_filter(body.filter))}

    def scroll(self, collection: str, body: ScrollBody) -> StreamingResponse:
        """Every matching point as NDJSON, one per line, a store batch at a time: memory stays bounded."""
        with _store_errors():
            points = self.service.store.scroll(check_collection_name(collection), _vector_filter(body.filter),
                                               body.with_vectors, body.batch)
            first = next(points, None)  # errors (unknown collection) surface here, before the 200 is sent

        def lines() -> Iterator[bytes]:
            chunk: list[str] = []
            for point in itertools.chain([first] if first else [], points):
                chunk.append(json.dumps(_point_json(point)) + "\n")
                if len(chunk) >= body.batch:
                    yield "".join(chunk).encode()
                    chunk = []
            if chunk:
                yield "".join(chunk).encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    def sync_payloads(self, body: SyncBody) -> dict[str, Any]:
        """Rebuild these contents' payloads from the catalog (e.g. after `search.tag --write` changed tags)."""
        with self.service.work_lock, _store_errors():
            self.service.sync.refresh(body.hashes)
        return {"ok": True}

    def check(self, body: CheckBody) -> dict[str, Any]:
        """Verify catalog ↔ vectors ↔ files; `repair` fixes the drift (the owner's own writes, under its lock)."""
        with _store_errors():
            return self.service.check(repair=body.repair).summary()

    def index(self, body: IndexBody) -> dict[str, Any]:
        """Scan folders in the background (poll GET /jobs/{job_id}); with `add_roots`, keep following them."""
        try:
            roots = tuple(indexable_folder(p, self.service.settings.home) for p in body.paths)
        except PathRefused as err:
            raise ApiError(422, err.code, str(err)) from None
        if body.add_roots:
            self.service.add_roots(roots)
        return {"job_id": self.jobs.submit(roots).id}

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "unknown_job", f"no index job {job_id!r} (finished jobs are kept {MAX_JOBS_KEPT} deep)")
        return dataclasses.asdict(job)


def _image_bytes(body: ImageBody, service) -> tuple[bytes, str]:
    if (body.path is None) == (body.data_b64 is None):
        raise ApiError(422, "invalid", "send exactly one of 'path' (absolute, on the owner's machine) and 'data_b64'")
    if body.data_b64 is not None:
        try:
            return base64.b64decode(body.data_b64, validate=True), body.name or "uploaded image"
        except binascii.Error as err:
            raise ApiError(422, "invalid", f"data_b64 is not base64: {err}") from err
    try:
        return read_indexed_image(body.path, service.catalog, service.roots), body.path
    except PathRefused as err:
        raise ApiError(422, err.code, str(err)) from None


# -- the app ------------------------------------------------------------------------------------------------------


_BEARER = HTTPBearer(auto_error=False, description="the token in <data home>/owner.token")


class BearerCheck:
    """A dependency refusing requests without `Authorization: Bearer <token>` (constant-time comparison)."""

    def __init__(self, token: str):
        self._expected = token.encode()

    def __call__(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not secrets.compare_digest(given, self._expected):
            raise ApiError(401, "unauthorized", UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})


# (method, path, OwnerApi method): everything but /health needs the token. No upsert, delete or payload overwrite:
# only the owner's indexer writes vectors.
PRIVATE_ROUTES = [
    ("GET", "/status", "status"),
    ("POST", "/embed/texts", "embed_texts"),
    ("POST", "/embed/image", "embed_image"),
    ("GET", "/vectors/collections", "collections"),
    ("GET", "/vectors/{collection}/dims", "dims"),
    *(("POST", f"/vectors/{{collection}}/{op}", op) for op in ("query", "retrieve", "count", "scroll")),
    ("POST", "/payloads/sync", "sync_payloads"),
    ("POST", "/check", "check"),
    ("POST", "/index", "index"),
    ("GET", "/jobs/{job_id}", "job"),
]


def create_app(service, token: str) -> FastAPI:
    """The API of one `IndexerService`; `token` is the owner's secret (`Ownership.token`)."""
    api = OwnerApi(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        api.jobs.close()

    app = FastAPI(title="Loupe owner API", version="1", lifespan=lifespan)
    app.state.api = api
    app.add_api_route("/health", api.health, methods=["GET"])  # open: clients probe it before reading the token
    private = APIRouter(dependencies=[Depends(BearerCheck(token))])
    for method, path, handler in PRIVATE_ROUTES:
        private.add_api_route(path, getattr(api, handler), methods=[method])
    app.include_router(private)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"detail": err.message, "error": err.code}, err.status, headers=err.headers)

    return app


class ApiServer:
    """uvicorn in a daemon thread, so the owner's main thread stays free for the watch loop and Ctrl-C."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        """`port` 0 lets the kernel pick a free one (no race with other processes); read `.port` after `start`."""
        self.host = host
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="loupe-api", daemon=True)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    def start(self, timeout: float = 10.0) -> int:
        """Start serving and return once the socket listens (the port to publish)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the API server failed to start on {self.host}:{self.server.config.port} "
                                   "(see the error above)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the API server did not listen within {timeout:.0f} s")
            time.sleep(0.005)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
