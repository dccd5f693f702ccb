"""Search: type what is in a photo (with negatives), or start from an image; filter; page; open a photo.

Ranking is `SearchEngine.search`, the same call the CLI makes. Scores shown are the engine's calibrated probability
(how much better the query fits than a generic caption) and the raw cosine; "no good match" is the engine's verdict,
with a way to see the closest photos anyway. `?photo=<hash>` and `?path=<indexed path>` open a photo directly —
through `MediaGuard`, so a crafted path is refused before anything is read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import streamlit as st

from search.query import build_query
from ui import state
from ui.filters import sidebar_filters
from ui.media import Refused
from ui.widgets import Card, date_text, file_name, grid

PLACEHOLDER = "e.g.  dog on the beach   ·   sunset + 0.5*clouds   ·   birthday cake - candles"
EXAMPLES = ("dog on the beach", "snowy mountains", "birthday cake", "city at night")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif", "tif", "tiff", "bmp", "gif"]


def render() -> None:
    st.title("Search")
    try:
        engine, library, guard = state.engine(), state.library(), state.guard()
    except Exception as err:  # no index yet, store locked, owner gone, model missing…
        state.show_error(err)
        return
    chosen = sidebar_filters(library)
    if _open_from_url(guard):
        from ui.detail import detail_view

        detail_view(engine, guard, library, st.session_state["detail"], st.session_state.get("detail_path"),
                    chosen.collapse)
        return
    query = _query_form(guard)
    if query is None:
        _intro(library)
        return
    _results(engine, guard, query, chosen)


def _open_from_url(guard) -> bool:
    """A photo named by the URL (`?photo=HASH` or `?path=PATH`) or by a click; refusals are shown, not served."""
    params = st.query_params
    try:
        if "path" in params:
            raw = params["path"]
            st.session_state["detail"], st.session_state["detail_path"] = guard.hash_of(raw), raw
        elif "photo" in params:
            guard.paths_of(params["photo"])
            st.session_state["detail"] = params["photo"]
    except Refused as refusal:
        st.error(f"Refused: {refusal}. Loupe only shows photos that are in its index.")
        st.session_state.pop("detail", None)
        return False
    return bool(st.session_state.get("detail"))


def _query_form(guard):
    """The query from the text boxes, the uploaded image and a "more like this" photo; None when all are empty."""
    if "q" not in st.session_state and "q" in st.query_params:
        st.session_state["q"] = st.query_params["q"]
    text_col, image_col = st.columns([3, 2])
    with text_col:
        text = st.text_input("Describe the photo", key="q", placeholder=PLACEHOLDER,
                             help="Weighted terms: `beach + 0.5*sunset`; `- word` pushes results away.")
        without = st.text_input("Without", key="without", placeholder="people, cars",
                                help="Comma-separated things the photos should not show.")
    with image_col:
        upload = st.file_uploader("…or photos like this image", type=UPLOAD_TYPES, key="upload")
        like = _like_photo(guard)
    likes = [p for p in (like, _saved_upload(upload)) if p is not None]
    negatives = [part.strip() for part in without.split(",") if part.strip()]
    if not text.strip() and not likes:
        return None
    try:
        return build_query(text, without=negatives, like=likes)
    except ValueError as err:
        state.show_error(err)
        return None


def _like_photo(guard) -> Path | None:
    """The photo chosen with "Similar" (checked against the index), with a way to drop it."""
    digest = st.session_state.get("like")
    if not digest:
        return None
    try:
        path = guard.paths_of(digest)[0]
    except Refused as refusal:
        st.warning(f"That photo is gone from the index ({refusal}).")
        st.session_state.pop("like", None)
        return None
    thumb = guard.thumbnail(digest)
    if thumb:
        st.image(thumb, width=120)
    st.caption(f"More like **{file_name(path)}**")
    st.button("✕ Clear image", key="clear-like", on_click=lambda: st.session_state.pop("like", None))
    return Path(path)


def _saved_upload(upload) -> Path | None:
    """Uploads become a temp file named by their hash (the engine reads an image term from a path; an uploaded
    photo that is already indexed then costs no model call)."""
    if upload is None:
        return None
    data = upload.getvalue()
    folder = Path(tempfile.gettempdir()) / f"loupe-ui-uploads-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    suffix = Path(upload.name).suffix.lower()[:8]
    target = folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    if not target.exists():
        target.write_bytes(data)
    return target


def _intro(library) -> None:
    st.info(f"{len(library)} photos indexed in {len(library.folder_tree())} folders. Type what you remember of a "
            "photo — a scene, an object, a mood — or drop in an image to find similar ones.")
    cols = st.columns(len(EXAMPLES))
    for col, example in zip(cols, EXAMPLES, strict=True):
        col.button(example, key=f"example-{example}", on_click=lambda e=example: st.session_state.update(q=e))


def _results(engine, guard, query, chosen) -> None:
    limit = chosen.limit
    signature = (query, chosen)
    if st.session_state.get("signature") != signature:
        st.session_state["signature"], st.session_state["offset"] = signature, 0
    offset = st.session_state.get("offset", 0)
    try:
        page = engine.search(query, filter=chosen.filter, limit=limit + 1, offset=offset,
                             min_score=0.0 if chosen.closest else None, collapse_duplicates=chosen.collapse)
    except Exception as err:
        state.show_error(err)
        return
    results, more = page.results[:limit], len(page.results) > limit
    if not results:
        _nothing(page, chosen.filter)
        return
    if page.no_good_match:
        st.warning("No good match — these are possible matches at best, not necessarily what you described."
                   if not chosen.closest else
                   "No good match — these are the closest photos, not necessarily what you described.")
    st.caption(f"Results {offset + 1}–{offset + len(results)} for **{page.query}**")
    cards = [Card(r.content_hash, file_name(r.path), _score_line(r), "\n".join(r.paths + r.duplicates))
             for r in results]
    grid(cards, guard.thumbnails([r.content_hash for r in results]), key="results")
    _pager(offset, limit, more)


def _score_line(result) -> str:
    mark = {"good": "✓ ", "possible": "possible · "}.get(result.tier, "")  # the engine's decision (models.relevance)
    dupes = f" · +{len(result.duplicates)} similar" if result.duplicates else ""
    return f"{mark}{result.calibrated:.0%} match · cos {result.score:.3f}  \n{date_text(result.taken_at)}{dupes}"


def _nothing(page, flt) -> None:
    if page.no_good_match:
        st.info(f"No good match for **{page.query}**. Try other words or fewer filters — or look at the closest "
                "photos anyway.")
        st.button("Show the closest photos anyway", key="show-closest",
                  on_click=lambda: st.session_state.update(closest=True))
    else:
        st.info("No photo matches these filters." if flt else "No results.")


def _pager(offset: int, limit: int, more: bool) -> None:
    def go(to: int) -> None:
        st.session_state["offset"] = max(0, to)

    prev, middle, nxt = st.columns([1, 2, 1])
    prev.button("← Previous", key="prev", disabled=offset == 0, on_click=go, args=(offset - limit,))
    middle.caption(f"Page {offset // limit + 1}")
    nxt.button("Next →", key="next", disabled=not more, on_click=go, args=(offset + limit,))


if __name__ == "__main__":
    render()
