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
from ui.state import show_error

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
    """"Similar" starts a fresh image query: the typed words, negatives and any uploaded image are dropped (the
    uploader gets a new key, the only way to empty it)."""
    st.session_state["like"] = digest
    st.session_state["offset"] = 0
    st.session_state["q"], st.session_state["without"] = "", ""
    st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
    st.query_params.pop("q", None)
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


VERDICTS = {"good": ("Good match", "green"), "possible": ("Possible match", "gray")}


def verdict_label(result) -> tuple[str, str]:
    """(label, colour) of the one plain verdict a card shows: the engine's decision, not its numbers (those are in
    the detail view). Reads a `tier` ('good' / 'possible') when the engine gives one, else the `relevant` flag."""
    tier = getattr(result, "tier", None) or ("good" if result.relevant else "possible")
    return VERDICTS.get(tier, VERDICTS["possible"])


def verdict(result) -> str:
    """The verdict as a coloured badge (Streamlit markdown)."""
    label, colour = verdict_label(result)
    return f":{colour}-badge[{label}]"


def _seconds(value: str | float) -> float:
    if isinstance(value, int | float):
        return float(value)
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def is_file_date(value: str | float | None, paths: Sequence[str]) -> bool:
    """True when the indexed date is the file's modification time, not a date the camera recorded.

    The indexer falls back to the mtime when a photo has no EXIF date, keeping its sub-second part; an EXIF date has
    whole seconds in camera time, so an exact (≤ 1 ms) match with a path's mtime means "no EXIF date"."""
    if value is None or value == "":
        return False
    stamp = _seconds(value)
    for path in paths:
        try:
            if abs(os.stat(path).st_mtime - stamp) <= 1e-3:
                return True
        except (OSError, ValueError):
            continue
    return False


def date_line(value: str | float | None, paths: Sequence[str]) -> str:
    """'taken 2023-06-01', or 'file date 2026-12-04' for a photo without an EXIF date; '' when unknown."""
    day = date_text(value)
    if not day:
        return ""
    return f"file date {day}" if is_file_date(value, paths) else f"taken {day}"


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
    elif task.exception is not None:  # the same friendly title and fix as any other error on the page
        show_error(task.exception, prefix=f"{task.label} failed. ")
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
