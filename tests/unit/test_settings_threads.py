"""Decode workers and torch threads split the cores automatically; explicit settings win."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.settings import IndexerSettings


@pytest.mark.parametrize(("cpus", "plan"), [(1, (1, 1)), (2, (2, 1)), (4, (4, 2)), (16, (8, 8)), (32, (8, 16))])
def test_cpu_inference_decodes_on_every_core_and_gives_torch_half(cpus, plan):
    assert IndexerSettings(home=Path(".")).thread_plan(cuda=False, cpus=cpus) == plan


def test_cuda_decodes_on_every_core_and_leaves_torch_alone():
    assert IndexerSettings(home=Path(".")).thread_plan(cuda=True, cpus=4) == (4, 0)
    assert IndexerSettings(home=Path(".")).thread_plan(cuda=True, cpus=64) == (8, 0)


def test_explicit_settings_are_kept():
    assert IndexerSettings(home=Path("."), workers=3).thread_plan(cuda=False, cpus=8) == (3, 4)
    assert IndexerSettings(home=Path("."), workers=3, torch_threads=2).thread_plan(cuda=False, cpus=8) == (3, 2)
