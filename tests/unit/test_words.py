"""Words people gave their photos: file names, folders, embedded XMP/IPTC and sidecars, as tokens (no index)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from indexer.scan import annotations
from indexer.scan.words import field_tokens, file_name_words, folder_names, tokens
from search.xmp import merge_subjects, write_sidecar

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>Anna</rdf:li>'
       b'<rdf:li>Gro\xc3\x9fmutter</rdf:li></rdf:Bag></dc:subject><dc:description><rdf:Alt>'
       b'<rdf:li xml:lang="x-default">Birthday cake at the lake</rdf:li></rdf:Alt></dc:description>'
       b'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Sommer</rdf:li></rdf:Alt></dc:title>'
       b'</rdf:Description></rdf:RDF></x:xmpmeta>')


@pytest.mark.parametrize("name", ["IMG_0412.jpg", "DSC01234.JPG", "DSCF0001.jpg", "PXL_20231204_123456789.MP.jpg",
                                  "P1010001.JPG", "GOPR0042.JPG", "0001.jpg", "IMG-20231204-WA0001.jpeg",
                                  "MVIMG_20190101_101010.jpg", "20231204_101010.heic"])
def test_camera_and_numbered_names_carry_no_words(name):
    assert file_name_words(f"/photos/{name}") == []


def test_file_name_words_split_on_separators_camel_case_and_digits():
    assert file_name_words("/p/AnnaBirthday_2023-cake.final v2.jpg") == ["anna", "birthday", "cake", "final"]
    assert file_name_words("/p/IMG_0412 Eiffel-Tower.jpg") == ["eiffel", "tower"]
    assert file_name_words("/p/Ägypten_Pyramiden.JPG") == ["ägypten", "pyramiden"]


def test_tokens_are_unicode_normalised_and_case_folded():
    assert tokens("A\u0308GYPTEN Straße 東京") == tokens("ägypten STRASSE 東京") == ["ägypten", "strasse", "東京"]
    assert tokens("Egypt 2019", digits=False) == ["egypt"]


def test_folder_names_below_the_deepest_root():
    assert folder_names("/home/a/Pictures/Trips/Egypt 2019/x.jpg", ["/home/a/Pictures"]) == ["Trips", "Egypt 2019"]
    assert folder_names("/home/a/Pictures/x.jpg", ["/home/a/Pictures"]) == []
    assert folder_names("/lib/sub/x.jpg", ["/lib", "/lib/sub"]) == []
    assert folder_names("/elsewhere/Cats/x.jpg", ["/lib"]) == ["Cats"]  # no root holds it: its own folder only


def test_embedded_xmp_is_found_in_a_jpeg(tmp_path):
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, "JPEG", xmp=XMP)
    found = annotations.embedded(out.getvalue())
    assert found == {"keyword": ["Anna", "Großmutter"], "description": ["Birthday cake at the lake"],
                     "title": ["Sommer"]}


def test_embedded_xmp_after_exif_with_a_thumbnail_is_found_and_the_scan_data_is_not_searched():
    """XMP sits in an APP1 segment before the image data, here after an EXIF segment that carries a JPEG thumbnail
    (with its own scan marker); a packet-like text inside the compressed data is not metadata."""
    thumb = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(thumb, "JPEG")
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, "JPEG", exif=exif.tobytes() + thumb.getvalue(), xmp=XMP)
    data = out.getvalue()
    assert data.index(b"\xff\xda", 2) < data.index(b"<x:xmpmeta")  # the thumbnail's scan comes first
    assert annotations.embedded(data)["keyword"] == ["Anna", "Großmutter"]
    plain = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(plain, "JPEG")
    at = plain.getvalue().rindex(b"\xff\xd9")  # the XMP text inside the image data, not in a segment
    assert annotations.embedded(plain.getvalue()[:at] + XMP + plain.getvalue()[at:]) == {}


def test_embedded_iptc_keywords_and_caption():
    def dataset(number: int, value: bytes) -> bytes:
        return b"\x1c\x02" + bytes([number]) + len(value).to_bytes(2, "big") + value

    iim = dataset(25, b"Paris") + dataset(25, b"Eiffel") + dataset(120, b"Night walk")
    irb = b"8BIM\x04\x04\x00\x00" + len(iim).to_bytes(4, "big") + iim + (b"\x00" if len(iim) % 2 else b"")
    app13 = b"Photoshop 3.0\x00" + irb
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(out, "JPEG")
    data = out.getvalue()
    data = data[:2] + b"\xff\xed" + (len(app13) + 2).to_bytes(2, "big") + app13 + data[2:]
    assert annotations.embedded(data) == {"keyword": ["Paris", "Eiffel"], "description": ["Night walk"]}


def test_a_plain_image_and_garbage_have_no_annotations():
    assert annotations.embedded(b"\xff\xd8 not really a jpeg <x:xmpmeta>broken") == {}


def test_sidecar_keywords_are_a_persons_never_loupes(tmp_path):
    photo = tmp_path / "IMG_1.jpg"
    photo.write_bytes(b"")
    write_sidecar(photo, ["dog", "outdoor"])  # what `search.tag --xmp` writes: Loupe's own keywords
    assert annotations.sidecar(str(photo)) == {}
    person = merge_subjects(XMP, [])  # a person's sidecar...
    (tmp_path / "IMG_1.jpg.xmp").write_text(person, encoding="utf-8")
    write_sidecar(photo, ["dog"])  # ...that Loupe merged its tag into
    found = annotations.sidecar(str(photo))
    assert found["keyword"] == ["Anna", "Großmutter"] and found["title"] == ["Sommer"]


def test_lightroom_style_sidecar_and_unreadable_sidecar(tmp_path):
    photo = tmp_path / "DSC_7.NEF"
    (tmp_path / "DSC_7.xmp").write_bytes(XMP)
    assert annotations.sidecar(str(photo))["keyword"] == ["Anna", "Großmutter"]
    (tmp_path / "DSC_7.xmp").write_text("<not xml", encoding="utf-8")
    assert annotations.sidecar(str(photo)) == {}


def test_plain_english_plurals_fold_to_the_singular():
    assert tokens("Birthdays parties dogs glass bus Paris cats 2019s") == [
        "birthday", "party", "dog", "glass", "bus", "paris", "cat", "2019"]


def test_camera_folders_carry_no_words_but_a_keyword_canon_does():
    assert field_tokens("folder", "100CANON") == ["100"] and field_tokens("folder", "DCIM") == []
    assert field_tokens("keyword", "Canon") == ["canon"]


def test_which_photos_a_sidecar_describes(tmp_path):
    for name in ("IMG_1.jpg", "IMG_1.NEF", "IMG_2.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert annotations.sidecar_photos(tmp_path / "IMG_2.jpg.xmp") == [str(tmp_path / "IMG_2.jpg")]
    assert annotations.sidecar_photos(tmp_path / "IMG_1.xmp") == [str(tmp_path / "IMG_1.NEF"),
                                                                  str(tmp_path / "IMG_1.jpg")]
