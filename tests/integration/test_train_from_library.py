"""`python -m models.train --from-library`: caption pairs from what people wrote in their indexed photos (embedded
XMP, sidecars, manual tags; never Loupe's zero-shot tags), split by image, then an ordinary training run."""

from __future__ import annotations

import csv
import json

import pytest

from indexer.owner.service import IndexerService
from indexer.owner.vector_source import open_source
from indexer.scan.hashing import hash_file
from indexer.settings import IndexerSettings
from models.train.__main__ import main as train_main
from models.train.library import split_by_image
from search.xmp import write_sidecar
from tests.imagegen import photo_like_image, write_jpeg
from tests.unit.test_words import XMP

N = 12


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root, home = tmp_path_factory.mktemp("lib") / "photos", tmp_path_factory.mktemp("home")
    paths = [write_jpeg(root / ("Family" if i < 8 else "Other") / f"IMG_{i:04d}.jpg",
                        image=photo_like_image((96, 72), seed=i)) for i in range(N)]
    for i in range(0, 6):  # keywords and a caption inside the file
        xmp = XMP.replace(b"Anna", f"person{i}".encode()).replace(b"Birthday cake", f"scene {i}".encode())
        paths[i].write_bytes(_inject(paths[i].read_bytes(), xmp))
    (root / "Family" / "IMG_0006.jpg.xmp").write_bytes(XMP.replace(b"Anna", b"Lisbon"))  # a person's sidecar
    write_sidecar(paths[7], ["forest"])  # Loupe's own sidecar: no caption
    write_sidecar(paths[9], ["dog"])
    service = IndexerService(IndexerSettings.from_env(home=home, roots=(root,), model="test-tiny", workers=1))
    service.scan()
    service.catalog.set_tags(hash_file(paths[7]), {"beach": 0.9})  # zero-shot: never a caption
    service.catalog.set_tags(hash_file(paths[8]), {"Uncle Tom": 1.0}, source="manual")
    tower = service.collection.image_tower_id
    service.close()
    return root, home, paths, tower


def _inject(jpeg: bytes, xmp: bytes) -> bytes:
    packet = b"http://ns.adobe.com/xap/1.0/\x00" + xmp
    return jpeg[:2] + b"\xff\xe1" + (len(packet) + 2).to_bytes(2, "big") + packet + jpeg[2:]


def test_captions_are_what_people_wrote(library):
    root, home, paths, tower = library
    pairs = open_source(home, tower).captions()
    by_image: dict[str, list[str]] = {}
    for image, caption in pairs:
        by_image.setdefault(image, []).append(caption)
    assert set(by_image) == {str(p) for p in paths[:7]} | {str(paths[8])}
    assert by_image[str(paths[0])] == ["scene 0 at the lake", "Sommer", "person0, Großmutter"]
    assert by_image[str(paths[6])] == ["Birthday cake at the lake", "Sommer", "Lisbon, Großmutter"]
    assert by_image[str(paths[8])] == ["Uncle Tom"]
    only_family = open_source(home, tower).captions(str(root / "Family"))
    assert {image for image, _ in only_family} == {str(p) for p in paths[:7]}


def test_split_by_image_is_seeded_and_keeps_an_images_captions_together():
    pairs = [(f"/p/{i}.jpg", f"c{i}-{j}") for i in range(10) for j in range(2)]
    train, held = split_by_image(pairs, 0.2, seed=3)
    assert (train, held) == split_by_image(pairs, 0.2, seed=3)
    assert len({i for i, _ in held}) == 2 and not {i for i, _ in held} & {i for i, _ in train}
    assert len(train) + len(held) == 20
    assert split_by_image(pairs[:2], 0.1, seed=0)[1] == []  # one image: nothing to hold out


def test_from_library_trains_with_a_held_out_split(library, capsys):
    root, home, paths, _ = library
    code = train_main(["--from-library", str(root), "--model", "test-tiny", "--home", str(home), "--epochs", "1",
                       "--batch-size", "4", "--name", "from-lib", "--val-fraction", "0.25", "--json", "-q"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    result = json.loads(out.out)
    folder = home / "library_captions" / "from-lib"
    rows = {name: list(csv.reader((folder / name).open(encoding="utf-8"), delimiter="\t"))[1:]
            for name in ("train.tsv", "heldout.tsv")}
    train_images, held_images = ({r[0] for r in rows[n]} for n in ("train.tsv", "heldout.tsv"))
    assert held_images and not train_images & held_images and len(train_images | held_images) == 8
    assert result["val_size"]["images"] == len(held_images) and result["train_size"]["images"] == len(train_images)
    assert not any("beach" in caption or "forest" in caption for rows_ in rows.values() for _, caption in rows_)


def test_from_library_without_captions_or_with_a_file_is_an_error(library, tmp_path, capsys):
    root, home, _, _ = library
    assert train_main(["--from-library", str(root / "Other" / "nothing"), "--model", "test-tiny", "--home",
                       str(home), "-q"]) == 2
    assert "no captions people wrote" in capsys.readouterr().err
    assert train_main(["x.csv", "--from-library", "--model", "test-tiny", "--home", str(home), "-q"]) == 2
