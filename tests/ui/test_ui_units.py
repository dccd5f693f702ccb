"""The small pieces: the launcher's arguments, the library view, chart frames and background tasks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ui.__main__ import APP, build_parser, exposure_warning, main, streamlit_args
from ui.charts import loss_curve, metrics_table, recall_curves, score_histogram
from ui.jobs import TaskBoard
from ui.library import Library, Photo


def test_the_launcher_binds_loopback_and_passes_the_apps_flags(tmp_path):
    args = build_parser().parse_args(["--home", str(tmp_path), "--watch", str(tmp_path), "--model", "test-tiny"])
    argv = streamlit_args(args)
    assert argv[:2] == ["run", str(APP)]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"
    assert argv[argv.index("--") + 1:] == ["--home", str(tmp_path), "--watch", str(tmp_path), "--model", "test-tiny"]


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                          ("0.0.0.0", True), ("192.168.1.5", True), ("photos.lan", True)])
def test_listening_beyond_loopback_warns(host, warned):
    assert (exposure_warning(host, 8501) is not None) == warned


def test_a_missing_watch_folder_stops_before_starting(tmp_path, capsys):
    assert main(["--watch", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def photo(digest: str, *paths: str, tags=(), taken=None) -> Photo:
    folders = sorted({str(p) for path in paths for p in Path(path).parents})
    return Photo(digest, paths, tuple(folders), tuple(tags), ("jpg",), taken)


def test_library_tree_counts_each_photo_once_per_folder():
    lib = Library([photo("a", "/p/x/1.jpg", "/p/x/1-copy.jpg", tags=["dog"], taken=10.0),
                   photo("b", "/p/x/y/2.jpg", tags=["dog", "cat"], taken=20.0), photo("c", "/p/z/3.jpg")])
    assert lib.root == "/p"
    assert [(r.folder, r.depth, r.photos) for r in lib.folder_tree()] == [
        ("/p", 0, 3), ("/p/x", 1, 2), ("/p/x/y", 2, 1), ("/p/z", 1, 1)]
    assert lib.top_tags("/p/x") == [("dog", 2), ("cat", 1)]
    assert [p.content_hash for p in lib.with_tag("dog")] == ["b", "a"]  # newest first
    assert lib.by_path["/p/x/1-copy.jpg"] == "a"
    assert lib.top_folders() == ["/p/x", "/p/z"]


def test_chart_frames():
    points = [{"epoch": 0, "loss": None, "mean_recall": 0.25}, {"epoch": 1, "loss": 2.0, "mean_recall": 0.5}]
    assert loss_curve(points)["loss"].tolist() == [2.0]
    assert recall_curves(points)["mean recall"].tolist() == [25.0, 50.0]
    table = metrics_table({"before": {"mean_recall": 0.1}, "after": None})
    assert table.loc["mean recall", "before"] == pytest.approx(10.0) and table["after"].isna().all()
    histogram = score_histogram({"a": [0.1, 0.2, 0.3], "b": [0.3]}, bins=2)
    assert histogram["a"].sum() == 3 and histogram["b"].sum() == 1


def test_tasks_report_results_and_failures():
    board = TaskBoard()
    done = board.start("x", "works", lambda task: task.update(0.5, "half") or 42)
    failed = board.start("x", "fails", lambda task: 1 / 0)
    deadline = time.monotonic() + 5
    while (done.running or failed.running) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (done.state, done.result, done.progress) == ("done", 42, 1.0)
    assert failed.state == "failed" and "ZeroDivisionError" in failed.error
    assert board.of_kind("x") == [failed, done] and not board.running("x")


def test_watch_folders_given_at_start_are_indexed_and_followed(tmp_path):
    """`python -m ui --watch FOLDER` on a fresh home: the UI becomes the owner, indexes the folder, then follows it."""
    from indexer.owner.ownership import read_owner_file
    from tests.imagegen import solid_color_image, write_jpeg
    from ui.services import Options, open_services

    photos = tmp_path / "photos"
    photos.mkdir()
    for colour in ("red", "navy", "gold"):
        write_jpeg(photos / f"{colour}.jpg", image=solid_color_image(colour, (64, 48)))
    services = open_services(Options(tmp_path / "home", (photos,), model="test-tiny"))
    try:
        assert services.mode == "local" and read_owner_file(tmp_path / "home").purpose == "ui"
        task = services.tasks.of_kind("index")[0]
        deadline = time.monotonic() + 60
        while task.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert task.state == "done" and services.points() == 3 and services.watching
        assert services.status()["roots"] == [str(photos)]
    finally:
        services.close()
    assert read_owner_file(tmp_path / "home") is None  # the lock and the owner file are released
