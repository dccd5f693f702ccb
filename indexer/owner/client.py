"""Talk to the process that owns a data home: `OwnerClient` for its API, `RemoteVectorStore` for its vectors.

Search, the UI and a second indexer find the owner with `OwnerClient.find(home)` and go through it instead of
opening the stores, which admit one process at a time. This module stays import-light (stdlib and numpy; no torch,
no HTTP library) because a CLI query through the owner should cost milliseconds, not a model or framework import.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.owner.ownership import TOKEN, OwnerInfo, find_owner
from indexer.stores.vectors import (
    SEMANTIC,
    Hit,
    UnknownCollectionError,
    VectorFilter,
    VectorPoint,
    VectorStoreError,
    as_id_list,
)

HEALTH_TIMEOUT = 1.0  # an owner that cannot say "ok" within a second is treated as absent
REQUEST_TIMEOUT = 120.0  # generous: the first embedding request may load the model


class OwnerError(RuntimeError):
    """Base class of errors talking to the owner."""


class OwnerUnavailableError(OwnerError):
    """The owner does not answer (stopped, hung, or the port is wrong)."""


class OwnerAuthError(OwnerError):
    """The owner refused our token."""


class OwnerRequestError(OwnerError):
    """The owner answered with an error; `status` is the HTTP status and `code` the API's error code."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"the Loupe owner refused the request ({status} {code}): {detail}")
        self.status, self.code, self.detail = status, code, detail


class ReadOnlyStoreError(VectorStoreError):
    """A write only the owner may do (it keeps the catalog and the vectors in step)."""


class OwnerClient:
    """The owner's API at `url` with its bearer `token`. Thread-safe: every call opens its own connection."""

    def __init__(self, url: str, token: str, pid: int | None = None, home: Path | None = None,
                 timeout: float = REQUEST_TIMEOUT):
        self.url, self.pid, self.home, self.timeout = url.rstrip("/"), pid, home, timeout
        self._auth = f"Bearer {token}"
        # No proxies: urllib would send 127.0.0.1 requests through $http_proxy when no_proxy does not list it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def find(cls, home: Path) -> OwnerClient | None:
        """The live owner of `home`, or None when there is none or it does not answer /health within a second."""
        found = find_owner(Path(home))
        if found is None:
            return None
        info, token = found
        client = cls.for_owner(info, token, Path(home))
        try:
            health = client.health()
        except (OwnerError, ValueError):  # ValueError: something else answers on that port, not in JSON
            return None
        return client if health.get("pid") == info.pid else None  # another process reused the port

    @classmethod
    def for_owner(cls, info: OwnerInfo, token: str, home: Path | None = None) -> OwnerClient:
        return cls(info.url, token, info.pid, home)

    # -- API ------------------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health", timeout=HEALTH_TIMEOUT, auth=False)

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 unit vectors from the owner's active text tower."""
        answer = self._call("POST", "/embed/texts", {"texts": list(texts)})
        return np.asarray(answer["vectors"], dtype=np.float32).reshape(len(texts), answer["dim"])

    def embed_image(self, path: str | Path | None = None, data: bytes | None = None) -> np.ndarray:
        """(D,) float32 unit vector of an image file or of its bytes. A file is read here, with the caller's own
        rights, and sent: the owner reads paths only for photos of its index (`indexer.owner.pathguard`)."""
        return self.embed_image_both(path, data)[0]

    def embed_image_both(self, path: str | Path | None = None,
                         data: bytes | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(text-aligned (D,), visual (V,) or None) unit vectors of an image, from one forward pass on the owner;
        read and sent as `embed_image` does."""
        if (path is None) == (data is None):
            raise ValueError("give exactly one of path and data")
        name = "uploaded image"
        if path is not None:
            path = Path(path).expanduser().resolve()
            data, name = path.read_bytes(), str(path)
        body = {"data_b64": base64.b64encode(data).decode("ascii"), "name": name}
        answer = self._call("POST", "/embed/image", body)
        visual = answer.get("visual")
        return (np.asarray(answer["vector"], dtype=np.float32),
                None if visual is None else np.asarray(visual, dtype=np.float32))

    def index(self, paths: Sequence[str | Path], *, add_roots: bool = False) -> str:
        """Ask the owner to index these folders (and, with `add_roots`, to keep following them); the job id."""
        body = {"paths": [str(Path(p).expanduser().resolve()) for p in paths], "add_roots": add_roots}
        return self._call("POST", "/index", body)["job_id"]

    def check(self, repair: bool = False) -> dict[str, Any]:
        """The owner's self-check (`indexer.scan.check.Findings.summary()`), repaired by the owner with `repair`."""
        return self._call("POST", "/check", {"repair": repair})

    def sync_payloads(self, hashes: Sequence[str]) -> None:
        """Ask the owner to rebuild these contents' payloads from the catalog (after a tag change)."""
        self._call("POST", "/payloads/sync", {"hashes": sorted(set(hashes))})

    def job(self, job_id: str) -> dict[str, Any]:
        """{id, paths, state: queued|running|done|failed, report, error, submitted, finished}."""
        return self._call("GET", f"/jobs/{_quote(job_id)}")

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.1) -> dict[str, Any]:
        """Poll until the job is done or failed (returned, not raised); TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in ("done", "failed"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"index job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll)

    # -- transport ------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, *, timeout: float | None = None,
              auth: bool = True) -> Any:
        with self._open(method, path, body, timeout=timeout, auth=auth) as response:
            return json.loads(response.read())

    def _open(self, method: str, path: str, body: Any = None, *, timeout: float | None = None,
              auth: bool = True) -> http.client.HTTPResponse:
        """Send a request; the open response, or the error it maps to."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", self._auth)
        try:
            return self._opener.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as err:
            error = self._http_error(err)
            err.close()
            raise error from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise self._unavailable(err) from err

    def _http_error(self, err: urllib.error.HTTPError) -> Exception:
        try:
            answer = json.loads(err.read())
        except (ValueError, OSError):
            answer = {}
        detail = answer.get("detail", err.reason) if isinstance(answer, dict) else err.reason
        code = answer.get("error", "http_error") if isinstance(answer, dict) else "http_error"
        if err.code == 401:
            where = self.home / TOKEN if self.home else "the data home's owner.token"
            return OwnerAuthError(f"the Loupe owner at {self.url} refused our token; read it again from {where} "
                                  "(the owner writes a new one each time it starts)")
        if code == "unknown_collection":
            return UnknownCollectionError(str(detail))
        return OwnerRequestError(err.code, code, str(detail))

    def _unavailable(self, err: Exception) -> OwnerUnavailableError:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError):
            reason = "timed out"
        who = f"process {self.pid}" if self.pid else "the owner"
        return OwnerUnavailableError(f"the Loupe owner ({who}, {self.url}) does not answer: {reason}. If it was "
                                     "stopped, run again: with no owner, Loupe opens the data home itself.")


class RemoteVectorStore:
    """The owner's vector store through its API, with the `VectorStore` protocol's types and errors.

    Reads go through; every write (`upsert`, `delete`, payload edits, collections) raises `ReadOnlyStoreError`,
    because only the owner's indexer writes vectors (it keeps the catalog in step). A payload that must follow a
    catalog change is rebuilt by the owner: `sync_payloads`, which `PayloadSync.refresh` uses on its own.
    """

    def __init__(self, client: OwnerClient):
        self.client = client

    def ensure_collection(self, name: str, dim: int, visual_dim: int | None = None) -> None:
        raise self._read_only("create collections")

    def add_visual(self, name: str, visual_dim: int) -> None:
        raise self._read_only("add a visual vector")

    def set_visual(self, name: str, vectors: dict[str, np.ndarray]) -> None:
        raise self._read_only("set visual vectors")

    def vector_dims(self, name: str) -> dict[str, int]:
        with _store_errors():
            return {k: int(v) for k, v in self.client._call("GET", f"/vectors/{_quote(name)}/dims")["dims"].items()}

    def drop_collection(self, name: str) -> None:
        raise self._read_only("drop collections")

    def upsert(self, name: str, points: Sequence[VectorPoint]) -> None:
        raise self._read_only("upsert vectors")

    def collections(self) -> list[str]:
        return self.client._call("GET", "/vectors/collections")["collections"]

    def set_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        raise self._read_only("edit payloads")

    def overwrite_payload(self, name: str, ids: str | Sequence[str], payload: dict[str, Any]) -> None:
        raise self._read_only("overwrite payloads")

    def delete(self, name: str, ids: Sequence[str]) -> None:
        raise self._read_only("delete vectors")

    def sync_payloads(self, hashes: Sequence[str]) -> None:
        self.client.sync_payloads(hashes)

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> list[VectorPoint]:
        answer = self._post(name, "retrieve", {"ids": as_id_list(ids), "with_vectors": with_vectors})
        return [_point(p) for p in answer["points"]]

    def query(self, name: str, vector: np.ndarray, limit: int = 10, offset: int = 0,
              filter: VectorFilter | None = None, score_threshold: float | None = None,
              using: str = SEMANTIC) -> list[Hit]:
        body = {"vector": np.asarray(vector, dtype=np.float32).tolist(), "limit": limit, "offset": offset,
                "filter": _filter_json(filter), "score_threshold": score_threshold, "using": using}
        return [Hit(h["id"], float(h["score"]), h["payload"]) for h in self._post(name, "query", body)["hits"]]

    def count(self, name: str, filter: VectorFilter | None = None) -> int:
        return int(self._post(name, "count", {"filter": _filter_json(filter)})["count"])

    def scroll(self, name: str, filter: VectorFilter | None = None, with_vectors: bool = False,
               batch: int = 256) -> Iterator[VectorPoint]:
        """Every matching point, streamed as NDJSON and parsed line by line: a whole library in bounded memory."""
        body = {"filter": _filter_json(filter), "with_vectors": with_vectors, "batch": batch}
        with _store_errors(), self.client._open("POST", f"/vectors/{_quote(name)}/scroll", body) as response:
            for line in response:
                if line.strip():
                    yield _point(json.loads(line))

    def close(self) -> None:
        """Nothing to close: the owner keeps the store open."""

    def _post(self, name: str, op: str, body: dict[str, Any]) -> Any:
        with _store_errors():
            return self.client._call("POST", f"/vectors/{_quote(name)}/{op}", body)

    def _read_only(self, what: str) -> ReadOnlyStoreError:
        who = f"process {self.client.pid}" if self.client.pid else "the owner"
        return ReadOnlyStoreError(f"only the owner writes vectors: cannot {what} through {who} at {self.client.url}. "
                                  "Ask it to index folders instead (OwnerClient.index).")


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """The owner's answers as a local store raises them (KeyError for unknown points, ValueError for bad input,
    VectorStoreError for the store's own failures), so code written for `VectorStore` handles a remote one alike."""
    try:
        yield
    except OwnerRequestError as err:
        if err.code == "unknown_point":
            raise KeyError(err.detail) from err
        if err.status == 422:
            raise ValueError(err.detail) from err
        if err.code in ("store_error", "store_unavailable"):
            raise VectorStoreError(err.detail) from err
        raise


def _filter_json(flt: VectorFilter | None) -> dict[str, Any] | None:
    return None if flt is None else dataclasses.asdict(flt)


def _point(raw: dict[str, Any]) -> VectorPoint:
    vector, visual = raw.get("vector"), raw.get("visual")
    return VectorPoint(raw["id"], None if vector is None else np.asarray(vector, dtype=np.float32), raw["payload"],
                       None if visual is None else np.asarray(visual, dtype=np.float32))


def _quote(part: str) -> str:
    """One URL path segment: an odd collection name reaches the owner (which explains what is wrong with it)."""
    return urllib.parse.quote(str(part), safe="")
