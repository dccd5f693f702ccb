"""Pieces several pages share: the thumbnail grid, the progress of background tasks, small formatters.

Images reach Streamlit only as bytes that `MediaGuard` handed out; a card's buttons set session state (open the
detail view, "more like this") instead of carrying paths around.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import streamlit as st

from ui.jobs import Task

COLUMNS = 4
PLACEHOLDER = ":material/image:"


@dataclass(frozen=True)
class Card:
    content_hash: str
    title: str  # file name
    caption: str  # score line, date…
    tooltip: str = ""


def open_detail(digest: str) -> None:
    """Show one photo; the URL names it by hash (`?photo=`) so the view can be bookmarked or reloaded."""
    st.session_state["detail"] = digest
    st.session_state.pop("detail_path", None)
    st.query_params.pop("path", None)
    st.query_params["photo"] = digest


def more_like(digest: str) -> None:
    st.session_state["like"] = digest
    st.session_state["offset"] = 0
    st.session_state.pop("detail", None)
    st.query_params.pop("photo", None)


def _go(action, digest: str, page: str | None) -> None:
    action(digest)
    if page is not None:
        st.session_state["switch_to"] = page  # app.py switches pages (not allowed inside a callback)


def grid(cards: Sequence[Card], thumbnails: dict[str, bytes | None], key: str, columns: int = COLUMNS,
         switch_to: str | None = None) -> None:
    """Thumbnails in rows of `columns`, each with its caption and two actions (on the page `switch_to`, if given:
    the detail view and "more like this" live on the Search page)."""
    for start in range(0, len(cards), columns):
        row = st.columns(columns)
        for col, card in zip(row, cards[start:start + columns], strict=False):
            with col, st.container(border=True):
                thumb = thumbnails.get(card.content_hash)
                if thumb:
                    st.image(thumb, width="stretch")
                else:
                    st.markdown(f"{PLACEHOLDER} no thumbnail")
                st.markdown(f"**{card.title}**  \n{card.caption}", help=card.tooltip or None)
                left, right = st.columns(2)
                left.button("Details", key=f"{key}-open-{card.content_hash}", on_click=_go,
                            args=(open_detail, card.content_hash, switch_to), width="stretch")
                right.button("Similar", key=f"{key}-like-{card.content_hash}", on_click=_go,
                             args=(more_like, card.content_hash, switch_to), width="stretch",
                             help="more like this photo")


def file_name(path: str) -> str:
    return os.path.basename(path) or path


def date_text(value: str | float | None) -> str:
    """ISO 8601 or unix seconds → '2023-06-01'; '' when unknown."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, tz=timezone.utc)  # the index stores dates taken as UTC
    else:
        moment = datetime.fromisoformat(value)
    return moment.strftime("%Y-%m-%d")


def task_status(task: Task) -> None:
    """A progress bar while running; the outcome afterwards."""
    if task.running:
        st.progress(task.progress, text=f"{task.label}: {task.message or 'starting…'}")
    elif task.state == "done":
        st.success(f"{task.label}: done. {task.message}")
    else:
        st.error(f"{task.label} failed: {task.error}")


def live_tasks(services, kind: str, show_last: bool = True) -> None:
    """Progress of this kind's tasks, refreshed every second while one runs (a fragment, so the rest of the page
    does not rerun); when the last one ends, the whole page reruns once to show the new data."""

    @st.fragment(run_every=1.0 if services.tasks.running(kind) else None)
    def _panel() -> None:
        tasks = services.tasks.of_kind(kind)
        running = [t for t in tasks if t.running]
        for task in running or (tasks[:1] if show_last else []):
            task_status(task)
        seen_key = f"seen-running-{kind}"
        if st.session_state.get(seen_key) and not running:
            st.session_state[seen_key] = False
            st.rerun(scope="app")
        st.session_state[seen_key] = bool(running)

    _panel()
