"""Tags: the folder tree with each folder's top tags, tagging a folder (default or edited vocabulary) with progress,
and browsing the photos of a tag.

Tagging is `search.tag`'s: tags must beat generic captions and stand out from the library, so a photo gets only the
tags that apply; written tags land in the catalog and the vector payloads, where the Search page's tag filter finds
them.
"""

from __future__ import annotations

import os

import streamlit as st

from ui import state
from ui.filters import folder_label
from ui.tagging import TagRequest, load_vocabulary, tag_work
from ui.widgets import Card, date_line, file_name, grid, live_tasks

BROWSE_PAGE = 24
VOCABULARY_HELP = ("Used only when 'Edit the vocabulary' is ticked. One tag a line; `tag: synonym, synonym` adds "
                   "synonyms; `tag | a photo of {}` gives the tag its own prompts; `#` starts a comment line.")
TOP_TAGS = 5


def render() -> None:
    st.title("Tags")
    try:
        services = state.services()
        state.engine()  # friendly "nothing indexed yet" before anything else
        library = state.library()
    except Exception as err:
        state.show_error(err)
        return
    _tree(library)
    _tag_folder(services, library)
    _browse(library)


def _tree(library) -> None:
    st.subheader("Folders and their top tags")
    rows = [{"folder": folder_label(row), "photos": row.photos,
             "top tags": " · ".join(f"{tag} ({n})" for tag, n in library.top_tags(row.folder, TOP_TAGS)) or "—"}
            for row in library.folder_tree()]
    st.dataframe(rows, hide_index=True, width="stretch")
    if not library.tag_counts():
        st.caption("No photo is tagged yet: tag a folder below.")


def _tag_folder(services, library) -> None:
    st.subheader("Tag a folder")
    folders = [row.folder for row in library.folder_tree()]
    labels = {row.folder: folder_label(row) for row in library.folder_tree()}
    with st.form("tag-folder"):
        folder = st.selectbox("Folder (with its subfolders)", folders, format_func=labels.get, key="tag_folder")
        edit = st.checkbox("Edit the vocabulary", key="tag_edit",
                           help="One tag a line; `tag: synonym, synonym`; `tag | prompt template`.")
        text = st.text_area("Vocabulary", _default_vocabulary_text(), height=240, key="tag_vocab",
                            help=VOCABULARY_HELP)
        left, middle, right = st.columns(3)
        top_k = left.number_input("At most N tags per photo (0: no limit)", 0, 50, 0, key="tag_topk")
        fixed = middle.checkbox("Fixed probability threshold", key="tag_fixed",
                                help="Instead of calibrating each tag on the library.")
        threshold = right.slider("Threshold", 0.0, 1.0, 0.5, 0.05, key="tag_threshold")
        submitted = st.form_submit_button("Tag this folder", type="primary",
                                          disabled=bool(services.tasks.running("tag")))
    if submitted and folder:
        _start(services, TagRequest(folder, text if edit else None, int(top_k) or None, threshold if fixed else None))
    live_tasks(services, "tag")
    _last_result(services)


@st.cache_data(show_spinner=False)
def _default_vocabulary_text() -> str:
    """The shipped vocabulary, opening on its tags: the file's header (the format, for people editing the file) is
    left out — the field's help says the same — while the section headings stay. Parses to the same vocabulary."""
    from models.tagging import DEFAULT_VOCABULARY

    return vocabulary_body(DEFAULT_VOCABULARY.read_text(encoding="utf-8"))


def vocabulary_body(text: str) -> str:
    """`text` from its first section heading (`# --- …`) or first tag on: the leading comment block goes."""
    lines = text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines)
                  if line.strip() and (not line.lstrip().startswith("#") or line.lstrip().startswith("# ---"))),
                 len(lines))
    return "".join(lines[first:])


def _start(services, request: TagRequest) -> None:
    try:
        load_vocabulary(request.vocabulary_text)  # every bad line reported now, not from the thread
    except ValueError as err:
        st.error(f"The vocabulary has errors:\n\n```\n{err}\n```")
        return
    services.tasks.start("tag", f"Tagging {request.folder}", tag_work(services, request),
                         on_done=lambda task: services.changed())
    st.rerun()


def _last_result(services) -> None:
    done = [t for t in services.tasks.of_kind("tag") if t.state == "done" and t.result]
    if not done:
        return
    result = done[0].result
    top = " · ".join(f"{tag} ({n})" for tag, n in result["top"]) or "none"
    st.caption(f"Last run, {result['folder']}: {result['tagged']} of {result['photos']} photos tagged. Top tags: {top}")


def short_folder(path: str, keep: int = 2) -> str:
    """The photo's folder as its last `keep` names ("Travel/2023"), with a zero-width break after each separator:
    a long path in a narrow card then wraps between folder names, never inside one (full paths: the tooltip)."""
    parts = [part for part in os.path.dirname(path).split(os.sep) if part]
    shown = parts[-keep:]
    text = "/\u200b".join(shown)
    return ("…/\u200b" if len(parts) > keep else "/") + text


def _browse(library) -> None:
    st.subheader("Browse by tag")
    counts = library.tag_counts()
    if not counts:
        st.caption("Nothing to browse yet.")
        return
    tag = st.selectbox("Tag", [t for t, _ in counts.most_common()], format_func=lambda t: f"{t} ({counts[t]})",
                       key="browse_tag")
    photos = library.with_tag(tag)
    pages = max(1, -(-len(photos) // BROWSE_PAGE))
    page = st.number_input("Page", 1, pages, 1, key="browse_page") if pages > 1 else 1
    shown = photos[(page - 1) * BROWSE_PAGE: page * BROWSE_PAGE]
    try:
        thumbs = state.guard().thumbnails([p.content_hash for p in shown])
    except Exception as err:
        state.show_error(err)
        return
    cards = [Card(p.content_hash, file_name(p.paths[0]) if p.paths else p.content_hash[:12],
                  f"{date_line(p.taken_at, p.paths)}  \n{short_folder(p.paths[0]) if p.paths else ''}",
                  "\n".join([*p.paths, ", ".join(p.tags)])) for p in shown]
    grid(cards, thumbs, key="tagged", switch_to="search_page.py")


if __name__ == "__main__":
    render()
