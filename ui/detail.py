"""One photo: the image (upright, screen-sized), its metadata and tags, and its nearest neighbours.

Neighbours are an image → image search through the same engine ("more like this" with the photo itself excluded),
so what is shown here is exactly what the Similar button would list.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from search.query import build_query
from ui.media import Refused
from ui.widgets import Card, date_text, file_name, grid, is_file_date, more_like, verdict_label

NEIGHBOURS = 8


def close_detail() -> None:
    for key in ("detail", "detail_path"):
        st.session_state.pop(key, None)
    for key in ("photo", "path"):
        st.query_params.pop(key, None)


def detail_view(engine, guard, library, digest: str, path: str | None = None, collapse: bool = True) -> None:
    st.button("← Back to results", key="back", on_click=close_detail)
    try:
        where, jpeg = guard.display(digest, path)
    except Refused as refusal:
        st.error(f"Cannot show this photo: {refusal}.")
        return
    photo = library.photos.get(digest)
    left, right = st.columns([3, 2])
    left.image(jpeg, caption=where, width="stretch")
    with right:
        st.subheader(file_name(where))
        st.table({**_match(digest), **_metadata(where, photo)})
        if photo is not None and photo.tags:
            st.markdown(" ".join(f":blue-badge[{tag}]" for tag in photo.tags))
        st.button("Search for more like this", key="detail-like", on_click=_search_like, args=(digest,))
    st.subheader("Nearest neighbours")
    _neighbours(engine, guard, where, collapse)


def _search_like(digest: str) -> None:
    close_detail()
    more_like(digest)


def _match(digest: str) -> dict[str, str]:
    """How this photo scored in the search it was opened from: the verdict the card showed and the numbers behind
    it (the engine's calibrated score, and the raw cosine similarity the store ranked by)."""
    found = (st.session_state.get("scores") or {}).get(digest)
    if found is None:
        return {}
    query, calibrated, cosine, label = found
    return {"Match": f"{label} for “{query}” · score {calibrated:.0%} · cosine {cosine:.3f}"}


def _metadata(where: str, photo) -> dict[str, str]:
    if photo is None:
        return {"Path": where}
    file_dated = is_file_date(photo.taken_at, photo.paths)
    rows = {
        "Path": where,
        "Other copies": "\n".join(p for p in photo.paths if p != where) or "—",
        "File date (no date in EXIF)" if file_dated else "Taken": date_text(photo.taken_at) or "unknown",
        "Size": f"{photo.width} × {photo.height}" if photo.width else "unknown",
        "Camera": photo.camera or "unknown",
        "Type": ", ".join(photo.exts) or "—",
        "Content hash": photo.content_hash[:16] + "…",
    }
    return rows


def _neighbours(engine, guard, where: str, collapse: bool) -> None:
    try:
        page = engine.search(build_query(like=[Path(where)]), limit=NEIGHBOURS, min_score=0.0,
                             collapse_duplicates=collapse)
    except Exception as err:  # e.g. the owner stopped between two clicks
        from ui.state import show_error

        show_error(err)
        return
    if not page.results:
        st.caption("No other photo in the library yet.")
        return
    cards = [Card(r.content_hash, file_name(r.path), f"{verdict_label(r)[0]} · cosine {r.score:.3f}",
                  "\n".join(r.paths))
             for r in page.results]
    grid(cards, guard.thumbnails([r.content_hash for r in page.results]), key="neighbours")
