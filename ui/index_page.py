"""Index: what the index holds (indexed, pending, failed with reasons, deleted), which model and stores it uses, which
folders are followed — and adding a folder, as a background job with a progress bar.

The numbers are `indexer.owner.status.status_report`, the same dict `python -m indexer status --json` prints and the
owner's `GET /status` returns, so the page, the CLI and the API can never disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ui import state
from ui.jobs import follow_job, index_work
from ui.widgets import live_tasks


def render() -> None:
    st.title("Index")
    try:
        services = state.services()
        status = services.status()
    except Exception as err:
        state.show_error(err)
        return
    st.caption(f"Data home `{services.home}` — {services.describe()}")
    _counts(status)
    _failures(status)
    _model_and_stores(status)
    _folders(services, status)
    _add_folder(services)


def _counts(status: dict) -> None:
    files = status.get("files", {})
    collection = status.get("collection") or {}
    cols = st.columns(6)
    cols[0].metric("Indexed", files.get("indexed", 0))
    cols[1].metric("Pending", files.get("pending", 0))
    cols[2].metric("Failed", files.get("failed", 0))
    cols[3].metric("Moved", files.get("moved", 0), help="renamed or moved files (their old paths)")
    cols[4].metric("Deleted", files.get("deleted", 0))
    cols[5].metric("Photos in the vector store", collection.get("points") if collection.get("points") is not None
                   else "—", help="distinct contents: copies of one photo share a vector")
    if not files.get("indexed") and not files.get("pending"):
        st.info("Nothing is indexed yet: add a folder below (or run `python -m indexer FOLDER`).")


def _failures(status: dict) -> None:
    failures = status.get("files", {}).get("failures", [])
    if not failures:
        return
    with st.expander(f"Failed files ({status['files'].get('failed', len(failures))}) and why"):
        st.dataframe([{"file": f["path"], "reason": f["reason"]} for f in failures], hide_index=True)
        st.caption("A failed file is retried when it changes on disk.")


def _model_and_stores(status: dict) -> None:
    st.subheader("Model and stores")
    collection = status.get("collection") or {}
    store = status.get("store") or {}
    rows = {
        "Model": status.get("model") or "—",
        "Text tower": status.get("text_version") or "the base model's (not tuned)",
        "Collection": f"{collection.get('name', '—')} ({collection.get('status', '—')})",
        "Image tower": f"{collection.get('image_tower_id', '—')} · {collection.get('dim', '—')}-d",
        "Vector store": f"{store.get('kind', '—')} · {store.get('where', '')}",
        "Catalog": (status.get("catalog") or {}).get("where", "—"),
    }
    st.table(rows)
    others = [c for c in status.get("collections", []) if c.get("name") != collection.get("name")]
    if others:
        st.caption("Other collections: " + ", ".join(f"{c['name']} ({c['status']}, {c['model']})" for c in others))


def _folders(services, status: dict) -> None:
    st.subheader("Folders")
    roots = _roots(status)
    watching = bool(status.get("watching"))
    if roots:
        st.dataframe(_root_rows(roots, status.get("roots", []), watching), hide_index=True,
                     column_config={"followed": st.column_config.CheckboxColumn("followed")})
    else:
        st.caption("No folder is indexed yet.")
    if not services.can_watch:
        state_text = "follows changes" if watching else "does not follow changes (no --watch)"
        st.caption(f"The owner of the data home {state_text}.")
        return
    if services.watching:
        st.success("Following changes: new, changed, moved and deleted photos are picked up as they happen.")
        st.button("Stop following changes", key="watch-stop", on_click=services.stop_watching)
    else:
        st.button("Follow changes in these folders", key="watch-start", on_click=_follow, args=(services, roots),
                  disabled=not roots)
    if getattr(services, "watch_error", None):
        st.error(f"The watcher stopped: {services.watch_error}")


def _roots(status: dict) -> list[str]:
    """The folders the user added (recorded by the indexer), plus any the owner follows; for an index made before
    roots were recorded, the folder that holds every photo (or, when that is the filesystem root, the top folders)."""
    roots = sorted(set(status.get("indexed_roots") or []) | set(status.get("roots") or []))
    if roots:
        return roots
    try:
        library = state.library()
    except Exception:  # noqa: BLE001  (nothing indexed yet: nothing to list)
        return []
    common = library.root
    return [common] if common and common != os.sep else library.top_folders()


def _root_rows(roots: list[str], followed: list[str], watching: bool) -> list[dict]:
    try:
        counts = state.library().folder_counts()
    except Exception:  # noqa: BLE001
        counts = {}
    rows = []
    for root in roots:
        inside = root.rstrip(os.sep) + os.sep
        rows.append({"folder": root, "photos": counts.get(root, 0),
                     "subfolders": sum(1 for folder in counts if folder.startswith(inside)),
                     "followed": watching and any(root == f or root.startswith(f.rstrip(os.sep) + os.sep)
                                                  for f in followed)})
    return rows


def _follow(services, folders: list[str]) -> None:
    """Start the watcher (over `folders` too); its catch-up scan shows as an index task like any other."""
    job = services.start_watching(folders)
    if job is not None:
        services.tasks.start("index", "Catching up with changes", follow_job(services, job),
                             on_done=lambda task: services.changed())


def _add_folder(services) -> None:
    st.subheader("Add a folder")
    with st.form("add-folder", clear_on_submit=False, border=False):
        raw = st.text_input("Folder to index", key="add-folder-path", placeholder="/home/me/Pictures")
        submitted = st.form_submit_button("Index this folder", type="primary")
    if submitted:
        _submit(services, raw)
    live_tasks(services, "index")


def _submit(services, raw: str) -> None:
    folder = Path(raw.strip()).expanduser()
    if not raw.strip() or not folder.is_absolute() or not folder.is_dir():  # relative to what? the UI's cwd: no
        st.error(f"Not a folder: `{raw}`. Give the absolute path of a folder with photos.")
        return
    folder = folder.resolve()
    services.tasks.start("index", f"Indexing {folder}", index_work(services, [str(folder)]),
                         on_done=lambda task: services.changed())
    st.rerun()


if __name__ == "__main__":
    render()
