"""Process-wide state: the services (owner connection or the UI's own stores), the engine, the library view.

`st.cache_resource` makes each of these once per process, not per click or per browser tab: the model loads once,
the store is opened once (it admits one process anyway), and a query costs only the query. Pages call `services()`,
`engine()`, `library()` and `guard()`, and show failures with `show_error`, which always names the fix.
"""

from __future__ import annotations

import argparse
import atexit
import sys
from pathlib import Path

import streamlit as st

from ui.errors import NothingIndexedError, explain
from ui.services import Options, Services, open_services

# An owner's watcher adds photos behind our back: re-read the payloads this often (the UI's own changes bump the
# library generation at once). Reading 100k payloads takes seconds, so not on every click.
LIBRARY_TTL_S = 300


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The app's own flags (after `--` on the streamlit command line); unknown ones are ignored so the module can
    also run under `streamlit run ui/app.py` or a test harness with other arguments."""
    p = argparse.ArgumentParser(prog="ui/app.py", add_help=False)
    p.add_argument("--home")
    p.add_argument("--watch", action="append", default=[])
    p.add_argument("--model")
    p.add_argument("--device")
    return p.parse_known_args(argv)[0]


def options(argv: list[str] | None = None) -> Options:
    from models.home import data_home

    args = parse_args(sys.argv[1:] if argv is None else argv)
    watch = tuple(Path(w).expanduser().resolve() for w in args.watch)
    return Options(data_home(args.home), watch, args.model, args.device)


def _release(opened: Services) -> None:
    opened.close()


@st.cache_resource(show_spinner="Opening the data home…", on_release=_release)
def _open(home: str, watch: tuple[str, ...], model: str | None, device: str | None) -> Services:
    opened = open_services(Options(Path(home), tuple(Path(w) for w in watch), model, device))
    atexit.register(opened.close)  # release the lock and stop the watcher and API with the process
    return opened


def services(argv: list[str] | None = None) -> Services:
    opts = options(argv)
    return _open(str(opts.home), tuple(str(w) for w in opts.watch), opts.model, opts.device)


def preopen(argv: list[str]) -> Services | None:
    """Open the data home before the server starts (`python -m ui` runs Streamlit in this process, and the cache is
    process-wide): ownership, `--watch` indexing and the watcher then start at once, not at the first page view.
    A failure is printed with its fix; the pages show it again until it is solved."""
    import logging

    # Outside a script run Streamlit warns about a missing ScriptRunContext on each cache access; harmless here.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    try:
        return services(argv)
    except Exception as err:  # noqa: BLE001
        friendly = explain(err, options(argv).home)
        print(f"warning: {friendly.title} Fix: {friendly.fix}", file=sys.stderr)
        return None


def forget() -> None:
    """Drop the cached services (e.g. the owner went away; `on_release` closes them): the next rerun finds an
    owner or becomes one."""
    _open.clear()


def engine():
    """The cached `SearchEngine`; `NothingIndexedError` while the index holds no photo."""
    found = services()
    if found.points() == 0:
        raise NothingIndexedError(f"no photo is indexed in {found.home} yet")
    return found.engine()


@st.cache_resource(ttl=LIBRARY_TTL_S, max_entries=4, show_spinner="Reading the library…")
def _library(_services: Services, home: str, collection: str, generation: int):
    from ui.library import Library

    return Library.load(_services.backend().store, collection)


def library():
    found = services()
    return _library(found, str(found.home), found.backend().collection.name, found.generation)


def guard():
    from ui.media import MediaGuard

    found = services()
    backend = found.backend()
    return MediaGuard(backend.store, backend.collection.name, library().by_path, found.home / "thumbnails")


def show_error(err: BaseException, prefix: str = "") -> None:
    """A friendly message with the fix (after `prefix`, e.g. which background task failed); the raw message folded
    away. An owner that stopped answering is forgotten, so reloading recovers without restarting the UI."""
    home = None
    try:
        home = options().home
    except Exception:  # noqa: BLE001
        pass
    friendly = explain(err, home)
    st.error(prefix + friendly.markdown())
    if friendly.detail:
        with st.expander("Details"):
            st.code(friendly.detail, language=None)
    if type(err).__name__ in ("OwnerUnavailableError", "OwnerAuthError"):
        forget()


def is_empty_index(err: BaseException) -> bool:
    return isinstance(err, NothingIndexedError) or type(err).__name__ == "NoIndexError"


KEPT_WIDGETS = "_kept_widgets"


def keep_widgets(keys: tuple[str, ...]) -> None:
    """Streamlit forgets the value of every widget a run does not draw: one run showing the detail view, or an
    error, used to empty the query box and reset the filters. Called at the top of a page, before any early return:
    a widget value from the last run is remembered; one Streamlit forgot is put back before its widget is drawn."""
    kept = st.session_state.setdefault(KEPT_WIDGETS, {})
    for key in keys:
        if key in st.session_state:
            kept[key] = st.session_state[key]
        elif key in kept:
            st.session_state[key] = kept[key]
