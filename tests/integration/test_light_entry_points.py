"""Entry points start fast: `--help` of every CLI, and a query through a running owner, import no heavy framework.

Starting Python is ~30 ms; torch alone is ~2 s (10 s on a loaded machine), SQLAlchemy ~0.7 s. A CLI that imports
them before it knows it needs them makes `--help` and owner-backed queries feel broken (issue 14). These tests run
each entry point in a fresh interpreter and list what it imported — they assert on imports, never on timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.owner.api import ApiServer, create_app
from indexer.owner.ownership import Ownership, free_port
from indexer.owner.service import IndexerService
from indexer.settings import IndexerSettings
from tests.imagegen import write_jpeg

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "timm", "streamlit")
CLIS = ("indexer", "search", "search.tag", "models.train", "models.evaluate", "ui")

# Runs a module as `python -m MODULE ARGS…` would, then reports the heavy modules it imported, whatever the exit.
PROBE = """
import atexit, json, runpy, sys
heavy = json.loads(sys.argv[1])
atexit.register(lambda: print("LOADED=" + json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr))
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def loaded_by(module: str, *args: str, heavy: tuple[str, ...] = HEAVY) -> tuple[list[str], subprocess.CompletedProcess]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(heavy), module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    line = [x for x in done.stderr.splitlines() if x.startswith("LOADED=")]
    assert line, done.stderr
    return json.loads(line[-1].removeprefix("LOADED=")), done


@pytest.mark.parametrize("module", CLIS)
def test_help_imports_nothing_heavy(module: str) -> None:
    loaded, done = loaded_by(module, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
    assert loaded == []


def test_train_version_list_imports_nothing_heavy(tmp_path: Path) -> None:
    loaded, done = loaded_by("models.train", "--list", "--json", "--home", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert loaded == []


@pytest.fixture(scope="module")
def owned_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("light")
    home, photos = root / "home", root / "photos"
    photos.mkdir()
    for color in ("red", "navy", "green"):
        write_jpeg(photos / f"{color}.jpg", (96, 72), color=color)
    settings = IndexerSettings.from_env(home=home, roots=(photos,), model="test-tiny", workers=1, batch_size=4)
    service = IndexerService(settings)
    service.scan()
    ownership = Ownership.acquire(home, "test owner")
    server = ApiServer(create_app(service, ownership.token), port=free_port())
    ownership.publish("127.0.0.1", server.start())
    try:
        yield home
    finally:
        server.stop()
        ownership.release()
        service.close()


def test_a_query_through_the_owner_imports_no_model_or_store(owned_home: Path) -> None:
    """The owner holds the model and the stores; the CLI only speaks HTTP and ranks a page."""
    loaded, done = loaded_by("search", "red", "--json", "--min-score", "0", "--no-collapse", "--home", str(owned_home),
                             heavy=(*HEAVY, "sqlalchemy", "fastapi", "qdrant_edge"))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["results"]) == 3
    assert loaded == []
