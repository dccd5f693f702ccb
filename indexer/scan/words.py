"""Words people gave their photos, as search tokens: folder names, file names, keywords, captions, manual tags.

Pure text → tokens, no I/O. Tokens are NFKC-normalised and case-folded, so "Ägypten", "ÄGYPTEN" and the decomposed
"A\u0308gypten" are one token, and any script's letters are words (multilingual text is matched as words). English
plurals fold to their singular ("Birthdays" → birthday, "parties" → party), so a folder named "Dogs" answers "dog";
anything cleverer (stemming, lemmas) would be language-specific and is left out.

File names are split on `_ - .` and spaces, on camelCase humps and between letters and digit runs
("AnnaBirthday_2023-cake" → anna, birthday, cake); digit runs in a file name are sequence numbers or dates, never
words, and the prefixes cameras and phones write (IMG_0412, DSC01234, DSCF0001, PXL_20231204_…, P1010001, GOPR0042,
MVIMG_…, IMG-20231204-WA0001) carry none either, so a library of camera-named files has no file-name words at all.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable

# Letters (any script) or digits, one run each: `\w` without the underscore. Marks stay with their letters.
_RUN = re.compile(r"[^\W_]+", re.UNICODE)
_HUMP = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=\D)(?=\d)|(?<=\d)(?=\D)")
# What cameras, phones and messengers put in file names besides numbers (lower-cased tokens).
CAMERA_TOKENS = frozenset({
    "img", "dsc", "dscf", "dscn", "dcim", "pxl", "gopr", "gp", "gx", "dji", "mvimg", "vid", "pano", "cimg", "imgp",
    "sam", "mp", "wa", "sdc", "pict", "hpim", "mvc", "kif", "jpeg", "jpg", "heic", "raw", "burst", "cover", "copy",
    # the folders cameras make: DCIM/100CANON, 102NIKON, 100MSDCF (Sony), 100APPLE, 100ANDRO, 100OLYMP, 100_PANA …
    "canon", "nikon", "msdcf", "apple", "andro", "olymp", "pana", "fuji", "ricoh", "gopro", "media",
})
MIN_LENGTH = 2  # single letters ('a', the 'P' of P1010001) carry no meaning on their own


def normalize(text: str) -> str:
    """NFKC + case folding: the one form every token is stored and queried in."""
    return unicodedata.normalize("NFKC", text).casefold()


def tokens(text: str, *, digits: bool = True) -> list[str]:
    """Tokens of free text (keywords, captions, folder names, queries), in order, repeats kept.

    camelCase humps and letter/digit boundaries split too; `digits=False` drops tokens that are digits only."""
    out = []
    for run in _RUN.findall(unicodedata.normalize("NFKC", text)):
        for part in _HUMP.split(run):
            token = part.casefold()
            if len(token) < MIN_LENGTH or (not digits and token.isdigit()):
                continue
            out.append(singular(token))
    return out


def singular(token: str) -> str:
    """English plural → singular, for plain cases only: 'dogs' → 'dog', 'parties' → 'party'; 'glass', 'bus',
    'paris' and short words stay as they are."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")) and token.isalpha():
        return token[:-1]
    return token


def field_tokens(field: str, text: str) -> list[str]:
    """Tokens of one phrase of a payload text field: camera folder names (DCIM/100CANON) carry no words."""
    found = tokens(text)
    return [t for t in found if t not in CAMERA_TOKENS] if field == "folder" else found


def file_name_words(path: str) -> list[str]:
    """Words of a file name without its extension; camera patterns and numbers give none."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return [t for t in tokens(stem, digits=False) if t not in CAMERA_TOKENS]


def folder_names(path: str, roots: Iterable[str] = ()) -> list[str]:
    """Names of the folders between the deepest root holding `path` and the file, top first. Without a root that
    holds it, only the file's own folder: the folders above a library (/home/anna/Pictures) describe no photo."""
    folder = os.path.dirname(os.path.normpath(path))
    holding = [r for r in (os.path.normpath(r) for r in roots) if folder == r or folder.startswith(r.rstrip(os.sep)
                                                                                                     + os.sep)]
    if not holding:
        name = os.path.basename(folder)
        return [name] if name else []
    below = os.path.relpath(folder, max(holding, key=len))
    return [] if below == "." else below.split(os.sep)


def unique(items: Iterable[str]) -> list[str]:
    """Items once each, first occurrence order."""
    return list(dict.fromkeys(items))
