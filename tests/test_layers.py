"""The architecture as a test: import-linter's contracts in pyproject.toml (layers and no import circles).

`lint-imports` reads every import, including the ones deferred inside functions, so a lazy import that goes up a
layer or closes a circle fails here just like a top-level one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> list[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]


def test_import_contracts_hold():
    result = subprocess.run(_lint_imports() + ["--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


def test_contracts_name_every_package_and_room():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    kinds = {c["type"] for c in config["contracts"]}
    assert {"layers", "acyclic_siblings"} <= kinds
    layered = next(c for c in config["contracts"] if c["type"] == "layers" and "containers" not in c)
    assert layered["layers"] == ["ui", "search", "indexer", "models"]
    rooms = {p.name for p in (ROOT / "indexer").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in (ROOT / "indexer").glob("*.py") if p.stem not in ("__init__", "__main__")}
    indexer_layers = next(c for c in config["contracts"] if c.get("containers") == ["indexer"])["layers"]
    named = {part.strip() for layer in indexer_layers for part in layer.replace("|", ":").split(":")}
    assert rooms <= named, f"indexer modules/subpackages missing from the layers contract: {rooms - named}"
