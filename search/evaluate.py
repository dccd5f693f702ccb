"""`python -m search.evaluate CAPTIONS`: text → image recall of the *engine's own ranking* on an indexed library.

The captions' images must be indexed (any folder of the library); each caption is searched exactly as a user's
query is (`SearchEngine.search`: prompt ensembling, the vector store's ranking; collapse off and no score cutoff,
so recall measures ranking alone), over the whole library. One ranking path: the test suite checks that these
numbers equal `models.retrieval.recall_at_k` on the stored vectors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexer.scan.hashing import hash_file
from search.engine import SearchEngine
from search.query import build_query

KS = (1, 5, 10)


def engine_recall(engine: SearchEngine, images: list[Path], captions: list[str], caption_image: list[int],
                  ks: tuple[int, ...] = KS, mode: str = "hybrid") -> dict:
    """{'text_to_image': {'R@1': …}, 'captions': n, 'skipped': n} — captions of unindexed images are skipped.
    `mode`: SearchEngine's ('hybrid', what users get; 'semantic'; 'words')."""
    hashes = [_hash(path) for path in images]
    hits = {k: 0 for k in ks}
    used = skipped = 0
    for caption, owner in zip(captions, caption_image, strict=True):
        if hashes[owner] is None or not caption:
            skipped += 1
            continue
        page = engine.search(build_query(caption), limit=max(ks), min_score=0.0, collapse_duplicates=False,
                             mode=mode)
        ranked = [r.content_hash for r in page.results]
        used += 1
        for k in ks:
            hits[k] += hashes[owner] in ranked[:k]
    recall = {f"R@{k}": hits[k] / used if used else float("nan") for k in ks}
    return {"text_to_image": recall, "captions": used, "skipped": skipped}


def _hash(path: Path) -> str | None:
    try:
        return hash_file(path)
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captions", type=Path, help="CSV/TSV/JSONL of image path, caption")
    parser.add_argument("--images-root", type=Path, help="base of relative image paths (default: the file's folder)")
    parser.add_argument("--home", help="data home (default: $LOUPE_HOME or ~/.loupe)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from models.evaluate.datasets import captions_file
    from models.home import data_home

    try:
        dataset = captions_file(args.captions, args.images_root)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    engine = SearchEngine.open(data_home(args.home))
    try:
        result = engine_recall(engine, dataset.images, dataset.captions, dataset.caption_image)
    finally:
        engine.close()
    if args.json:
        print(json.dumps(result))
    else:
        recall = result["text_to_image"]
        print(" | ".join(f"T→I {k} {v:.1%}" for k, v in recall.items()) +
              f"  ({result['captions']} captions, {result['skipped']} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
