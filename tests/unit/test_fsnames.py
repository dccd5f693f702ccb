"""The two forms of a path (`indexer.stores.fsnames`): lossless both ways, identity on valid UTF-8."""

from __future__ import annotations

import os
import random

from indexer.stores.fsnames import as_text, display, from_text, to_text


def test_valid_utf8_names_are_unchanged():
    for name in ("/photos/a.jpg", "/фото/été 2023/😀.heic", "/a\\b/c%d_e.png"):
        assert to_text(name) == name and from_text(name) == name


def test_any_byte_name_round_trips_and_is_valid_unicode():
    rng = random.Random(0)
    specials = [b"\xe9", b"\xff", b"\x80", "\U0010ff7f".encode(), "\U0010ff80".encode(), "\U0010ffff".encode(), b"/"]
    for _ in range(2000):
        parts = (rng.choice(specials + [bytes([rng.randrange(1, 256)])]) for _ in range(rng.randint(1, 12)))
        raw = b"/" + b"".join(parts)
        raw = raw.replace(b"\x00", b"")
        path = os.fsdecode(raw)
        text = to_text(path)
        text.encode("utf-8")  # never raises: storable in SQLite, JSON and Qdrant payloads
        assert from_text(text) == path and os.fsencode(from_text(text)) == raw


def test_prefixes_are_kept_so_folder_queries_work():
    folder, name = os.fsdecode(b"/ph\xf6tos"), os.fsdecode(b"x\xe9.jpg")
    assert to_text(folder + "/" + name).startswith(to_text(folder) + "/")


def test_display_and_as_text():
    path = os.fsdecode(b"/p/caf\xe9.jpg")
    assert display(path) == display(to_text(path)) == "/p/caf\\xe9.jpg"
    assert display("/p/two\nlines\t.jpg") == "/p/two\\x0alines\\x09.jpg"  # one table row, whatever the name
    assert display("/p/café ü.jpg") == "/p/café ü.jpg"  # printable text is left as it is
    assert as_text(path) == to_text(path) and as_text(to_text(path)) == to_text(path)
