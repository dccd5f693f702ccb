"""The words people gave their photos, kept in the payload by the indexer: real files, SQLite, Qdrant Edge."""

from __future__ import annotations

import shutil

import pytest

from indexer.scan.hashing import hash_file
from indexer.scan.sync import WORDS_META
from indexer.stores.vectors import VectorFilter, point_id
from search.xmp import write_sidecar
from tests.imagegen import write_jpeg
from tests.integration.test_indexer_scan import make_service
from tests.unit.test_words import XMP


@pytest.fixture()
def library(tmp_path):
    root = tmp_path / "photos"
    write_jpeg(root / "Trips" / "Egypt 2019" / "IMG_0412.jpg", size=(96, 64), color="orange")
    write_jpeg(root / "Trips" / "Egypt 2019" / "pyramids_at_dawn.jpg", size=(96, 64), color="yellow")
    photo = write_jpeg(root / "DSC01234.jpg", size=(96, 64), color="red")
    photo.write_bytes(_with_xmp(photo.read_bytes()))
    write_jpeg(root / "PXL_20231204_101010.jpg", size=(96, 64), color="blue")
    (root / "PXL_20231204_101010.jpg.xmp").write_bytes(XMP.replace(b"Anna", b"Lisbon"))
    write_jpeg(root / "P1010001.JPG", size=(96, 64), color="green")
    write_sidecar(root / "P1010001.JPG", ["forest"])  # Loupe's own zero-shot keyword: not a person's word
    return root


def _with_xmp(jpeg: bytes) -> bytes:
    packet = b"http://ns.adobe.com/xap/1.0/\x00" + XMP
    return jpeg[:2] + b"\xff\xe1" + (len(packet) + 2).to_bytes(2, "big") + packet + jpeg[2:]


@pytest.fixture()
def service(tmp_path, library, catalog_url):
    svc = make_service(tmp_path / "home", library, db_url=catalog_url)
    svc.scan()
    yield svc
    svc.close()


def payload_of(svc, path) -> dict:
    return svc.store.retrieve(svc.collection.name, [point_id(hash_file(path))])[0].payload


def test_folder_and_file_name_words(service, library):
    named = payload_of(service, library / "Trips" / "Egypt 2019" / "pyramids_at_dawn.jpg")
    assert named["texts"]["folder"] == ["Trips", "Egypt 2019"]
    assert named["texts"]["name"] == ["pyramid", "at", "dawn"]
    assert {"trip", "egypt", "2019", "pyramid", "dawn"} <= set(named["words"])
    camera = payload_of(service, library / "Trips" / "Egypt 2019" / "IMG_0412.jpg")
    assert "name" not in camera["texts"] and set(camera["words"]) == {"trip", "egypt", "2019"}
    top = payload_of(service, library / "P1010001.JPG")  # below the root, camera-named, Loupe's sidecar only
    assert top["words"] == [] and top["texts"] == {}


def test_embedded_xmp_keywords_and_caption(service, library):
    payload = payload_of(service, library / "DSC01234.jpg")
    assert payload["texts"]["keyword"] == ["Anna", "Großmutter"]
    assert payload["texts"]["description"] == ["Birthday cake at the lake"]
    assert {"anna", "grossmutter", "birthday", "lake", "sommer"} <= set(payload["words"])
    found = service.store.count(service.collection.name, VectorFilter(words_any=("anna",)))
    assert found == 1


def test_sidecar_keywords_and_manual_tags(service, library):
    photo = library / "PXL_20231204_101010.jpg"
    assert payload_of(service, photo)["texts"]["keyword"] == ["Lisbon", "Großmutter"]
    digest = hash_file(photo)
    service.catalog.set_tags(digest, {"Grandpa Joe": 1.0}, source="manual")
    service.catalog.set_tags(digest, {"sky": 0.9})  # zero-shot: a guess, never a word
    service.sync.refresh([digest])
    payload = payload_of(service, photo)
    assert payload["texts"]["tag"] == ["Grandpa Joe"] and "sky" not in payload["words"]
    assert {"grandpa", "joe", "lisbon"} <= set(payload["words"])


def test_rename_and_move_update_the_words_without_a_model_call(service, library):
    calls = service.pipeline.model_calls
    (library / "Birthdays" / "Anna").mkdir(parents=True)
    shutil.move(library / "Trips" / "Egypt 2019" / "pyramids_at_dawn.jpg", library / "Birthdays" / "Anna" / "x.jpg")
    shutil.move(library / "PXL_20231204_101010.jpg", library / "Birthdays" / "cake_party.jpg")  # sidecar stays
    report = service.scan()
    assert report.embedded == 0 and report.moved == 2 and service.pipeline.model_calls == calls
    moved = payload_of(service, library / "Birthdays" / "Anna" / "x.jpg")
    assert moved["texts"] == {"folder": ["Birthdays", "Anna"]}
    renamed = payload_of(service, library / "Birthdays" / "cake_party.jpg")
    assert renamed["texts"] == {"folder": ["Birthdays"], "name": ["cake", "party"]}  # the old sidecar stayed behind
    assert service.store.count(service.collection.name, VectorFilter(words_any=("pyramid",))) == 0


def test_an_index_made_before_words_gets_them_once_without_a_model_call(tmp_path, service, library, catalog_url):
    name = service.collection.name
    for point in service.store.scroll(name):
        old = {k: v for k, v in point.payload.items() if k not in ("texts", "words")}
        service.store.overwrite_payload(name, point.id, old)
    service.catalog.delete_meta(WORDS_META)
    service.close()
    again = make_service(tmp_path / "home", library, db_url=catalog_url)
    try:
        assert not again.slot.loaded
        payload = payload_of(again, library / "Trips" / "Egypt 2019" / "pyramids_at_dawn.jpg")
        assert {"egypt", "pyramid", "dawn"} <= set(payload["words"])
        assert again.sync.backfill_words() == 0  # once
    finally:
        again.close()


def test_a_sidecar_written_or_removed_later_updates_the_words(service, library):
    from watchdog.events import FileCreatedEvent

    from indexer.scan.walk import FileFilter
    from indexer.scan.watch import _Handler

    photo = library / "Trips" / "Egypt 2019" / "IMG_0412.jpg"
    sidecar = photo.with_name(photo.name + ".xmp")
    sidecar.write_bytes(XMP.replace(b"Anna", b"Karnak"))
    touched = []
    queue = type("Queue", (), {"touch": lambda self, path, closed: touched.append(path)})()
    _Handler(queue, FileFilter(frozenset({"jpg"})), (library,)).on_any_event(FileCreatedEvent(str(sidecar)))
    assert touched == [sidecar]  # the watcher hands sidecars on with the photos
    calls = service.pipeline.model_calls
    service.handle([sidecar], [])
    assert "karnak" in payload_of(service, photo)["words"] and service.pipeline.model_calls == calls
    sidecar.unlink()
    service.handle([sidecar], [])
    assert "karnak" not in payload_of(service, photo)["words"]
