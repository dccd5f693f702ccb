"""UI fixtures: the indexed library (built once per session) and LOUPE_HOME pointing at it for a module."""

from __future__ import annotations

import pytest

from tests.ui.appkit import Library, build_library, expected_answers


@pytest.fixture(scope="session")
def library(tmp_path_factory) -> Library:
    built = build_library(tmp_path_factory.mktemp("ui-library"))
    expected_answers(built)
    return built


@pytest.fixture(scope="module")
def app_home(library):
    """LOUPE_HOME → the library for this module's AppTests; the UI's cached services are released afterwards."""
    import ui.state

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOUPE_HOME", str(library.home))
        yield library
        ui.state._open.clear()
