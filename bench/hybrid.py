"""Words people gave their photos: semantic vs words vs hybrid search, dev and held-out side by side.

    python -m bench.hybrid [--model offline-lite] [--work DIR] [--keyworded 0.4] [--named 0.5]

Data: bench.data.photoset (real photos, camera-style names, the fixed-seed dev / held-out split), each half laid
out as a user's library: photos of a seeded half of the categories sit in folders named after the category
("Animals", "Buildings", …), the others keep their camera folders (DCIM/100CANON …); a seeded share of the photos
carries XMP keywords — what its owner calls it (`photoset.name_label`: "taj mahal", "brandenburg gate") and its
category — half embedded in the JPEG, half in a `<photo>.jpg.xmp` sidecar. Each half is indexed by the real
indexer into its own data home and queried with the real `SearchEngine` (search.evaluate.engine_recall: top 10,
no score cutoff, no folding) in each `--mode`.

Queries: every photo's caption ("a white marble mausoleum"), and for photos with one, its owner's name for it
("taj mahal") whether or not that photo is keyworded. The fusion weight of the words ranking and the coverage
power (search.fusion WORDS_WEIGHT, COVERAGE_POWER) are fitted on dev only (best dev hybrid R@5, then R@1, over a
grid) and reported on held-out. The last row takes
the queries none of whose words appears anywhere in the library: hybrid must equal semantic there, result for
result (the row says how many result lists were identical).
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere

log = logging.getLogger("bench.hybrid")
SEED = 17
WEIGHTS = (0.5, 1.0, 2.0, 4.0)  # the words ranking's RRF weight, fitted on dev
POWERS = (0.0, 1.0, 2.0)  # how much a photo holding only some of the query's words counts less, fitted on dev
MODES = ("semantic", "words", "hybrid")
FOLDERS = {"person": "People", "space": "Space", "renewable energy": "Renewable energy", "body part": "Body parts",
           "kitchenware": "Kitchenware", "underwater": "Underwater", "art": "Art", "money": "Money",
           "furniture": "Furniture", "electronics": "Electronics", "food": "Food", "texture": "Textures",
           "school supplies": "School supplies", "street": "Streets"}
XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>{items}</rdf:Bag>'
       '</dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>')


def folder_name(category: str) -> str:
    return FOLDERS.get(category) or category.capitalize() + "s"


def lay_out(manifest: dict, side: str, out: Path, named: float, keyworded: float) -> list[tuple[Path, str, str]]:
    """Write one half as a library under `out`; [(photo path, caption, owner's name or '')]."""
    from bench.data import photoset

    root = Path(manifest["out_dir"])
    photos = {p.key: p for p in photoset.read_photoset()}
    sides = photoset.split(list(photos.values()))
    categories = sorted({p.category for p in photos.values()})
    random.Random(SEED).shuffle(categories)
    foldered = set(categories[:round(len(categories) * named)])
    rng = random.Random(f"{SEED}-{side}")
    rows = []
    for key, relative in sorted(manifest["files"].items()):
        if "#" in key or key not in photos or sides[key] != side:
            continue  # near-duplicate variants stay out: plain retrieval
        photo, source = photos[key], root / relative
        camera_folder, name = relative.split("/", 1)[1].rsplit("/", 1)
        target = out / (folder_name(photo.category) if photo.category in foldered else camera_folder) / name
        label = photoset.name_label(photo) or ""
        data = source.read_bytes()
        if rng.random() < keyworded:
            items = "".join(f"<rdf:li>{k}</rdf:li>" for k in dict.fromkeys(filter(None, [label, photo.category])))
            packet = XMP.format(items=items).encode()
            if rng.random() < 0.5:
                data = _embed(data, packet)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.with_name(target.name + ".xmp").write_bytes(packet)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(data)
        rows.append((target, photo.caption, label))
    return rows


def _embed(jpeg: bytes, packet: bytes) -> bytes:
    """The JPEG with an XMP APP1 segment right after SOI, as cameras and editors write it."""
    body = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def index(folder: Path, home: Path, model: str) -> None:
    from indexer.owner.service import IndexerService
    from indexer.settings import IndexerSettings

    service = IndexerService(IndexerSettings.from_env(home=home, roots=(folder,), model=model, workers=1))
    try:
        log.info("indexed %s: %s", folder, service.scan())
    finally:
        service.close()


def queries(rows: list[tuple[Path, str, str]]) -> dict[str, tuple[list[str], list[int]]]:
    """Query sets: name → (texts, owner row of each)."""
    captions = ([c for _, c, _ in rows], list(range(len(rows))))
    named = [(label, i) for i, (_, _, label) in enumerate(rows) if label]
    names = ([t for t, _ in named], [i for _, i in named])
    return {"captions": captions, "names": names,
            "all queries": (captions[0] + names[0], captions[1] + names[1])}


def nowhere(engine, texts: list[str], owners: list[int]) -> tuple[list[str], list[int]]:
    """The queries none of whose words appears in any photo's words."""
    from search.lexical import query_words

    library = set()
    for point in engine.backend.store.scroll(engine.collection):
        library.update(point.payload.get("words", []))
    kept = [(t, o) for t, o in zip(texts, owners, strict=True) if not set(query_words([t])) & library]
    return [t for t, _ in kept], [o for _, o in kept]


def identical(engine, texts: list[str]) -> int:
    from search.query import build_query

    same = 0
    for text in texts:
        pages = [engine.search(build_query(text), limit=10, min_score=0.0, collapse_duplicates=False, mode=m)
                 for m in ("semantic", "hybrid")]
        same += [r.to_json() for r in pages[0].results] == [r.to_json() for r in pages[1].results]
    return same


def measure(engine, images, sets, fit: tuple[float, float], modes=MODES) -> dict:
    from search.evaluate import engine_recall

    engine.words_weight, engine.coverage_power = fit
    out = defaultdict(dict)
    for name, (texts, owners) in sets.items():
        for mode in modes:
            out[name][mode] = engine_recall(engine, images, texts, owners, mode=mode)["text_to_image"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hybrid", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--work", type=Path, default=Path("/tmp/loupe-bench-hybrid"))
    parser.add_argument("--named", type=float, default=0.5, help="share of categories in named folders")
    parser.add_argument("--keyworded", type=float, default=0.4, help="share of photos with XMP keywords")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bench.data import photoset
    from search.backend import LocalBackend
    from search.engine import SearchEngine

    started = time.monotonic()
    manifest = photoset.materialize(args.work / "photoset", download=False)
    table, fitted = {}, None
    for side in photoset.SPLITS:
        rows = lay_out(manifest, side, args.work / side / "library", args.named, args.keyworded)
        home = args.work / side / "home"
        index(args.work / side / "library", home, args.model)
        engine = SearchEngine(LocalBackend(home))
        engine.text_vector = functools.lru_cache(maxsize=None)(engine.text_vector)  # queries repeat per mode
        images, sets = [r[0] for r in rows], queries(rows)
        sets["words appear nowhere"] = nowhere(engine, *sets["all queries"])
        if fitted is None:  # dev: fit the weight on dev's own queries
            every = {"all queries": sets["all queries"]}
            grid = {(w, p): measure(engine, images, every, (w, p), ("hybrid",))["all queries"]["hybrid"]
                    for w in WEIGHTS for p in POWERS}
            fitted = max(grid, key=lambda f: (grid[f]["R@5"], grid[f]["R@1"], -f[0], -f[1]))
            log.info("dev hybrid R@1/R@5 by (words weight, coverage power): %s -> %s",
                     {f: (round(100 * g["R@1"], 1), round(100 * g["R@5"], 1)) for f, g in grid.items()}, fitted)
        table[side] = measure(engine, images, sets, fitted)
        table[side]["identical"] = (identical(engine, sets["words appear nowhere"][0]),
                                    len(sets["words appear nowhere"][0]))
        table[side]["sizes"] = {name: len(texts) for name, (texts, _) in sets.items()}
        engine.close()
    print(render(table, args.model, fitted, args))
    log.info("%.0f s", time.monotonic() - started)
    return 0


def render(table: dict, model: str, fit: tuple[float, float], args) -> str:
    head = "| queries (dev / held-out) | " + " | ".join(f"{side} {m}" for side in ("dev", "held-out")
                                                          for m in MODES) + " |"
    lines = [f"model {model}; T→I R@1 / R@5 / R@10 (%); words weight {fit[0]:g}, coverage power {fit[1]:g} "
             "fitted on dev; "
             f"{args.named:.0%} of categories in named folders, {args.keyworded:.0%} of photos keyworded", "",
             head, "|" + "---|" * (1 + 2 * len(MODES))]
    for name in ("all queries", "captions", "names", "words appear nowhere"):
        sizes = " / ".join(str(table[s]["sizes"][name]) for s in ("dev", "heldout"))
        cells = []
        for side in ("dev", "heldout"):
            for mode in MODES:
                r = table[side][name].get(mode)
                cells.append("/".join(f"{100 * r[k]:.1f}" for k in ("R@1", "R@5", "R@10")) if r else "")
        lines.append(f"| {name} ({sizes}) | " + " | ".join(cells) + " |")
    same = " / ".join(f"{table[s]['identical'][0]} of {table[s]['identical'][1]}" for s in ("dev", "heldout"))
    lines.append(f"\nwords appear nowhere: hybrid result lists identical to semantic in {same} queries "
                 "(dev / held-out)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
