"""The Streamlit entry point: `python -m ui` (or `streamlit run ui/app.py -- --home H`).

Pages are files (`st.Page("search_page.py")`) so that each page is a plain module with a `render()` and can be
driven on its own by `AppTest.switch_page`. The sidebar footer says which data home is open and how (through its
owner, or owned by this UI).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent
PAGES = [
    ("search_page.py", "Search", ":material/search:"),
    ("tags_page.py", "Tags", ":material/sell:"),
    ("index_page.py", "Index", ":material/folder_open:"),
    ("tune_page.py", "Tune", ":material/tune:"),
]


def main() -> None:
    st.set_page_config(page_title="Loupe", page_icon=":material/search:", layout="wide")
    pages = [st.Page(str(HERE / file), title=title, icon=icon, default=i == 0)
             for i, (file, title, icon) in enumerate(PAGES)]
    current = st.navigation(pages)
    target = st.session_state.pop("switch_to", None)  # set by a button on another page (e.g. a tag's photo)
    if target is not None:
        st.switch_page(pages[[file for file, _, _ in PAGES].index(target)])
    current.run()
    _footer()


def _footer() -> None:
    from ui import state

    with st.sidebar:
        try:
            found = state.services()
        except Exception as err:  # shown once here; pages show their own message with the fix
            st.caption(f"Data home {state.options().home}: not open ({type(err).__name__})")
            return
        st.caption(f"Data home `{found.home}` — {found.describe()}")


main()
