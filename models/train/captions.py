"""Captions files → `CaptionRow`s: CSV, TSV or JSONL, one (image, caption) pair per row, several rows per image.

Users' caption files are hand-made or exported from other tools, so a bad row is expected, not fatal: each one is
reported with its line number and a reason, and the rest are used. Only a file with *no* usable row is an error.

- CSV/TSV: two columns `image, caption`; an optional header row names them (`image`/`path`/`file`, `caption`/
  `text`), in which case extra columns are allowed and ignored. Quoted fields may span lines (csv module rules).
- JSONL: one object per line with `image` and `caption` (a string or a list of strings).
The format comes from the extension (.csv, .tsv/.tab, .jsonl/.ndjson) or, failing that, is sniffed.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
IMAGE_COLUMNS = ("image", "path", "file", "filepath", "filename", "image_path", "key")  # header / JSON key names
CAPTION_COLUMNS = ("caption", "text", "captions", "description", "sentence", "raw")


@dataclass(frozen=True)
class CaptionRow:
    line: int  # 1-based line where the row starts (for messages)
    image: str  # as written: a path (relative to the images root, or absolute) or a vector key
    caption: str


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedCaptions:
    path: Path
    format: str
    rows: list[CaptionRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class CaptionsError(ValueError):
    """The captions file cannot be used at all (unreadable, or no usable row)."""


def read_captions(path: str | os.PathLike, fmt: str | None = None) -> ParsedCaptions:
    """Parse `path`; bad rows land in `.problems` with line numbers, good ones in `.rows`."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CaptionsError(f"cannot read captions file {path}: {err.strerror or err}") from err
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # what Windows' Notepad and Excel call "Unicode"
        raise CaptionsError(f"{path} is saved as UTF-16; save it as UTF-8 (in Excel: CSV UTF-8)")
    result = ParsedCaptions(path, fmt or detect_format(path, raw))
    lines = _decoded_lines(raw, result.problems)
    if result.format == "jsonl":
        _parse_jsonl(lines, result)
    else:
        _parse_delimited(lines, "\t" if result.format == "tsv" else ",", result)
    result.problems.sort(key=lambda p: p.line)
    return result


def detect_format(path: Path, raw: bytes) -> str:
    """By extension, else by the first non-blank line: `{` → JSONL, a tab → TSV, otherwise CSV."""
    if path.suffix.lower() in FORMATS:
        return FORMATS[path.suffix.lower()]
    first = next((line.strip() for line in raw.splitlines() if line.strip()), b"")
    if first.startswith(b"{"):
        return "jsonl"
    return "tsv" if b"\t" in first else "csv"


def _decoded_lines(raw: bytes, problems: list[Problem]) -> list[tuple[int, str]]:
    """(line number, text) per line; lines that are not UTF-8 become problems instead of aborting the file."""
    out = []
    for number, chunk in enumerate(raw.splitlines(keepends=True), start=1):  # csv needs the line ends
        try:
            text = chunk.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as err:
            problems.append(Problem(number, f"not valid UTF-8 (byte {err.start}); save the file as UTF-8"))
            continue
        out.append((number, text))
    return out


def _parse_jsonl(lines: list[tuple[int, str]], result: ParsedCaptions) -> None:
    for number, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            result.problems.append(Problem(number, f"bad JSON ({err.msg} at column {err.colno})"))
            continue
        record = record if isinstance(record, dict) else {}
        image = next((record[k] for k in IMAGE_COLUMNS if k in record), None)
        caption = next((record[k] for k in CAPTION_COLUMNS if k in record), None)
        if image is None or caption is None:
            result.problems.append(Problem(number, 'expected an object with "image" and "caption" keys (or '
                                                   '"path", "file"…; "text", "captions"…)'))
            continue
        for text in caption if isinstance(caption, list) else [caption]:
            _add(result, number, image, text)


def _parse_delimited(lines: list[tuple[int, str]], delimiter: str, result: ParsedCaptions) -> None:
    numbers: list[int] = []
    reader = csv.reader(_numbered(lines, numbers), delimiter=delimiter)
    columns: tuple[int, int, int] | None = None  # (image index, caption index, expected width)
    while True:
        start = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            result.problems.append(Problem(numbers[start] if start < len(numbers) else 0, f"unparsable row: {err}"))
            continue
        number = numbers[start]
        if not any(f.strip() for f in fields):
            continue
        if columns is None:
            columns = _header_columns(fields)
            if columns is not None:
                continue
            columns = (0, 1, 2)
        _add_delimited(result, number, fields, columns)


def _numbered(lines: list[tuple[int, str]], numbers: list[int]) -> Iterator[str]:
    """Feed lines to csv while recording their file line numbers (csv counts only the lines it consumed)."""
    for number, text in lines:
        numbers.append(number)
        yield text


def _header_columns(fields: list[str]) -> tuple[int, int, int] | None:
    names = [f.strip().lower() for f in fields]
    image = next((i for i, n in enumerate(names) if n in IMAGE_COLUMNS), None)
    caption = next((i for i, n in enumerate(names) if n in CAPTION_COLUMNS), None)
    if image is None or caption is None:
        return None
    return image, caption, len(fields)


def _add_delimited(result: ParsedCaptions, number: int, fields: list[str], columns: tuple[int, int, int]) -> None:
    image, caption, width = columns
    if len(fields) != width:
        hint = " (quote captions that contain the delimiter)" if len(fields) > width else ""
        result.problems.append(Problem(number, f"expected {width} columns, found {len(fields)}{hint}"))
        return
    _add(result, number, fields[image], fields[caption])


def _add(result: ParsedCaptions, number: int, image: object, caption: object) -> None:
    if not isinstance(image, str) or not image.strip():
        result.problems.append(Problem(number, "empty image path"))
    elif not isinstance(caption, str) or not caption.strip():
        result.problems.append(Problem(number, "empty caption"))
    else:
        result.rows.append(CaptionRow(number, image.strip(), " ".join(caption.split())))
