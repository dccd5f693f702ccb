"""Query syntax: weighted positive and negative prompts, inline or from flags.

Inline: terms joined by `+` and `-`, each optionally weighted as `WEIGHT*text`:

    beach + 0.5*sunset - people        beach, half as much sunset, no people
    "red car" - 2*night                a red car, strongly not at night

Flags say the same: `"beach" --and "sunset" --not "people"`; `--like PATH` adds an image as a term
(`--unlike PATH` subtracts one). A `+`/`-` inside a word ("t-shirt", "c++") is not an operator: operators need
spaces around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SPLIT = re.compile(r"\s+([+-])\s+")
_DANGLING = re.compile(r"(^[+-]\s)|(\s[+-]$)")
_WEIGHTED = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*\*\s*(.+?)\s*$")


class QueryError(ValueError):
    """A query that cannot be run as written (an operator without a term, a zero weight, nothing positive)."""


@dataclass(frozen=True)
class Term:
    weight: float  # negative for "not"
    text: str | None = None
    image: Path | None = None


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = field(default_factory=tuple)

    @property
    def positive(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.weight > 0)

    @property
    def negative(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.weight < 0)

    def describe(self) -> str:
        parts = []
        for term in self.terms:
            what = term.text if term.text is not None else f"<{term.image}>"
            sign = "-" if term.weight < 0 else "+"
            parts.append(f"{sign} {abs(term.weight):g}*{what}" if abs(term.weight) != 1 else f"{sign} {what}")
        return " ".join(parts).lstrip("+ ")


def parse_inline(text: str) -> list[Term]:
    """`beach + 0.5*sunset - people` → [Term(1, beach), Term(0.5, sunset), Term(-1, people)]."""
    text = text.strip()
    if not text:
        return []
    if _DANGLING.search(text):
        raise QueryError(f"operator without a term in query {text!r}")
    pieces = _SPLIT.split(text)
    terms, sign = [], 1.0
    for i, piece in enumerate(pieces):
        if i % 2 == 1:
            sign = -1.0 if piece == "-" else 1.0
            continue
        if not piece.strip():
            raise QueryError(f"empty term in query {text!r}")
        weighted = _WEIGHTED.match(piece)
        weight, phrase = (float(weighted.group(1)), weighted.group(2)) if weighted else (1.0, piece.strip())
        if weight == 0:
            raise QueryError(f"weight 0 makes {phrase!r} do nothing")
        terms.append(Term(sign * weight, text=phrase))
    return terms


def build_query(text: str | None = None, *, also: list[str] = (), without: list[str] = (),
                like: list[Path] = (), unlike: list[Path] = ()) -> Query:
    """One `Query` from the inline text and the flag forms; at least one positive term is required."""
    terms = parse_inline(text or "")
    terms += [t for phrase in also for t in parse_inline(phrase)]
    terms += [Term(-abs(t.weight), text=t.text) for phrase in without for t in parse_inline(phrase)]
    terms += [Term(1.0, image=Path(p)) for p in like] + [Term(-1.0, image=Path(p)) for p in unlike]
    query = Query(tuple(terms))
    if not query.positive:
        raise QueryError("a query needs at least one positive term (text or --like image)")
    return query
