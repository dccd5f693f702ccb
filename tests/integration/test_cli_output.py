"""What the command lines print for a person (issue 15): a summary in words by default and the same data with
`--json`, a warning for flags that cannot take effect while an owner runs, renames counted as moves, stale XMP
sidecars that Loupe wrote cleaned (never a person's), and one default model in every --help.

A real owner runs in this process (IndexerService + the local API on 127.0.0.1, test-tiny, real JPEGs, Qdrant Edge,
SQLite); the CLIs are called through their `main()` as a user would call them, and find the owner like any process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.owner.api import ApiServer, create_app
from indexer.owner.ownership import Ownership, free_port
from indexer.owner.service import IndexerService
from indexer.settings import DEFAULT_MODEL_HELP, IndexerSettings
from tests.imagegen import write_jpeg

COLORS = ["red", "navy", "green", "gold", "purple", "white", "black", "orange", "teal", "pink"]


@dataclass
class Owner:
    home: Path
    photos: Path
    service: IndexerService
    pid: int


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owner]:
    import os

    root = tmp_path_factory.mktemp("cli-output")
    home, photos = root / "home", root / "photos"
    (photos / "trip").mkdir(parents=True)
    for i, color in enumerate(COLORS):
        write_jpeg(photos / ("trip" if i % 2 else "") / f"{color}.jpg", (96, 72), color=color)
    settings = IndexerSettings.from_env(home=home, roots=(photos,), model="test-tiny", workers=1, batch_size=4)
    service = IndexerService(settings)
    service.scan()
    ownership = Ownership.acquire(home, "test owner")
    server = ApiServer(create_app(service, ownership.token), port=free_port())
    ownership.publish("127.0.0.1", server.start())
    try:
        yield Owner(home, photos, service, os.getpid())
    finally:
        server.stop()
        ownership.release()
        service.close()


def indexer(*argv) -> int:
    from indexer.cli import main

    return main([str(a) for a in argv])


def test_a_scan_handed_to_the_owner_prints_a_summary_or_the_job_as_json(owner, tmp_path, capsys):
    new = tmp_path / "new"
    new.mkdir()
    for seed in range(2):
        write_jpeg(new / f"noise{seed}.jpg", (80, 60), seed=seed + 7)
    assert indexer(new, "--home", owner.home) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(r"2 new photos embedded in \d+\.\d s\n", out), out
    assert "{" not in out and f"owned by process {owner.pid}" in err and "warning" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert indexer(empty, "--home", owner.home) == 0
    assert re.fullmatch(r"nothing to index in \d+\.\d s\n", capsys.readouterr().out)
    assert indexer(new, "--home", owner.home, "--json") == 0
    job = json.loads(capsys.readouterr().out)
    assert job["state"] == "done" and job["report"]["unchanged"] == 2 and job["report"]["embedded"] == 0


def test_flags_an_owner_cannot_honour_are_named_on_stderr(owner, tmp_path, capsys):
    from search.cli import main as search_main

    assert indexer(owner.photos, "--home", owner.home, "--model", "offline-lite", "--batch-size", "8",
                   "--no-thumbnails") == 0
    err = capsys.readouterr().err
    assert f"warning: --model, --batch-size, --no-thumbnails cannot take effect: process {owner.pid}" in err
    assert search_main(["red", "--home", str(owner.home), "--qdrant-url", "http://127.0.0.1:9", "--min-score",
                        "0"]) == 0
    out, err = capsys.readouterr()
    assert f"warning: --qdrant-url cannot take effect: process {owner.pid} owns the data home" in err
    assert "--local" in err and out.strip()  # the search itself ran, through the owner
    assert indexer("status", "--home", owner.home, "--db-url", f"sqlite:///{tmp_path / 'other.db'}") == 0
    assert "warning: --db-url cannot take effect" in capsys.readouterr().err
    assert search_main(["red", "--home", str(owner.home), "--min-score", "0"]) == 0
    assert "warning" not in capsys.readouterr().err  # nothing given, nothing said


def test_status_counts_a_rename_as_a_move_and_lists_the_added_folder(owner, capsys):
    before = json.loads(_status_json(owner.home, capsys))["files"]
    (owner.photos / "trip" / "navy.jpg").rename(owner.photos / "trip" / "navy-renamed.jpg")
    (owner.photos / "green.jpg").unlink()
    assert indexer(owner.photos, "--home", owner.home) == 0
    summary = capsys.readouterr().out
    assert "1 moved or renamed" in summary and "1 deleted" in summary and "copies" not in summary, summary
    files = json.loads(_status_json(owner.home, capsys))["files"]
    assert (files["moved"] - before["moved"], files["deleted"] - before["deleted"]) == (1, 1)
    assert indexer("status", "--home", owner.home) == 0
    text = capsys.readouterr().out
    assert f"{files['moved']} moved, {files['deleted']} deleted" in text
    assert re.search(rf"^folders +.*{re.escape(str(owner.photos))}", text, re.M), text


def _status_json(home: Path, capsys) -> str:
    assert indexer("status", "--home", home, "--json") == 0
    return capsys.readouterr().out


def test_search_prints_a_table_by_default_and_json_with_json(owner, capsys):
    from search.cli import main as search_main

    every = ["red", "--home", str(owner.home), "--min-score", "0", "--no-collapse", "--limit", "3"]
    assert search_main(every) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "path" in lines[0] and len(lines) >= 4 and "{" not in "".join(lines)  # a table, not a dict
    assert search_main([*every, "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["query"] == "red" and len(page["results"]) == 3


def test_a_broken_query_image_is_one_line_through_the_owner_and_without_it(owner, tmp_path, capsys):
    """Found by a breaker pass: `search --like` on a truncated or empty file printed a traceback (DecodeError in
    process, OwnerRequestError through an owner)."""
    from search.cli import main as search_main

    truncated = tmp_path / "IMG_0001.jpg"
    truncated.write_bytes((owner.photos / "red.jpg").read_bytes()[:200])
    empty = tmp_path / "IMG_0002.jpg"
    empty.write_bytes(b"")
    for broken in (truncated, empty):
        assert search_main(["--like", str(broken), "--home", str(owner.home), "--json"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "Traceback" not in captured.err
        assert captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1, captured.err
    # without an owner: the search opens the home itself and decodes in process (a copy of the index, unowned)
    import shutil

    home = tmp_path / "copy"
    shutil.copytree(owner.home, home, ignore=shutil.ignore_patterns("owner*", "*.lock"))
    assert search_main(["--like", str(truncated), "--home", str(home)]) == 2
    captured = capsys.readouterr()
    assert "not a photo Loupe can read" in captured.err and "Traceback" not in captured.err, captured.err


def test_paging_numbers_and_dates_out_of_range_are_refused_in_one_line(owner, capsys):
    """Found by a breaker pass: --limit -3 and a 20-digit --offset ended in an OverflowError traceback, and
    --offset -5 silently dropped the best results."""
    from search.cli import main as search_main

    for flags in (["--limit", "-3"], ["--limit", "0"], ["--offset", "-5"], ["--offset", "9" * 20],
                  ["--limit", "many"], ["--after", "yesterday-ish"]):
        with pytest.raises(SystemExit) as stop:
            search_main(["red", "--home", str(owner.home), "--json", *flags])
        captured = capsys.readouterr()
        assert stop.value.code == 2 and captured.out == "" and "Traceback" not in captured.err, flags
        last = captured.err.strip().splitlines()[-1]  # argparse: its usage, then one line naming the option
        assert "error: argument " + flags[0] in last, captured.err


def test_an_empty_answer_says_whether_the_query_or_the_filters_left_nothing(owner, tmp_path, capsys):
    """Found by a breaker pass: `--folder /missing --min-score 0` said "no good match ... try --min-score 0"."""
    from search.cli import main as search_main

    home = ["--home", str(owner.home)]
    assert search_main(["red", *home, "--folder", str(tmp_path / "missing"), "--min-score", "0"]) == 0
    out = capsys.readouterr().out
    assert "passes the filters" in out and "try --min-score 0" not in out, out
    assert search_main(["red", *home, "--min-score", "0", "--offset", "100"]) == 0
    assert "past the first 100" in capsys.readouterr().out


def test_tag_xmp_removes_stale_sidecars_it_wrote_and_never_a_persons(owner, capsys):
    from search.tag import main as tag_main
    from search.xmp import sidecar_path, written_by_loupe

    folder = owner.photos
    person = sidecar_path(folder / "purple.jpg")  # a person's darktable sidecar: Loupe merges into it
    person.write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2"><rdf:RDF '
                      'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
                      'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>')
    stranger = folder / "vanished.jpg.xmp"  # another tool's sidecar of a photo Loupe never saw: never touched
    stranger.write_text(person.read_text())
    tag = ["--home", str(owner.home), "--xmp", "--threshold", "0", "--top-k", "2"]
    assert tag_main([str(folder), *tag]) == 0
    capsys.readouterr()
    red, purple = sidecar_path(folder / "red.jpg"), person
    assert written_by_loupe(red) and not written_by_loupe(purple) and 'xmp:Rating="4"' in purple.read_text()

    (folder / "red.jpg").rename(folder / "rouge.jpg")
    (folder / "purple.jpg").rename(folder / "violet.jpg")
    assert indexer(folder, "--home", owner.home) == 0
    capsys.readouterr()
    assert tag_main([str(folder), *tag, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["sidecars_removed"] == [str(red)]
    assert not red.exists() and written_by_loupe(sidecar_path(folder / "rouge.jpg"))  # the tags followed the photo
    assert purple.exists() and 'xmp:Rating="4"' in purple.read_text()  # a person's data is never removed
    assert f"note: {purple} belongs to a photo that is gone" in err
    assert stranger.exists() and str(stranger) not in err  # not Loupe's business at all


def test_every_help_states_the_same_default_model():
    from indexer.cli import build_parser as indexer_parser
    from ui.__main__ import build_parser as ui_parser

    def flat(text: str) -> str:
        return " ".join(text.split())

    for parser in (indexer_parser(), ui_parser()):
        assert flat(DEFAULT_MODEL_HELP) in flat(parser.format_help())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert flat(DEFAULT_MODEL_HELP) in flat(readme)
