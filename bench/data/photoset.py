"""The shared real-photo evaluation set: captioned photos from offline packages, written as a user's camera roll.

Why: every decision Loupe makes (relevance flags, "no good match", near-duplicate folding, tags, the offline
model's head, in-house tuning) has to be fitted on one half of real photos and reported on another half that nothing
was fitted on. Photos named after what they show (`hammer2.webp`) leak the answer into any file-name feature and
look nothing like a library, so this module re-encodes each photo as a plain JPEG under a camera-style name
(`DCIM/100CANON/IMG_0412.JPG`, `PXL_20230611_142233123.jpg`) in folders that carry no caption word.

    python -m bench.data.photoset --out DIR          # default DIR: $LOUPE_PHOTOSET_DIR or ~/.cache/loupe/photoset

The list lives next to this module, `photoset.tsv`: `key<TAB>caption<TAB>category<TAB>sha256[:16]`, one photo a
row. Keys name where a photo comes from (never a local path), as in `bench.data.realphotos`:
`gcompris:<path inside the .rcc>` (Debian `gcompris-qt-data`, Wikimedia photos), `skimage:<name>`,
`sklearn:<file>`, and `<debian package>:<path inside the .deb>` for wallpaper packages (`mate-backgrounds:…`).
The 207 hand-written captions of `realphotos` keep their keys and captions; the other captions were derived from
the file and folder names (`explore_monuments/india/qutubMinar.webp` → "a tall brick minaret") and reviewed by
looking at every photo; photos whose name says nothing or that are drawings, clip art, icons, paintings or tiles
were dropped (GCompris' `lang` word images, `paintings`, `details` tiles, sprites). `category` is a coarse
WordNet-ish class (animal, tool, building, …) for broad queries ("an animal") and tag labels. Debian's
`tuxpaint-stamps-*` packages are never used: they are reserved for independent evaluation.

What `materialize(DIR, seed=…)` writes (all paths inside the TSVs are relative to DIR):

- the photos under `library/` (the folder to index as a library), RGB JPEG re-encodes of the decoded image (no
  EXIF, no original bytes, at most 2048 px a side), under camera-style names;
- `captions.tsv` (`path<TAB>caption<TAB>category`, with a header), every photo;
- `dev.tsv` / `heldout.tsv` (`path<TAB>caption`, no header: what `models.evaluate`, `models.train` and
  bench/offline_eval.py read), the fixed-seed split of `split()`; photos sharing a caption stay on one side;
- `inhouse_train.tsv` / `inhouse_heldout.tsv`: "a user's own captions" for tuning (photos of the dev half: each
  caption plus, where the file name says something, the name as the owner would type it: "taj mahal", "cassy
  dancing", "M31") and its held-out counterpart (photos of the heldout half), `path<TAB>text`;
- `nonsense_dev.txt` / `nonsense_heldout.txt`: absent-concept queries (from `photoset_nonsense.txt`), split by seed;
- `dups/…` (kept out of `library/`, so plain retrieval runs see no variants) and `dup_families.tsv`
  (`family<TAB>split<TAB>variant<TAB>path<TAB>params`): near-duplicate families of 20 photos per half, by seed
  (the original in `library/`, resize 25–50%, JPEG q40–70, crop ≤ 10%, a burst shot: small shift/rotation and
  a brightness change);
- `same_class_pairs.tsv` (`split<TAB>relation<TAB>path_a<TAB>path_b<TAB>caption_a<TAB>caption_b`): distinct
  photos with the same caption or category, which must never be folded together;
- `manifest.json`: the arguments, counts and {key: path}; a second call with the same arguments reuses the files.

`skewed_library` and `tiny_library` draw the libraries the trust decisions must survive (one category ≥ 60% of
the photos; 20 photos, 5 of one subject), by seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
LIST = HERE / "photoset.tsv"
NONSENSE = HERE / "photoset_nonsense.txt"
DEFAULT_SEED = 0
FORMAT_VERSION = 2  # bump whenever what materialize writes changes: a stored copy of another version is rewritten
ENV_DIR = "LOUPE_PHOTOSET_DIR"
DEB_SOURCES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
               "scratch", "opencv-doc", "stellarium-data", "scribus-template")
SOURCES = ("gcompris", "skimage", "sklearn", *DEB_SOURCES)
RESERVED = ("tuxpaint-stamps",)  # never a source: independent evaluation uses it
SPLITS = ("dev", "heldout")
JPEG_QUALITY = 92
LIBRARY, DUPS = "library", "dups"  # the photos (a library root to scan), the near-duplicate variants (only for folds)
MAX_SIDE = 2048  # wallpapers come at 5120 px; a phone photo's size is plenty and keeps benches fast


@dataclass(frozen=True)
class Photo:
    key: str  # source:name
    caption: str
    category: str
    sha256: str  # first 16 hex digits of the source file's SHA-256 ('' when not recorded)

    @property
    def source(self) -> str:
        return self.key.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(":", 1)[1]


def read_photoset(path: str | Path = LIST) -> list[Photo]:
    """The photo list, validated: four fields, a known source, unique keys, one category per caption."""
    photos, seen, category_of = [], set(), {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#") or line.startswith("key\t"):
            continue
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) != 4 or ":" not in fields[0] or not fields[1].strip() or not fields[2].strip():
            raise ValueError(f"{where}: expected 'source:name<TAB>caption<TAB>category<TAB>sha256'")
        photo = Photo(fields[0], fields[1].strip(), fields[2].strip(), fields[3].strip())
        if photo.source not in SOURCES or any(photo.source.startswith(r) for r in RESERVED):
            raise ValueError(f"{where}: unknown or reserved source {photo.source!r}")
        if photo.key in seen:
            raise ValueError(f"{where}: duplicate key {photo.key}")
        if category_of.setdefault(photo.caption, photo.category) != photo.category:
            raise ValueError(f"{where}: caption {photo.caption!r} has two categories "
                             f"({category_of[photo.caption]!r}, {photo.category!r})")
        seen.add(photo.key)
        photos.append(photo)
    return photos


def read_nonsense(path: str | Path = NONSENSE) -> list[str]:
    """Absent-concept queries, one a line ('#' comments); duplicates are an error."""
    queries = [q.strip() for q in Path(path).read_text(encoding="utf-8").splitlines()
               if q.strip() and not q.lstrip().startswith("#")]
    repeated = [q for q, n in Counter(queries).items() if n > 1]
    if repeated:
        raise ValueError(f"{path}: repeated queries {repeated[:5]}")
    return queries


def default_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "loupe" / "photoset"


def _rng(seed: int, *salt: object) -> random.Random:
    """A generator per purpose, so adding photos to one draw never reshuffles another."""
    return random.Random(hashlib.sha256(repr((seed, *salt)).encode()).digest())


# -- splits ---------------------------------------------------------------------------------------------------------

def split(photos: Sequence[Photo] | None = None, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """{key: 'dev' | 'heldout'} by photo, photos sharing a caption on the same side, balanced per category.

    Per category, the caption groups are shuffled by seed and each goes to the side that has fewer photos of that
    category so far (ties: fewer photos overall), so both halves hold every category in similar numbers.
    """
    photos = list(read_photoset() if photos is None else photos)
    groups: dict[str, list[Photo]] = defaultdict(list)
    for photo in photos:
        groups[photo.caption].append(photo)
    by_category: dict[str, list[str]] = defaultdict(list)
    for caption, members in groups.items():
        by_category[members[0].category].append(caption)
    side_of: dict[str, str] = {}
    total = Counter()
    for category in sorted(by_category, key=lambda c: (-sum(len(groups[x]) for x in by_category[c]), c)):
        captions = sorted(by_category[category])
        _rng(seed, "split", category).shuffle(captions)
        captions.sort(key=lambda c: -len(groups[c]))  # big groups first (stable: the shuffle breaks ties)
        here = Counter()
        for caption in captions:
            side = min(SPLITS, key=lambda s: (here[s], total[s], _rng(seed, "tie", caption).random()))
            here[side] += len(groups[caption])
            total[side] += len(groups[caption])
            for photo in groups[caption]:
                side_of[photo.key] = side
    return side_of


_NAME_NOISE = {"picture", "image", "pic", "background", "left", "right", "cls", "original", "motion", "contents",
               "images", "resource", "webp", "jpg", "png", "gif", "by"}
_NO_NAME_LABEL = ("/leftright/", "/clickgame/", "/explore_world_music/", "/louis-braille/", "/solar_system/")


def name_label(photo: Photo) -> str | None:
    """What the photo's owner called it, from its file (or wallpaper) name: 'qutubMinar.webp' → 'qutub minar',
    'cassy-dancing-1.gif' → 'cassy dancing', stellarium 'm31.png' → 'M31'; None when the name says nothing more
    than the caption (or nothing at all). These are the "own captions" of the in-house tuning set: short, proper
    names and places, the vocabulary a user has and a generic model lacks."""
    if any(part in photo.key for part in _NO_NAME_LABEL):
        return None
    name = photo.name
    if photo.source == "plasma-workspace-wallpapers":
        stem = name.split("/")[3]
    else:
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0].split("_by_")[0]
    if photo.source == "stellarium-data":
        return stem.upper()
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem).replace("_", " ").replace("-", " ")
    words = [w for w in re.sub(r"[0-9]+", " ", words).lower().split() if len(w) > 1 and w not in _NAME_NOISE]
    label = " ".join(words)
    if len(label) < 3 or set(words) <= subject_words(photo.caption) | {"a", "an", "the"}:
        return None
    return label


def inhouse(photos: Sequence[Photo] | None = None, seed: int = DEFAULT_SEED, *, share: float = 0.9
            ) -> dict[str, list[tuple[Photo, str]]]:
    """{'train': [(photo, text)…], 'heldout': […]}: "a user's own captioned photos" for tuning (`share` of the dev
    half's photos, by seed) and the pairs to judge that tuning on (`share` of the heldout half).

    Each photo gives its caption and, where its file name says something (`name_label`), the name as a second
    text, the way people label their own photos ("cassy dancing", "taj mahal", "M31"). Tuning on `train` never
    sees a photo of `heldout`, and the heldout half is what the constants fitted on dev are reported on.
    """
    photos = list(read_photoset() if photos is None else photos)
    sides = split(photos, seed)
    out = {}
    for name, side in (("train", "dev"), ("heldout", "heldout")):
        members = sorted((p for p in photos if sides[p.key] == side), key=lambda p: p.key)
        _rng(seed, "inhouse", side).shuffle(members)
        pairs = []
        for photo in sorted(members[:round(share * len(members))], key=lambda p: p.key):
            pairs.append((photo, photo.caption))
            label = name_label(photo)
            if label:
                pairs.append((photo, label))
        out[name] = pairs
    return out


def nonsense_split(seed: int = DEFAULT_SEED, queries: Sequence[str] | None = None) -> dict[str, list[str]]:
    queries = sorted(read_nonsense() if queries is None else queries)
    _rng(seed, "nonsense").shuffle(queries)
    half = len(queries) // 2
    return {"dev": sorted(queries[:half]), "heldout": sorted(queries[half:])}


# -- libraries the decisions must survive --------------------------------------------------------------------------

def skewed_library(photos: Sequence[Photo], *, category: str = "animal", share: float = 0.6, size: int | None = None,
                   seed: int = DEFAULT_SEED) -> list[Photo]:
    """Photos where `category` makes up at least `share`: all of its photos (or `share * size` of them) plus
    enough others drawn by seed. Pass one split's photos to keep dev and held-out apart."""
    inside = sorted((p for p in photos if p.category == category), key=lambda p: p.key)
    outside = sorted((p for p in photos if p.category != category), key=lambda p: p.key)
    if not inside:
        raise ValueError(f"no photo of category {category!r}")
    rng = _rng(seed, "skewed", category)
    if size is not None:
        rng.shuffle(inside)
        inside = inside[:max(1, round(share * size))]
    others = int(len(inside) * (1 - share) / share)
    rng.shuffle(outside)
    return sorted(inside + outside[:others], key=lambda p: p.key)


def subject_words(caption: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", caption.lower()) if len(w) > 2} - _STOP


_STOP = {"the", "and", "with", "from", "its", "on", "in", "of", "an", "at", "photo", "old", "many", "close"}


def tiny_subjects(photos: Sequence[Photo], k: int = 5) -> list[str]:
    """Caption words that at least `k` photos share (candidate subjects for `tiny_library`)."""
    counts = Counter(w for p in photos for w in subject_words(p.caption))
    return sorted(w for w, n in counts.items() if n >= k)


_PREPOSITIONS = {"on", "in", "with", "of", "at", "behind", "through", "among", "from", "near", "under", "over", "by",
                 "against", "inside", "into", "for", "above", "below", "beside", "between", "during", "reading",
                 "looking", "flying", "standing", "sitting", "talking", "passing", "reflected"}


def subject_phrase(caption: str) -> list[str]:
    """The caption's subject phrase: its words before the first preposition or verb ("a wind turbine on a hill" →
    ['wind', 'turbine'], "a woman talking on a phone" → ['woman']), short and stop words left out. A heuristic
    that fits the photo set's one-line captions, where adjectives ("orange", "tilted") never end a subject."""
    subject = []
    for word in re.findall(r"[a-z]+", caption.lower()):
        if word in _PREPOSITIONS:
            break
        subject.append(word)
    return [w for w in subject if len(w) > 2 and w not in _STOP]


def head_noun(caption: str) -> str | None:
    """The last word of `subject_phrase` ('turbine'), None when it is empty."""
    phrase = subject_phrase(caption)
    return phrase[-1] if phrase else None


def shared_subject(captions: Sequence[str], head: str, most: int = 2) -> str:
    """What a user would type for photos whose captions share the head noun `head`: the longest ending of their
    subject phrases (up to `most` words) that all of them share ("a wind turbine", "a wind turbine on a hill" →
    'wind turbine'); `head` alone when one of them does not end its subject phrase with it."""
    phrases = [subject_phrase(c) for c in captions]
    if any(not p or p[-1] != head for p in phrases):
        return head
    shared = [head]
    for n in range(2, most + 1):
        tails = {tuple(p[-n:]) for p in phrases}
        if len(tails) == 1 and len(next(iter(tails))) == n:
            shared = list(next(iter(tails)))
    return " ".join(shared)


def tiny_head_subjects(photos: Sequence[Photo], k: int = 5) -> list[str]:
    """Head nouns (`head_noun`) of at least `k` photos' captions, most photos first (ties by name): the subjects a
    tiny library can be built around (`tiny_library(subject=...)`)."""
    counts = Counter(h for p in photos if (h := head_noun(p.caption)))
    return [w for w, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= k]


def tiny_library(photos: Sequence[Photo], *, subject: str | None = None, n: int = 20, k: int = 5,
                 seed: int = DEFAULT_SEED) -> tuple[list[Photo], list[Photo]]:
    """(library, subject photos): `n` photos, `k` of them showing `subject` (a caption word, e.g. 'fish'; drawn by
    seed among `tiny_subjects` when None), the rest from other categories than the subject's photos."""
    rng = _rng(seed, "tiny", subject)
    if subject is None:
        candidates = tiny_subjects(photos, k)
        if not candidates:
            raise ValueError(f"no caption word is shared by {k} photos")
        subject = rng.choice(candidates)
    having = sorted((p for p in photos if subject in subject_words(p.caption)), key=lambda p: p.key)
    if len(having) < k:
        raise ValueError(f"only {len(having)} photos show {subject!r}; need {k}")
    rng.shuffle(having)
    chosen = having[:k]
    categories = {p.category for p in chosen}
    rest = sorted((p for p in photos if p.category not in categories and subject not in subject_words(p.caption)),
                  key=lambda p: p.key)
    rng.shuffle(rest)
    if len(rest) < n - k:
        raise ValueError(f"only {len(rest)} photos outside {sorted(categories)}; need {n - k}")
    return sorted(chosen + rest[:n - k], key=lambda p: p.key), sorted(chosen, key=lambda p: p.key)


# -- camera-style names ---------------------------------------------------------------------------------------------

_FOLDERS = ("DCIM/100CANON", "DCIM/101CANON", "DCIM/102NIKON", "Android/DCIM/100ANDRO", "SD/DCIM/100MSDCF",
            "backup/2019", "Pictures/2021-07", "Pictures/2023")


def _camera_name(folder: str, number: int, when: datetime, rng: random.Random) -> str:
    if "CANON" in folder:
        return f"IMG_{number:04d}.JPG"
    if "NIKON" in folder:
        return f"DSC_{number:04d}.JPG"
    if "MSDCF" in folder:
        return f"DSC{number:05d}.JPG"
    if "ANDRO" in folder:
        return f"PXL_{when:%Y%m%d_%H%M%S}{rng.randrange(1000):03d}.jpg"
    if folder.startswith("backup"):
        return f"IMG_{when:%Y%m%d_%H%M%S}.jpg"
    return f"IMG_{number:04d}.jpg"


def camera_paths(keys: Iterable[str], seed: int = DEFAULT_SEED, *, prefix: str = "") -> dict[str, str]:
    """{key: relative path} with unique camera-style names in a few nested folders, by seed.

    Each key's folder, number and time come from its own hash, so adding photos to the list leaves the other
    photos' names alone (only a rare collision moves on to the next free number)."""
    out, used = {}, set()
    start = datetime(2016, 1, 1)
    for key in sorted(set(keys)):
        rng = _rng(seed, "name", prefix, key)
        folder = rng.choice(_FOLDERS)
        number = rng.randrange(1, 10000)
        when = start + timedelta(seconds=rng.randrange(8 * 365 * 86400))
        path = f"{prefix}{folder}/{_camera_name(folder, number, when, rng)}"
        while path in used:
            number = number % 9999 + 1
            when += timedelta(seconds=1)
            path = f"{prefix}{folder}/{_camera_name(folder, number, when, rng)}"
        used.add(path)
        out[key] = path
    return out


def name_words(path: str) -> set[str]:
    """The words a path carries (for checking that no caption word leaks into a name)."""
    return {w for w in re.findall(r"[a-z]+", path.lower()) if len(w) > 2}


# -- reading the photos from their packages -------------------------------------------------------------------------

def load_bytes(photos: Sequence[Photo], *, download: bool = True, gcompris=None) -> dict[str, bytes]:
    """{key: original file bytes}, each source read once (gcompris in one pass over its .rcc files)."""
    from bench.data import debs
    from bench.data.gcompris import GcomprisSource
    from bench.data.realphotos import skimage_file, sklearn_file

    out: dict[str, bytes] = {}
    by_source: dict[str, list[Photo]] = defaultdict(list)
    for photo in photos:
        by_source[photo.source].append(photo)
    if by_source.get("gcompris"):
        gcompris = gcompris or GcomprisSource.locate(download=download)
        contents = gcompris.read_many(p.name for p in by_source["gcompris"])
        out.update({p.key: contents[p.name] for p in by_source["gcompris"]})
    for photo in by_source.get("skimage", []):
        out[photo.key] = skimage_file(photo.name)[1]
    for photo in by_source.get("sklearn", []):
        out[photo.key] = sklearn_file(photo.name)[1]
    for source in DEB_SOURCES:
        if by_source.get(source):
            contents = debs.read_members(debs.locate_deb(source, download=download),
                                         (p.name for p in by_source[source]))
            out.update({p.key: contents[p.name] for p in by_source[source]})
    return out


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def to_rgb(data: bytes):
    """The decoded photo as an RGB PIL image (transparency flattened onto white)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def jpeg_bytes(image, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)  # PIL writes no EXIF unless given one
    return buffer.getvalue()


# -- near-duplicate families ----------------------------------------------------------------------------------------

VARIANTS = ("original", "resize", "jpeg", "crop", "burst")


def make_variants(image, rng: random.Random) -> dict[str, tuple[object, dict]]:
    """{variant: (PIL image, params)}: the near-duplicates a library really holds (not 'original')."""
    from PIL import ImageEnhance

    w, h = image.size
    out = {}
    scale = rng.uniform(0.25, 0.5)
    out["resize"] = (image.resize((max(8, round(w * scale)), max(8, round(h * scale)))), {"scale": round(scale, 3)})
    quality = rng.randrange(40, 71)
    out["jpeg"] = (image, {"quality": quality})
    frac = rng.uniform(0.04, 0.10)  # share of width/height cut in all, split between the two sides at random
    left, top = rng.uniform(0, frac), rng.uniform(0, frac)
    box = (round(left * w), round(top * h), round(w - (frac - left) * w), round(h - (frac - top) * h))
    out["crop"] = (image.crop(box), {"crop": round(frac, 3), "box": list(box)})
    angle = rng.uniform(-3, 3)
    dx, dy = rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)
    brightness = rng.choice((rng.uniform(0.8, 0.92), rng.uniform(1.08, 1.2)))
    moved = image.rotate(angle, translate=(round(dx * w), round(dy * h)), resample=3, fillcolor=(0, 0, 0))
    inner = (round(0.05 * w), round(0.05 * h), round(0.95 * w), round(0.95 * h))  # no black corners: a new frame
    burst = ImageEnhance.Brightness(moved.crop(inner).resize((w, h))).enhance(brightness)
    out["burst"] = (burst, {"angle": round(angle, 2), "shift": [round(dx, 3), round(dy, 3)],
                            "brightness": round(brightness, 3)})
    return out


def family_sample(photos: Sequence[Photo], sides: dict[str, str], per_split: int, seed: int) -> list[Photo]:
    """`per_split` photos of each half, spread over captions (one per caption first), by seed."""
    chosen = []
    for side in SPLITS:
        members = sorted((p for p in photos if sides[p.key] == side), key=lambda p: p.key)
        rng = _rng(seed, "families", side)
        rng.shuffle(members)
        seen, first, later = set(), [], []
        for photo in members:
            (later if photo.caption in seen else first).append(photo)
            seen.add(photo.caption)
        chosen += (first + later)[:per_split]
    return chosen


def same_class_pairs(photos: Sequence[Photo], sides: dict[str, str], seed: int, *, per_caption: int = 6,
                     per_category: int = 60) -> list[tuple[str, str, Photo, Photo]]:
    """(split, relation, a, b): distinct photos of one half with the same caption ('same caption', up to
    `per_caption` pairs each) or the same category but another caption ('same category', up to `per_category`)."""
    out = []
    for side in SPLITS:
        members = sorted((p for p in photos if sides[p.key] == side), key=lambda p: p.key)
        rng = _rng(seed, "pairs", side)
        by_caption, by_category = defaultdict(list), defaultdict(list)
        for photo in members:
            by_caption[photo.caption].append(photo)
            by_category[photo.category].append(photo)
        for caption in sorted(by_caption):
            group = by_caption[caption]
            pairs = [(a, b) for i, a in enumerate(group) for b in group[i + 1:]]
            rng.shuffle(pairs)
            out += [(side, "same caption", a, b) for a, b in pairs[:per_caption]]
        for category in sorted(by_category):
            group = by_category[category]
            pairs = [(a, b) for i, a in enumerate(group) for b in group[i + 1:] if a.caption != b.caption]
            rng.shuffle(pairs)
            out += [(side, "same category", a, b) for a, b in pairs[:per_category]]
    return out


# -- writing it all -------------------------------------------------------------------------------------------------

def materialize(out_dir: str | Path | None = None, *, seed: int = DEFAULT_SEED, keys: Iterable[str] | None = None,
                families_per_split: int = 20, download: bool = True, gcompris=None, force: bool = False) -> dict:
    """Write the photo set under `out_dir` (default `default_dir()`) and return its manifest (a dict).

    `keys` restricts it to some photos (tests); names, splits and families are drawn from the full list either
    way, so a photo has the same path and side in a partial and a full copy. A second call with the same
    arguments and an intact folder returns the stored manifest without rewriting anything (`force` rewrites).
    One unreadable photo is skipped with a warning; it never stops the run.
    """
    out_dir = Path(out_dir or default_dir()).expanduser()
    all_photos = read_photoset()
    wanted = None if keys is None else set(keys)
    if wanted is not None and wanted - {p.key for p in all_photos}:
        raise KeyError(f"not in {LIST.name}: {sorted(wanted - {p.key for p in all_photos})[:5]}")
    photos = [p for p in all_photos if wanted is None or p.key in wanted]
    arguments = {"version": FORMAT_VERSION, "seed": seed, "list_sha": digest(LIST.read_bytes()),
                 "nonsense_sha": digest(NONSENSE.read_bytes()), "families_per_split": families_per_split,
                 "keys": sorted(p.key for p in photos)}
    manifest_path = out_dir / "manifest.json"
    if not force and manifest_path.is_file():
        try:
            stored = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored.get("arguments") == arguments and all((out_dir / p).is_file() for p in stored.get("files", {})
                                                        .values()):
            log.info("reusing %s (same arguments)", out_dir)
            return stored
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir, manifest_path)
    sides = split(all_photos, seed)
    paths = camera_paths((p.key for p in all_photos), seed, prefix=LIBRARY + "/")
    originals = load_bytes(photos, download=download, gcompris=gcompris)
    written, changed, failed = {}, [], []
    images = {}
    for photo in photos:
        try:
            image = to_rgb(originals[photo.key])
        except Exception as err:  # noqa: BLE001 - one bad file never stops a run
            log.warning("skipping %s: %s", photo.key, err)
            failed.append(photo.key)
            continue
        target = out_dir / paths[photo.key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg_bytes(image))
        written[photo.key] = paths[photo.key]
        images[photo.key] = image
        if photo.sha256 and digest(originals[photo.key]) != photo.sha256:
            changed.append(photo.key)
    if changed:
        log.warning("%d photos differ from the recorded versions (another package version?), e.g. %s",
                    len(changed), changed[0])
    kept = [p for p in photos if p.key in written]

    def rows(members: Iterable[Photo]) -> str:
        return "".join(f"{written[p.key]}\t{p.caption}\n" for p in members if p.key in written)

    (out_dir / "captions.tsv").write_text("path\tcaption\tcategory\n" + "".join(
        f"{written[p.key]}\t{p.caption}\t{p.category}\n" for p in kept), encoding="utf-8")
    for side in SPLITS:
        (out_dir / f"{side}.tsv").write_text(rows(p for p in kept if sides[p.key] == side), encoding="utf-8")
    tuning = {name: [(p, text) for p, text in pairs if p.key in written]
              for name, pairs in inhouse(all_photos, seed).items()}
    for name, pairs in tuning.items():
        (out_dir / f"inhouse_{name}.tsv").write_text("".join(f"{written[p.key]}\t{text}\n" for p, text in pairs),
                                                     encoding="utf-8")
    for side, queries in nonsense_split(seed).items():
        (out_dir / f"nonsense_{side}.txt").write_text("".join(q + "\n" for q in queries), encoding="utf-8")

    family_rows = []
    family_photos = family_sample([p for p in kept], sides, families_per_split, seed)
    variant_keys = [f"{p.key}#{v}" for p in family_photos for v in VARIANTS[1:]]
    variant_paths = camera_paths(variant_keys, seed, prefix=DUPS + "/")
    for number, photo in enumerate(family_photos):
        family = f"F{number:03d}"
        family_rows.append((family, sides[photo.key], "original", written[photo.key], "{}"))
        for variant, (image, params) in make_variants(images[photo.key], _rng(seed, "variant", photo.key)).items():
            relative = variant_paths[f"{photo.key}#{variant}"]
            target = out_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(jpeg_bytes(image, params.get("quality", JPEG_QUALITY)))
            family_rows.append((family, sides[photo.key], variant, relative, json.dumps(params)))
            written[f"{photo.key}#{variant}"] = relative
    (out_dir / "dup_families.tsv").write_text("family\tsplit\tvariant\tpath\tparams\n" + "".join(
        "\t".join(r) + "\n" for r in family_rows), encoding="utf-8")
    pairs = [r for r in same_class_pairs(all_photos, sides, seed) if r[2].key in written and r[3].key in written]
    (out_dir / "same_class_pairs.tsv").write_text("split\trelation\tpath_a\tpath_b\tcaption_a\tcaption_b\n" + "".join(
        f"{s}\t{rel}\t{written[a.key]}\t{written[b.key]}\t{a.caption}\t{b.caption}\n" for s, rel, a, b in pairs),
        encoding="utf-8")

    manifest = {"arguments": arguments, "out_dir": str(out_dir), "failed": failed, "changed": changed,
                "counts": counts(kept, sides), "families": len(family_photos), "same_class_pairs": len(pairs),
                "inhouse": {k: len(v) for k, v in tuning.items()},
                "files": written}
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def _remove_stale(out_dir: Path, manifest_path: Path) -> None:
    """Delete the photos a previous manifest in `out_dir` lists (and only those), so a rewrite with other
    arguments never leaves uncaptioned photos behind for a library scan to pick up."""
    try:
        previous = json.loads(manifest_path.read_text()).get("files", {})
    except (OSError, ValueError):
        return
    for relative in previous.values():
        target = (out_dir / relative).resolve()
        if out_dir.resolve() in target.parents and target.suffix.lower() in (".jpg", ".jpeg") and target.is_file():
            target.unlink()
            folder = target.parent
            while folder != out_dir.resolve() and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
    manifest_path.unlink(missing_ok=True)


def counts(photos: Sequence[Photo], sides: dict[str, str]) -> dict[str, dict[str, int]]:
    return {"source": dict(sorted(Counter(p.source for p in photos).items())),
            "category": dict(Counter(p.category for p in photos).most_common()),
            "split": dict(sorted(Counter(sides[p.key] for p in photos).items())),
            "category_by_split": {side: dict(Counter(p.category for p in photos if sides[p.key] == side)
                                             .most_common()) for side in SPLITS},
            "source_by_split": {side: dict(sorted(Counter(p.source for p in photos if sides[p.key] == side)
                                                  .items())) for side in SPLITS},
            "captions": {"distinct": len({p.caption for p in photos})}}


def update_digests(path: Path = LIST, *, download: bool = True) -> int:
    """Fill the sha256 column where it is empty (after adding photos by hand); returns how many were filled."""
    photos = read_photoset(path)
    missing = [p for p in photos if not p.sha256]
    if not missing:
        return 0
    data = load_bytes(missing, download=download)
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] in data and not fields[3].strip():
            fields[3] = digest(data[fields[0]])
        lines.append("\t".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(missing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data.photoset", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help=f"folder to write into (default ${ENV_DIR} or "
                        "~/.cache/loupe/photoset)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--families", type=int, default=20, help="near-duplicate families per split")
    parser.add_argument("--no-download", action="store_true", help="never run apt-get download; fail instead")
    parser.add_argument("--force", action="store_true", help="rewrite even when the folder is up to date")
    parser.add_argument("--clean", action="store_true", help="empty --out first")
    parser.add_argument("--update-digests", action="store_true", help="fill missing sha256 fields of the list")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.update_digests:
            print(f"filled {update_digests(download=not args.no_download)} digests in {LIST}")
            return 0
        out = Path(args.out or default_dir()).expanduser()
        if args.clean and out.is_dir():
            shutil.rmtree(out)
        manifest = materialize(out, seed=args.seed, families_per_split=args.families,
                               download=not args.no_download, force=args.force)
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    c = manifest["counts"]
    print(f"{sum(c['source'].values())} photos, {c['captions']['distinct']} distinct captions in {out}")
    print("    split: " + ", ".join(f"{k} {v}" for k, v in c["split"].items()))
    for what in ("source", "category"):
        by_split = c.get(f"{what}_by_split", {"dev": {}, "heldout": {}})
        print(f"{what:>9}: " + ", ".join(f"{k} {v} ({by_split['dev'].get(k, 0)}/{by_split['heldout'].get(k, 0)})"
                                        for k, v in c[what].items()) + "   (dev/heldout)")
    print(f"  inhouse: train {manifest['inhouse']['train']}, heldout {manifest['inhouse']['heldout']} pairs")
    nonsense = nonsense_split(args.seed)
    print(f" nonsense: dev {len(nonsense['dev'])}, heldout {len(nonsense['heldout'])} queries")
    print(f"     dups: {manifest['families']} families x {len(VARIANTS)} variants; "
          f"{manifest['same_class_pairs']} same-class distinct pairs")
    if manifest["failed"]:
        print(f"  skipped: {len(manifest['failed'])} unreadable photos, e.g. {manifest['failed'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
