"""Evaluation sets read from the layouts users already have: ImageNet-style class folders, a labels file, COCO's
Karpathy-split JSON (`dataset_coco.json`), or a plain captions file (CSV / TSV / JSONL).

Only paths and labels are read here; decoding happens batch by batch later, where a bad image is skipped and counted.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from models.train.captions import CAPTION_COLUMNS, IMAGE_COLUMNS, CaptionsError, read_captions

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".avif"}
_WORDNET_ID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class ClassificationSet:
    images: list[Path]
    labels: list[int]  # index into classnames, one per image
    classnames: list[str]


@dataclass(frozen=True)
class RetrievalSet:
    images: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption j describes images[caption_image[j]]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_classnames(path: Path) -> list[str] | dict[str, str]:
    """One name per line (in class order), or `key<TAB>name` lines (key: folder name / WordNet id / label)."""
    lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and all("\t" in line for line in lines):
        return dict(line.split("\t", 1) for line in lines)
    return [line.strip() for line in lines]


def _name_for(key: str) -> str:
    """A folder's class name when no names file is given: WordNet ids (ImageNet's n01440764) map through timm's
    offline ImageNet metadata ('tench, Tinca tinca'); anything else is the folder name itself."""
    if _WORDNET_ID.fullmatch(key):
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        if info.has_label(key):
            return info.label_name_to_description(key)
    return key


def _resolve_names(keys: list[str], names: list[str] | dict[str, str] | None, source: str) -> list[str]:
    if names is None:
        return [_name_for(key) for key in keys]
    if isinstance(names, dict):
        missing = [key for key in keys if key not in names]
        if missing:
            raise ValueError(f"{source} has no name for classes {missing[:5]}")
        return [names[key] for key in keys]
    if len(names) != len(keys):
        raise ValueError(f"{source} lists {len(names)} names but there are {len(keys)} classes")
    return list(names)


def class_folders(root: Path, classnames: Path | None = None) -> ClassificationSet:
    """`root/<class>/<images…>` (ImageNet val after the usual valprep): classes in sorted folder order."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{root} has no class subfolders; pass --labels FILE for a flat folder")
    names = _resolve_names([f.name for f in folders], read_classnames(classnames) if classnames else None,
                           str(classnames))
    images, labels = [], []
    for label, folder in enumerate(folders):
        files = _image_files(folder)
        images += files
        labels += [label] * len(files)
    return ClassificationSet(images, labels, names)


def labels_file(path: Path, classnames: Path, images_root: Path | None = None) -> ClassificationSet:
    """CSV/TSV rows `image,label`; the label is a 0-based index into the names file or a key of a `key<TAB>name`
    names file. Relative image paths are resolved against `images_root` (default: the labels file's folder)."""
    names = read_classnames(classnames)
    keys = list(names) if isinstance(names, dict) else None
    root = images_root or path.parent
    images, labels = [], []
    for image, label in _rows(path):
        label = label.strip()
        index = keys.index(label) if keys and label in keys else int(label)
        images.append(root / image)
        labels.append(index)
    classnames_list = list(names.values()) if isinstance(names, dict) else names
    return ClassificationSet(images, labels, classnames_list)


def coco_karpathy(path: Path, images_root: Path, split: str = "test") -> RetrievalSet:
    """Karpathy's `dataset_coco.json`: images[].split / filepath / filename / sentences[].raw (5k test images)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    images, captions, owners = [], [], []
    for entry in data["images"]:
        if entry.get("split") != split:
            continue
        owners += [len(images)] * len(entry["sentences"])
        captions += [sentence["raw"].strip() for sentence in entry["sentences"]]
        images.append(images_root / entry.get("filepath", "") / entry["filename"])
    if not images:
        raise ValueError(f"{path} has no images with split == {split!r}")
    return RetrievalSet(images, captions, owners)


def captions_file(path: Path, images_root: Path | None = None) -> RetrievalSet:
    """CSV/TSV (`image,caption` rows; a header row is recognised) or JSONL ({"image": …, "caption": … or [...]}).
    Several rows (or a list) per image give several captions.

    Read by the same reader as `python -m models.train` (models.train.captions): a bad row (too few columns, an
    empty caption, a line that is not UTF-8) is skipped and logged with its line number, never the whole file."""
    parsed = read_captions(path)
    for problem in parsed.problems[:10]:
        log.warning("%s: %s (skipped)", path.name, problem)
    if len(parsed.problems) > 10:
        log.warning("%s: … and %d more rows skipped", path.name, len(parsed.problems) - 10)
    root = images_root or path.parent
    index: dict[str, int] = {}
    images, captions, owners = [], [], []
    for row in parsed.rows:
        if row.image not in index:
            index[row.image] = len(images)
            images.append(root / row.image)
        captions.append(row.caption)
        owners.append(index[row.image])
    if not captions:
        first = "; ".join(map(str, parsed.problems[:3]))
        raise CaptionsError(f"{path} holds no usable captions" + (f" ({first})" if first else ""))
    return RetrievalSet(images, captions, owners)


def _rows(path: Path) -> list[tuple[str, object]]:
    """(image, value) pairs from CSV, TSV or JSONL, header rows skipped."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return [_json_row(json.loads(line), path) for line in text.splitlines() if line.strip()]
    delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in text.partition("\n")[0]) else ","
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row and any(c.strip() for c in row)]
    if rows and rows[0][0].strip().lower() in IMAGE_COLUMNS:
        rows = rows[1:]
    bad = [row for row in rows if len(row) < 2]
    if bad:
        raise ValueError(f"{path}: expected 'image{delimiter}value' rows, got {bad[0]}")
    return [(row[0].strip(), delimiter.join(row[1:]).strip()) for row in rows]


def _json_row(record: dict, path: Path) -> tuple[str, object]:
    image = next((record[k] for k in IMAGE_COLUMNS if k in record), None)
    value = next((record[k] for k in (*CAPTION_COLUMNS, "label") if k in record), None)
    if image is None or value is None:
        raise ValueError(f"{path}: each JSON line needs an image key {IMAGE_COLUMNS} and a caption key "
                         f"{CAPTION_COLUMNS}")
    return str(image), value
