"""The owner's local API end to end: a real IndexerService (tiny model, real JPEGs, Qdrant Edge, SQLite) served
by real uvicorn on 127.0.0.1, called through `OwnerClient` / `RemoteVectorStore` and compared with the same calls
made in-process. Ownership is checked with real processes, including one killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from indexer.owner.api import ApiServer, create_app
from indexer.owner.client import (
    OwnerAuthError,
    OwnerClient,
    OwnerRequestError,
    OwnerUnavailableError,
    ReadOnlyStoreError,
    RemoteVectorStore,
)
from indexer.owner.ownership import INFO, HomeOwnedError, Ownership, find_owner, free_port
from indexer.owner.service import IndexerService
from indexer.owner.status import status_report
from indexer.settings import IndexerSettings
from indexer.stores.vectors import UnknownCollectionError, VectorFilter, VectorPoint, VectorStoreError
from tests.imagegen import make_text_with_jpg_ext, write_jpeg

REPO = Path(__file__).resolve().parents[2]
COLORS = ["red", "navy", "green", "gold", "purple", "white"]


class Owner:
    """What the fixture runs: the service, its ownership and the server, plus a client found like any other."""

    def __init__(self, home: Path, photos: Path, service: IndexerService, ownership: Ownership, server: ApiServer):
        self.home, self.photos, self.service, self.ownership, self.server = home, photos, service, ownership, server
        client = OwnerClient.find(home)
        assert client is not None
        self.client = client
        self.store = RemoteVectorStore(client)

    @property
    def collection(self) -> str:
        return self.service.collection.name


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owner]:
    root = tmp_path_factory.mktemp("owner")
    home, photos = root / "home", root / "photos"
    (photos / "trip").mkdir(parents=True)
    for i, color in enumerate(COLORS):
        write_jpeg(photos / ("trip" if i % 2 else "") / f"{color}.jpg", (96, 72), color=color)
    settings = IndexerSettings.from_env(home=home, roots=(photos,), model="test-tiny", workers=1, batch_size=4,
                                        thumbnails=True)
    service = IndexerService(settings)
    service.scan()
    ownership = Ownership.acquire(home, "test owner")
    server = ApiServer(create_app(service, ownership.token), port=free_port())
    ownership.publish("127.0.0.1", server.start())
    try:
        yield Owner(home, photos, service, ownership, server)
    finally:
        server.stop()
        ownership.release()
        service.close()


def test_requests_without_the_right_token_are_refused(owner: Owner) -> None:
    url = owner.client.url
    assert httpx.get(f"{url}/status").status_code == 401
    assert httpx.get(f"{url}/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    refused = httpx.post(f"{url}/vectors/{owner.collection}/count", json={}, headers={"Authorization": "Basic x"})
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    good = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {owner.ownership.token}"})
    assert good.status_code == 200
    with pytest.raises(OwnerAuthError, match="owner.token"):
        OwnerClient(url, "wrong-token", home=owner.home).status()


def test_health_and_openapi_need_no_token(owner: Owner) -> None:
    url = owner.client.url
    health = httpx.get(f"{url}/health").json()
    assert health == {"ok": True, "pid": os.getpid(), "home": str(owner.home)}
    spec = httpx.get(f"{url}/openapi.json").json()
    assert "/vectors/{collection}/query" in spec["paths"] and "/index" in spec["paths"]
    assert "upsert" not in json.dumps(spec["paths"])  # only the indexer writes vectors


def test_find_returns_a_client_for_the_live_owner(owner: Owner) -> None:
    assert owner.client.pid == os.getpid()
    assert owner.client.url == f"http://127.0.0.1:{owner.server.port}"
    assert OwnerClient.find(owner.home.parent / "nobody-home") is None


def test_embed_texts_matches_the_active_model_in_process(owner: Owner) -> None:
    texts = ["a red photo", "navy blue", "a green field at dawn"]
    remote = owner.client.embed_texts(texts)
    local = owner.service.slot.active().encode_texts(texts).float().cpu().numpy()
    assert remote.dtype == np.float32 and remote.shape == local.shape
    np.testing.assert_allclose(remote, local, atol=1e-5)
    assert owner.client.embed_texts([]).shape == (0, local.shape[1])
    with ThreadPoolExecutor(4) as pool:  # requests in parallel take turns on the model and get the same answers
        for vectors in pool.map(lambda _: owner.client.embed_texts(texts), range(8)):
            np.testing.assert_allclose(vectors, local, atol=1e-5)


def test_embed_image_matches_the_stored_vector(owner: Owner) -> None:
    """Decoded and preprocessed as the indexer does it, a photo's vector is the one in the store."""
    photo = owner.photos / "red.jpg"
    stored = _stored_vector(owner, photo)
    np.testing.assert_allclose(owner.client.embed_image(path=photo), stored, atol=1e-4)
    np.testing.assert_allclose(owner.client.embed_image(data=photo.read_bytes()), stored, atol=1e-4)


def test_embed_image_errors_carry_the_reason(owner: Owner, tmp_path: Path) -> None:
    note = make_text_with_jpg_ext(tmp_path / "note.jpg")
    with pytest.raises(OwnerRequestError, match="note.jpg") as bad:
        owner.client.embed_image(path=note)
    assert bad.value.status == 422 and bad.value.code == "undecodable"
    with pytest.raises(FileNotFoundError):  # the client reads the file with its caller's rights
        owner.client.embed_image(path=tmp_path / "gone.jpg")


def test_query_through_the_owner_equals_the_store_in_process(owner: Owner) -> None:
    query = owner.client.embed_texts(["something red"])[0]
    for flt in (None, VectorFilter(folder=str(owner.photos / "trip"))):
        remote = owner.store.query(owner.collection, query, limit=4, filter=flt)
        local = owner.service.store.query(owner.collection, query, limit=4, filter=flt)
        assert [h.id for h in remote] == [h.id for h in local] and remote
        np.testing.assert_allclose([h.score for h in remote], [h.score for h in local], atol=1e-6)
        assert [h.payload for h in remote] == [h.payload for h in local]
    assert len(owner.store.query(owner.collection, query, limit=2, offset=1)) == 2


def test_retrieve_count_and_scroll(owner: Owner) -> None:
    local = list(owner.service.store.scroll(owner.collection, with_vectors=True))
    streamed = list(owner.store.scroll(owner.collection, with_vectors=True, batch=2))  # several NDJSON chunks
    assert [p.id for p in streamed] == [p.id for p in local] and len(local) >= len(COLORS)
    for mine, theirs in zip(streamed, local, strict=True):
        assert np.array_equal(mine.vector, theirs.vector) and mine.payload == theirs.payload
    ids = [local[1].id, local[0].id, "00000000-0000-0000-0000-000000000000"]
    assert [p.id for p in owner.store.retrieve(owner.collection, ids)] == ids[:2]
    assert owner.store.retrieve(owner.collection, ids)[0].vector is None
    trip = VectorFilter(folder=str(owner.photos / "trip"))
    assert owner.store.count(owner.collection, trip) == owner.service.store.count(owner.collection, trip) == 3
    assert owner.store.count(owner.collection) == len(local)
    assert owner.collection in owner.store.collections()


def test_unknown_collection_and_read_only_writes(owner: Owner) -> None:
    vector = np.ones(4, np.float32) / 2
    with pytest.raises(UnknownCollectionError, match="images-nope"):
        owner.store.query("images-nope", vector)
    with pytest.raises(UnknownCollectionError):
        list(owner.store.scroll("images-nope"))
    with pytest.raises(ValueError, match="invalid collection name"):
        owner.store.count("bad name!")
    with pytest.raises(VectorStoreError, match="dim"):
        owner.store.query(owner.collection, vector)  # the tiny model's vectors are not 4-d
    with pytest.raises(ReadOnlyStoreError, match="only the owner writes vectors"):
        owner.store.upsert(owner.collection, [VectorPoint("x", vector)])
    with pytest.raises(ReadOnlyStoreError):
        owner.store.ensure_collection("images-new", 4)


def test_readers_cannot_delete_or_overwrite_vectors_and_check_repairs_drift(owner: Owner) -> None:
    """Issue 12.5: `/vectors/{c}/delete` and payload overwrite were open to every token holder; one delete left a
    photo that no rescan brought back. Now readers have no such route, and `/check` finds and repairs drift."""
    point = next(owner.service.store.scroll(owner.collection))
    for write in (lambda: owner.store.delete(owner.collection, [point.id]),
                  lambda: owner.store.overwrite_payload(owner.collection, point.id, {"paths": []}),
                  lambda: owner.store.set_payload(owner.collection, point.id, {"paths": ["/elsewhere.jpg"]})):
        with pytest.raises(ReadOnlyStoreError, match="only the owner writes vectors"):
            write()
    headers = {"Authorization": f"Bearer {owner.ownership.token}"}
    overwrite = {"ids": [point.id], "payload": {}, "overwrite": True}
    for op, body in (("delete", {"ids": [point.id]}), ("payload", overwrite)):
        answer = httpx.post(f"{owner.client.url}/vectors/{owner.collection}/{op}", json=body, headers=headers)
        assert answer.status_code in (404, 405), answer.text  # no such route for anyone holding the token
    assert owner.store.count(owner.collection) == owner.service.store.count(owner.collection)
    assert owner.client.check()["ok"] is True

    # Drift made behind the owner's back (a bug, a restored backup): one vector lost, one payload stale.
    lost, stale = list(owner.service.store.scroll(owner.collection))[:2]
    owner.service.store.delete(owner.collection, [lost.id])
    owner.service.store.overwrite_payload(owner.collection, stale.id, {**stale.payload, "paths": ["/moved.jpg"]})
    found = owner.client.check()
    assert found["ok"] is False
    assert found["missing_vectors"]["sample"] == [lost.payload["content_hash"]]
    assert found["stale_payloads"]["sample"] == [stale.payload["content_hash"]]
    repaired = owner.client.check(repair=True)
    assert repaired["repaired"]["missing_vectors"] == 1 and repaired["repaired"]["reembedded"] >= 1
    assert owner.client.check()["ok"] is True
    back = owner.service.store.retrieve(owner.collection, [lost.id, stale.id])
    assert {p.id: p.payload["paths"] for p in back} == {lost.id: lost.payload["paths"],
                                                        stale.id: stale.payload["paths"]}


def test_payload_sync_rebuilds_payloads_from_the_catalog(owner: Owner) -> None:
    """What `search.tag --write` does through the owner: tags go to the catalog, the owner rebuilds payloads."""
    from indexer.scan.sync import PayloadSync

    point = next(owner.service.store.scroll(owner.collection))
    digest = point.payload["content_hash"]
    owner.service.catalog.set_tags_many({digest: {"lighthouse": 0.9}}, "zero-shot")
    PayloadSync(owner.service.catalog, owner.store).refresh([digest])  # through the API, as a reader would
    assert "lighthouse" in owner.service.store.retrieve(owner.collection, [point.id])[0].payload["tags"]
    owner.service.catalog.set_tags_many({digest: {}}, "zero-shot")
    PayloadSync(owner.service.catalog, owner.store).refresh([digest])


def test_embed_image_reads_only_indexed_photos_with_one_answer_for_everything_else(owner: Owner, tmp_path) -> None:
    """Issue 12.6: `/embed/image` read any path the owner could, and its errors told missing from text from image."""
    headers = {"Authorization": f"Bearer {owner.ownership.token}"}
    outside = write_jpeg(tmp_path / "outside.jpg", (40, 40), color="red")
    note = make_text_with_jpg_ext(tmp_path / "note.jpg")
    answers = []
    for path in ("/etc/passwd", "/etc/shadow", "/nonexistent/x.jpg", str(outside), str(note),
                 str(owner.photos / "nothere.jpg"), str(owner.photos / ".." / ".." / "etc" / "passwd")):
        answer = httpx.post(f"{owner.client.url}/embed/image", json={"path": path}, headers=headers)
        answers.append((answer.status_code, answer.json()))
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1, answers  # no existence oracle
    assert answers[0][0] == 422 and answers[0][1]["error"] == "unavailable_image"
    indexed = httpx.post(f"{owner.client.url}/embed/image", json={"path": str(owner.photos / "red.jpg")},
                         headers=headers)
    assert indexed.status_code == 200 and len(indexed.json()["vector"]) == indexed.json()["dim"]


@pytest.mark.parametrize("folder", ["/", "/etc", "/proc", "/sys", "/dev", "/usr", "/bin", "/boot", "/usr/share"])
def test_index_refuses_system_folders(owner: Owner, folder: str) -> None:
    roots = list(owner.service.roots)
    with pytest.raises(OwnerRequestError, match="system folder") as refused:
        owner.client.index([folder], add_roots=True)
    assert refused.value.status == 422 and owner.service.roots == tuple(roots)


def test_index_adds_roots_only_when_asked(owner: Owner, tmp_path: Path) -> None:
    once = tmp_path / "once"
    once.mkdir()
    write_jpeg(once / "a.jpg", (50, 40), seed=7)
    job = owner.client.wait(owner.client.index([once]), timeout=20)
    assert job["state"] == "done", job
    assert once not in owner.service.roots  # scanned once, not followed


def test_index_a_new_folder_through_the_owner(owner: Owner, tmp_path: Path) -> None:
    before = owner.store.count(owner.collection)
    new = tmp_path / "new"
    new.mkdir()
    for seed in range(3):
        write_jpeg(new / f"noise{seed}.jpg", (80, 60), seed=seed + 100)
    job = owner.client.wait(owner.client.index([new], add_roots=True), timeout=20)
    assert job["state"] == "done", job
    assert job["report"]["embedded"] == 3 and job["paths"] == [str(new)]
    assert owner.store.count(owner.collection) == before + 3
    assert str(new) in owner.client.status()["roots"]
    with pytest.raises(OwnerRequestError, match="not a folder"):
        owner.client.index([new / "noise0.jpg"])
    with pytest.raises(OwnerRequestError, match="no index job"):
        owner.client.job("nope")


def test_status_through_the_api_equals_status_in_process(owner: Owner) -> None:
    service = owner.service
    local = status_report(service.catalog, service.store, service.settings, roots=service.roots)
    remote = owner.client.status()
    loaded = remote.pop("models_loaded")  # only the owner holds models (and their idle times change by the call)
    assert local.pop("models_loaded") is None and loaded[0]["name"] == "test-tiny"
    assert remote == local
    assert remote["store"]["kind"] == "edge" and remote["collection"]["name"] == owner.collection
    assert remote["files"]["indexed"] >= len(COLORS) and remote["model"] == "test-tiny"


def test_a_second_acquire_names_the_owner(owner: Owner) -> None:
    with pytest.raises(HomeOwnedError, match=f"process {os.getpid()}") as err:
        Ownership.acquire(owner.home, "second")
    assert err.value.owner is not None and err.value.owner.port == owner.server.port


_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from indexer.owner.ownership import Ownership
    own = Ownership.acquire(Path(sys.argv[1]), "doomed")
    own.publish("127.0.0.1", int(sys.argv[2]))
    print("ready", flush=True)
    if sys.argv[3] == "exit":
        os._exit(0)
    time.sleep(60)
""")


@pytest.mark.parametrize("death", ["exit", "sigkill"])
def test_a_dead_owners_lock_is_taken_over(tmp_path: Path, death: str) -> None:
    home, port = tmp_path / "home", free_port()  # nothing listens on `port`
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(home), str(port), death], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        if death == "sigkill":
            found = find_owner(home)
            assert found is not None and found[0].pid == child.pid
            assert OwnerClient.find(home) is None  # alive but not answering: treated as no owner
            with pytest.raises(OwnerUnavailableError, match=f"process {child.pid}.*127.0.0.1:{port}"):
                OwnerClient.for_owner(*found).status()
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        child.stdout.close()
    assert (home / INFO).exists()  # the dead owner's file is left behind ...
    assert find_owner(home) is None  # ... and ignored, because nobody holds the lock
    with Ownership.acquire(home, "successor") as successor:
        assert not (home / INFO).exists()
        successor.publish("127.0.0.1", 1)
        assert find_owner(home)[0].pid == os.getpid()


def test_the_client_imports_light() -> None:
    """Search through the owner must not pay for torch, FastAPI or SQLAlchemy imports."""
    code = ("import sys, indexer.owner.client; "
            "print(sorted(m for m in ('torch', 'fastapi', 'sqlalchemy', 'qdrant_edge', 'PIL', 'httpx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _stored_vector(owner: Owner, photo: Path) -> np.ndarray:
    [point] = [p for p in owner.service.store.scroll(owner.collection, with_vectors=True)
               if str(photo) in p.payload["paths"]]
    return point.vector
