"""File names that are not valid UTF-8, kept losslessly: the filesystem's form inside, a Unicode text form outside.

Linux file names are bytes. Python hands them out as `str` with each undecodable byte as a lone surrogate
(U+DC80-U+DCFF, PEP 383 "surrogateescape"), and that form opens the file again — but SQLite, JSON encoders and
Qdrant's payloads refuse lone surrogates ("surrogates not allowed"): one such name on an old drive or a Samba share
used to end the whole scan. So there are two forms of a path:

* the **fs form** (surrogateescape `str`): what `os`, `open` and the indexer's pipeline use;
* the **text form**: valid Unicode, what the catalog column, vector payloads and API answers hold. Each undecodable
  byte 0xNN becomes the private-use character U+10FF00+0xNN, and an escape character in a real name is doubled, so
  the mapping is a bijection and it is the identity for every valid UTF-8 name (no existing catalog changes).
  It maps character by character, so folder prefixes and '/' splits work the same on both forms.

`display` is the human form (`caf\\xe9.jpg`), for terminals; it is not meant to be parsed back.
"""

from __future__ import annotations

import os

_ESC = "\U0010ff7f"  # private use, plane 16; never produced by the byte mapping (bytes are >= 0x80)
_BASE = 0x10FF00
_LO, _HI = 0xDC80, 0xDCFF  # surrogateescape's range
_ESCAPED = frozenset(chr(c) for c in range(_BASE + 0x7F, _BASE + 0x100))  # text-form characters a real name escapes


def to_text(path: str) -> str:
    """fs form → text form (identity for valid UTF-8 names)."""
    if path.isascii():
        return path
    out = []
    for ch in path:
        code = ord(ch)
        if _LO <= code <= _HI:
            out.append(chr(_BASE + (code - 0xDC00)))  # byte 0x80-0xFF → U+10FF80-U+10FFFF
        elif ch in _ESCAPED:
            out.append(_ESC + ch)
        else:
            out.append(ch)
    return "".join(out)


def as_text(path: str) -> str:
    """Text form of a path that may be in either form (e.g. a folder picked from a payload, or typed): one with
    surrogates is converted, anything else is taken as text form already."""
    return to_text(path) if any(_LO <= ord(ch) <= _HI for ch in path) else path


def from_text(text: str) -> str:
    """text form → fs form (inverse of `to_text`)."""
    if text.isascii():
        return text
    out, chars = [], iter(text)
    for ch in chars:
        if ch == _ESC:
            out.append(next(chars, ""))
        elif _BASE + 0x80 <= ord(ch) <= _BASE + 0xFF:
            out.append(chr(0xDC00 + (ord(ch) - _BASE)))
        else:
            out.append(ch)
    return "".join(out)


def display(path: str) -> str:
    """Either form → a printable string on one line: undecodable bytes as \\xNN (like `ls -b`), and control
    characters escaped the same way (a name holding a newline must not break a table's rows)."""
    text = os.fsencode(from_text(path)).decode("utf-8", "backslashreplace")
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c for c in text)
