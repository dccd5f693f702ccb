"""The data home (`~/.loupe`, `LOUPE_HOME`, `--home`) and the well-known places inside it.

It lives in models/ because the model cache is the first thing that needs it and every other package already
imports models; nothing here touches the catalog or the stores.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "LOUPE_HOME"


def data_home(override: str | os.PathLike | None = None) -> Path:
    """`override` (a `--home` flag) wins over `LOUPE_HOME`, which wins over `~/.loupe`."""
    raw = override or os.environ.get(ENV_HOME) or Path.home() / ".loupe"
    return Path(raw).expanduser().resolve()


def model_cache(home: Path) -> Path:
    """Downloaded and converted weights (shared between processes; never written half-way)."""
    return home / "models"


def text_towers_dir(home: Path) -> Path:
    """Tuned, versioned text towers (see models.train)."""
    return home / "text_towers"
