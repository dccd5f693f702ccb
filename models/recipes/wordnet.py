"""The WordNet 3.0 noun database (Debian's `wordnet-base`), read directly from its `data.noun` file.

Only the recipe that builds offline-lite's shipped text head needs WordNet (at build time): the hierarchy it learns
from is written into `models/data/offline_lite_concepts.json`, which ships, so tests and users never need WordNet.

Where the database is looked for: `$LOUPE_WORDNET_DIR`, `/usr/share/wordnet` (after `apt-get install wordnet-base`),
or the repo's git-ignored `scratch/offline/wordnet/` (`apt-get download wordnet-base && dpkg-deb -x *.deb x` and
copy `x/usr/share/wordnet` there). The file format is documented in `wndb(5WN)`: one synset per line,
`offset lex_filenum ss_type w_cnt word lex_id … p_cnt [ptr_symbol offset pos source/target]… | gloss`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "LOUPE_WORDNET_DIR"
SEARCH = (Path("/usr/share/wordnet"), Path(__file__).resolve().parents[2] / "scratch" / "offline" / "wordnet")
HYPERNYM, INSTANCE_HYPERNYM, HYPONYM, INSTANCE_HYPONYM = "@", "@i", "~", "~i"


class WordNetMissing(RuntimeError):
    """No WordNet database on this machine."""


@dataclass
class Synset:
    wnid: str  # 'n02084071': part of speech + 8-digit offset, the id ImageNet uses
    lex_file: int  # lexicographer file number (noun.Tops = 3, noun.animal = 5, noun.artifact = 6 …)
    words: list[str]  # lemmas, underscores turned into spaces, in WordNet's order (most frequent sense first)
    gloss: str
    hypernyms: list[str] = field(default_factory=list)  # wnids, instance hypernyms included
    hyponyms: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.words[0]


def locate(directory: str | os.PathLike | None = None) -> Path:
    candidates = [Path(directory)] if directory else []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates += SEARCH
    for folder in candidates:
        if (folder / "data.noun").is_file():
            return folder
    raise WordNetMissing(
        "WordNet 3.0 not found (looked in " + ", ".join(map(str, candidates)) + "). Install it with "
        "`apt-get install wordnet-base`, or `apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb DIR` "
        f"and set {ENV_VAR}=DIR/usr/share/wordnet")


def parse_line(line: str) -> Synset | None:
    """One `data.noun` line → Synset; license header lines (leading spaces) → None."""
    if not line or line.startswith(" "):
        return None
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lex_file, ss_type = fields[0], int(fields[1]), fields[2]
    count = int(fields[3], 16)
    words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
    words = [w.split("(")[0] for w in words]  # adjective markers like "(a)" never occur in nouns, but be safe
    at = 4 + 2 * count
    pointers = int(fields[at])
    synset = Synset(f"{'n' if ss_type == 'n' else ss_type}{offset}", lex_file, words, gloss.strip())
    for i in range(pointers):
        symbol, target, pos = fields[at + 1 + 4 * i: at + 4 + 4 * i]
        if pos != "n":
            continue
        if symbol in (HYPERNYM, INSTANCE_HYPERNYM):
            synset.hypernyms.append(f"n{target}")
        elif symbol in (HYPONYM, INSTANCE_HYPONYM):
            synset.hyponyms.append(f"n{target}")
    return synset


def read_nouns(directory: str | os.PathLike | None = None) -> dict[str, Synset]:
    """Every noun synset by wnid."""
    path = locate(directory) / "data.noun"
    out = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            synset = parse_line(line.rstrip("\n"))
            if synset is not None:
                out[synset.wnid] = synset
    return out


def ancestors(nouns: dict[str, Synset], wnid: str) -> dict[str, int]:
    """Every hypernym of `wnid` (transitively) with its shortest distance; `wnid` itself at 0."""
    out, frontier = {wnid: 0}, [wnid]
    while frontier:
        nxt = []
        for node in frontier:
            for parent in nouns[node].hypernyms:
                if parent not in out:
                    out[parent] = out[node] + 1
                    nxt.append(parent)
        frontier = nxt
    return out


def depth(nouns: dict[str, Synset], wnid: str) -> int:
    """Shortest number of hypernym steps from `wnid` up to a root (entity is 0)."""
    steps, frontier, seen = 0, [wnid], {wnid}
    while frontier:
        if any(not nouns[n].hypernyms for n in frontier):
            return steps
        frontier = [p for n in frontier for p in nouns[n].hypernyms if p not in seen]
        seen.update(frontier)
        steps += 1
    return steps
