"""The search sidebar: folder tree, date range, tags, type and camera, turned into one `VectorFilter`.

Choices come from the library itself (folders that hold photos, tags that exist, types present), so every option
can match something; the filter is applied by the vector store together with the ranking, not after it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import streamlit as st

from indexer.stores.vectors import VectorFilter

PAGE_SIZES = (12, 24, 48)
INDENT = "\u2003"  # an em space: Streamlit collapses ordinary leading spaces in option labels


@dataclass(frozen=True)
class SearchOptions:
    filter: VectorFilter | None  # None: the whole library
    limit: int  # results per page
    closest: bool  # show the closest photos even when the engine finds no good match
    collapse: bool  # fold near-duplicates (bursts, re-encodes) into one result


def sidebar_filters(library) -> SearchOptions:
    with st.sidebar:
        st.header("Filters")
        folder = _folder_choice(library)
        taken = _date_choice(library)
        tag_options = [tag for tag, _ in library.tag_counts().most_common()]
        tags = st.multiselect("Tags (all of)", tag_options, key="f_tags", placeholder="any tags")
        exts = st.multiselect("Type", library.exts(), key="f_types", placeholder="any type")
        camera_options = sorted({p.camera for p in library.photos.values() if p.camera})
        cameras = st.multiselect("Camera", camera_options, key="f_cameras", placeholder="any camera")
        st.divider()
        limit = st.select_slider("Results per page", PAGE_SIZES, value=PAGE_SIZES[1], key="f_limit")
        closest = st.checkbox("Show the closest photos when nothing matches well", key="closest")
        collapse = st.checkbox("Group near-duplicates", value=True, key="f_collapse",
                               help="Bursts, re-encodes and resized copies show as one result.")
    flt = VectorFilter(folder=folder, taken_from=taken[0], taken_to=taken[1], tags_all=tuple(tags),
                       exts=tuple(exts), cameras=tuple(cameras))
    return SearchOptions(None if flt == VectorFilter() else flt, limit, closest, collapse)


def folder_label(row) -> str:
    name = row.folder if row.depth == 0 else os.path.basename(row.folder)
    return f"{INDENT * row.depth}{name} ({row.photos})"


def _folder_choice(library) -> str | None:
    rows = library.folder_tree()
    labels = {row.folder: folder_label(row) for row in rows}
    choice = st.selectbox("Folder", [None, *labels], key="f_folder",
                          format_func=lambda f: "All folders" if f is None else labels.get(f, f))
    return choice


def _date_choice(library) -> tuple[float | None, float | None]:
    bounds = library.date_range()
    if bounds is None or not st.checkbox("Filter by date (taken, else file date)", key="f_use_dates",
                                         help="The date the camera recorded (EXIF); photos without one are dated by "
                                              "the file's modification time."):
        return None, None
    low, high = bounds[0].date(), bounds[1].date()
    picked = st.date_input("Dated between", value=(low, high), min_value=low, max_value=high, key="f_dates")
    if not isinstance(picked, tuple | list) or len(picked) != 2:
        return None, None  # the user has picked the first date only: wait for the second
    return day_start(picked[0]), day_start(picked[1] + timedelta(days=1))  # [from, to) in whole days


def day_start(day: date) -> float:
    """Midnight UTC of `day`, the convention the index stores dates taken in (EXIF local time as UTC)."""
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
