"""Search: type what is in a photo (with negatives), or start from an image; filter; page; open a photo.

Ranking is `SearchEngine.search`, the same call the CLI makes. A card shows one plain verdict (good or possible
match, the engine's decision) and the words it matched (folder, file name, keyword…); the numbers behind it
(calibrated score, raw cosine) are in the detail view. "No good match" is the engine's verdict, with a way to see
the closest photos anyway. An image query (an upload or "Similar") is shown as the photo itself, not its path.
`?photo=<hash>` and `?path=<indexed path>` open a photo directly — through `MediaGuard`, so a crafted path is
refused before anything is read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import streamlit as st

from indexer.stores.fsnames import from_text
from search.query import build_query
from ui import state
from ui.filters import sidebar_filters
from ui.media import Refused
from ui.widgets import Card, date_line, file_name, grid, verdict, verdict_label

PLACEHOLDER = "e.g.  dog on the beach   ·   sunset + 0.5*clouds   ·   birthday cake - candles"
EXAMPLES = ("dog on the beach", "snowy mountains", "birthday cake", "city at night")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "heic", "heif", "avif", "tif", "tiff", "bmp", "gif"]


# the query and the sidebar's choices survive a run that does not draw them (the detail view, an error)
WIDGETS = ("q", "without", "f_folder", "f_use_dates", "f_dates", "f_tags", "f_types", "f_cameras", "f_limit",
           "closest", "f_collapse")


def render() -> None:
    st.title("Search")
    state.keep_widgets(WIDGETS)
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
        upload = st.file_uploader("…or photos like this image", type=UPLOAD_TYPES,
                                  key=f"upload-{st.session_state.get('upload_round', 0)}")
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
        paths = guard.paths_of(digest)
    except Refused as refusal:
        st.warning(f"That photo is gone from the index ({refusal}).")
        st.session_state.pop("like", None)
        return None
    path = next((from_text(p) for p in paths if os.path.isfile(from_text(p))), None)  # (stored names are text)
    if path is None:  # indexed, but its file was deleted or moved since (the index catches up on its next scan)
        st.warning(f"{file_name(paths[0])} is no longer on disk, so there is nothing to compare with; "
                   "the index drops it on its next scan (or at once under `--watch`).")
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
    st.session_state.setdefault("upload_names", {})[str(target)] = Path(upload.name).name  # shown in the header
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
        _nothing(page, chosen.filter, query, chosen.closest)
        return
    if page.no_good_match:
        st.warning("No good match — these are possible matches at best, not necessarily what you described."
                   if not chosen.closest else
                   "No good match — these are the closest photos, not necessarily what you described.")
        if not chosen.closest:
            st.button("Show the closest photos anyway", key="show-closest",
                      on_click=lambda: st.session_state.update(closest=True))
    _header(guard, query, offset, len(results))
    described = describe(query).replace("**", "")  # for the detail view's "Match" row (plain text)
    st.session_state["scores"] = {r.content_hash: (described, r.calibrated, r.score, verdict_label(r)[0])
                                  for r in results}
    cards = [Card(r.content_hash, file_name(r.path), _score_line(r), "\n".join(r.paths + r.duplicates))
             for r in results]
    grid(cards, guard.thumbnails([r.content_hash for r in results]), key="results")
    _pager(offset, limit, more)


def _header(guard, query, offset: int, shown: int) -> None:
    """"Results 1–24 for **beach - people**"; an image query shows the photo's thumbnail beside its name."""
    span = f"Results {offset + 1}–{offset + shown} for {describe(query)}"
    images = [t.image for t in query.positive if t.image is not None]
    thumb = _query_thumbnail(guard, images[0]) if images else None
    if not thumb:
        st.caption(span)
        return
    thumb_col, text_col = st.columns([1, 11], vertical_alignment="center")
    thumb_col.image(thumb, width=56)
    text_col.caption(span)


def describe(query) -> str:
    """The query in words: its text terms as typed, and its images by file name (never by path)."""
    uploaded = st.session_state.get("upload_names", {})
    images = [uploaded.get(str(t.image)) or file_name(str(t.image)) for t in query.positive if t.image is not None]
    unlike = [uploaded.get(str(t.image)) or file_name(str(t.image)) for t in query.negative if t.image is not None]
    words = query_words(query)
    parts = [f"photos like **{', '.join(images)}**"] if images else []
    parts += [f"**{words}**"] if words else []
    text = " and ".join(parts)
    return text + (f", unlike **{', '.join(unlike)}**" if unlike else "")


def query_words(query) -> str:
    """The text part of a query as the user would write it (image terms left out: they are shown as pictures)."""
    parts = []
    for term in query.terms:
        if term.text is None:
            continue
        weight = abs(term.weight)
        text = f"{weight:g}*{term.text}" if weight != 1 else term.text
        parts.append(f"- {text}" if term.weight < 0 else f"+ {text}")
    return " ".join(parts).removeprefix("+ ")


def _query_thumbnail(guard, image: Path) -> bytes | None:
    """The indexed thumbnail of a query photo (an upload is named by its hash), else the small image itself."""
    digest = st.session_state.get("like")
    if digest and image == _like_path(guard, digest):
        return guard.thumbnail(digest)
    import io

    from indexer.scan.decode import DecodeError, decode_image, to_rgb

    try:
        picture = to_rgb(decode_image(image.read_bytes(), min_side=112, name=image.name).image)
    except (OSError, DecodeError):
        return None
    picture.thumbnail((112, 112))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _like_path(guard, digest: str) -> Path | None:
    try:
        return Path(guard.paths_of(digest)[0])
    except Refused:
        return None


def _score_line(result) -> str:
    dupes = f" · +{len(result.duplicates)} similar" if result.duplicates else ""
    when = date_line(result.taken_at, result.paths)
    return f"{verdict(result)}  \n{when}{dupes}{matched_line(result)}"


def matched_line(result) -> str:
    """'matched: folder "Egypt 2019", keyword "Anna"': the words people gave the photo that the query found."""
    matched = getattr(result, "matched", None)
    return "  \nmatched: " + ", ".join(matched) if matched else ""


def _nothing(page, flt, query, closest: bool) -> None:
    """Nothing to show. With "closest" on every photo was a candidate, so the filters (or the page) left nothing:
    offering the closest photos then would do nothing (found by a breaker pass)."""
    if page.no_good_match and not closest:
        st.info(f"No good match for {describe(query)}. Try other words or fewer filters — or look at the closest "
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
