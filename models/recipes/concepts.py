"""offline-lite's concept hierarchy from WordNet 3.0 and ImageNet's synsets: `models/data/offline_lite_concepts.json`.

    python -m models.recipes.concepts [--wordnet DIR] [--out FILE]

Every ImageNet-1k class is a WordNet noun synset, so WordNet says which classes a broad word covers. Concepts:

- `class`: the 1000 classes, in classifier order, each its own only member, text = timm's description
  ("tabby, tabby cat: a cat with a grey or tawny coat …");
- `broader`: every hypernym of some class at depth ≥ `MIN_DEPTH` from `entity` ("animal" has 398 member classes,
  "vehicle" 67, "food" 26). The top levels (entity, physical entity, object, whole, …) are left out: a query near
  them would spread over nearly every class, which is the "hub" the issue warns about;
- `narrower`: hyponyms of a class that are neither classes nor hypernyms of one ("puppy", "espresso" kinds …),
  whose members are the classes they descend from: vocabulary the 1000 names lack.

Text of a non-class concept: up to 4 lemmas and the first clause of the gloss, in the format of the class texts.
The output is deterministic (sorted by kind, then wnid). It is read by `models.offline_lite` at run time; WordNet
is only needed to rebuild it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from models.recipes.imagenet_text import class_descriptions, class_ids
from models.recipes.wordnet import ancestors, depth, read_nouns

log = logging.getLogger(__name__)
MIN_DEPTH = 4
FORMAT = "loupe-offline-lite-concepts"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "offline_lite_concepts.json"


def concept_text(words: list[str], gloss: str) -> str:
    return ", ".join(words[:4]) + ": " + gloss.split(";")[0].strip()


def build_concepts(wordnet_dir: str | None = None) -> dict:
    nouns = read_nouns(wordnet_dir)
    ids = class_ids()
    missing = [w for w in ids if w not in nouns]
    if missing:
        raise RuntimeError(f"WordNet lacks {len(missing)} ImageNet synsets (e.g. {missing[0]}): not WordNet 3.0?")
    classes = set(ids)
    broader: dict[str, list[int]] = {}
    for c, wnid in enumerate(ids):
        for parent in ancestors(nouns, wnid):
            if parent not in classes:
                broader.setdefault(parent, []).append(c)
    narrower: dict[str, set[int]] = {}
    for c, wnid in enumerate(ids):
        stack = [wnid]
        while stack:
            node = stack.pop()
            for child in nouns[node].hyponyms:
                if child in classes or child in broader:
                    continue
                if c not in narrower.setdefault(child, set()):
                    narrower[child].add(c)
                    stack.append(child)
    concepts = [{"wnid": w, "kind": "class", "text": d, "members": [c]}
                for c, (w, d) in enumerate(zip(ids, class_descriptions(), strict=True))]
    for wnid in sorted(broader):
        if depth(nouns, wnid) >= MIN_DEPTH:
            s = nouns[wnid]
            concepts.append({"wnid": wnid, "kind": "broader", "text": concept_text(s.words, s.gloss),
                             "members": sorted(broader[wnid])})
    for wnid in sorted(narrower):
        s = nouns[wnid]
        concepts.append({"wnid": wnid, "kind": "narrower", "text": concept_text(s.words, s.gloss),
                         "members": sorted(narrower[wnid])})
    return {"format": FORMAT, "classes": len(ids), "source": "WordNet 3.0 (Debian wordnet-base) + timm ImageNetInfo",
            "min_depth": MIN_DEPTH, "concepts": concepts}


def write_concepts(data: dict, out: Path = DEFAULT_OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.recipes.concepts", description=__doc__.split("\n")[0])
    parser.add_argument("--wordnet", help="folder holding WordNet's data.noun (default: see models.recipes.wordnet)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = build_concepts(args.wordnet)
    kinds = [c["kind"] for c in data["concepts"]]
    write_concepts(data, args.out)
    log.info("wrote %s: %d concepts (%d classes, %d broader, %d narrower)", args.out, len(kinds),
             kinds.count("class"), kinds.count("broader"), kinds.count("narrower"))


if __name__ == "__main__":
    main()
