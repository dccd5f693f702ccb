"""Memory of a real `--watch` owner: peak while it indexes 12 MP JPEGs, resident size as it sits idle, and what a
query costs once its worker has been let go.

    python bench/owner_memory.py [--n 40] [--model offline-lite] [--idle 60] [--dir bench/out/decode]
    (also the memory table of `bench/index.py --memory`)

Runs `python -m indexer LIB --watch` twice: once with the default idle timeouts (the worker, which holds torch and
the model, is let go once it has been idle; indexer.watcher.supervisor) and once keeping it (huge timeouts). The owner
is a process tree (a parent without torch, and its worker while there is work), so every sample sums /proc status
over the tree: VmRSS is resident now; the peak is the highest sum seen while sampling every 0.2 s during the scan
(with VmHWM of each process as a cross-check); RssAnon is what the processes allocated themselves, the rest are file
pages (shared libraries) the kernel can drop. After `--idle` seconds it times one text query through the owner (a
wake: worker start and model load, when it was let go) and a second one (warm). Also printed: the floor of a single
process that imports torch, transformers and timm, which no in-process unloading could go below.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.decode import ensure_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEEP_FOREVER = "1e9"
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in MB (zeros for a process that is gone)."""
    out = dict.fromkeys(FIELDS, 0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in FIELDS:
                    out[key] = int(value.split()[0]) >> 10
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """The process and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):  # none once the process is gone
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return pids


def tree_memory(pid: int) -> dict[str, int]:
    """Sums of `proc_memory` over the tree, plus how many processes it has."""
    pids = tree(pid)
    total = dict.fromkeys(FIELDS, 0)
    for p in pids:
        for k, v in proc_memory(p).items():
            total[k] += v
    total["processes"] = len(pids)
    return total


def run_owner(library: Path, home: Path, model: str, idle_s: float, extra: list[str]) -> dict:
    from indexer.owner.client import OwnerClient

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "indexer", str(library), "--watch", "--model", model, "--home", str(home), *extra]
    log = home.parent / f"{home.name}.log"
    peak = hwm = 0
    with open(log, "w") as sink:
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            while "Ctrl-C to stop" not in log.read_text():  # printed by the worker once the first scan is done
                if child.poll() is not None:
                    raise RuntimeError(f"the owner exited: {log.read_text()[-2000:]}")
                m = tree_memory(child.pid)
                peak, hwm = max(peak, m["VmRSS"]), max(hwm, m["VmHWM"])
                time.sleep(0.2)
            after_scan = tree_memory(child.pid)
            time.sleep(idle_s)
            idle = tree_memory(child.pid)
            client = OwnerClient.find(home)
            state = client.status().get("worker", {}).get("state", "in-process")
            t0 = time.perf_counter()
            client.embed_texts(["a dog on the beach"])
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            client.embed_texts(["a red car"])
            warm = time.perf_counter() - t0
        finally:
            child.terminate()
            child.wait(timeout=60)
    return {"after scan": after_scan, "idle": idle, "peak": peak, "hwm": hwm, "state": state,
            "first query s": first, "warm query s": warm}


def memory_table(files: list[Path], model: str, idle_s: float, workdir: Path) -> str:
    library = workdir / "library"
    library.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = library / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    rows = [f"| owner | peak RSS indexing (MB; sum of VmHWM) | RSS after scan | RSS idle {idle_s:.0f} s | of which "
            "anon | processes idle | worker idle | next query (s) | warm query (s) |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for label, extra in (("default idle timeouts (worker let go)", []),
                         ("model kept loaded", ["--image-idle", KEEP_FOREVER, "--text-idle", KEEP_FOREVER])):
        home = workdir / f"home-{len(rows)}"
        m = run_owner(library, home, model, idle_s, extra)
        rows.append(f"| {label} | {m['peak']} ({m['hwm']}) | {m['after scan']['VmRSS']} | {m['idle']['VmRSS']} | "
                    f"{m['idle']['RssAnon']} | {m['idle']['processes']} | {m['state']} | {m['first query s']:.2f} | "
                    f"{m['warm query s']:.3f} |")
    floor = floor_mb()
    rows.append(f"| floor of one process: `import torch, transformers, timm` only | — | — | {floor['VmRSS']} | "
                f"{floor['RssAnon']} | 1 | — | — | — |")
    return "\n".join(rows)


def floor_mb() -> dict[str, int]:
    code = "import torch, transformers, timm, time; print(open('/proc/self/status').read())"
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: int(values[k].split()[0]) >> 10 for k in ("VmRSS", "RssAnon", "RssFile")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="12 MP JPEGs in the library")
    parser.add_argument("--model", default="offline-lite")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle before the last sample")
    parser.add_argument("--dir", type=Path, default=Path("bench/out/decode"), help="cache of generated JPEGs")
    args = parser.parse_args(argv)
    files = ensure_files(args.dir, args.n, 90, os.cpu_count() or 2)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.n} 12 MP JPEGs, model {args.model}\n")
        print(memory_table(files, args.model, args.idle, Path(tmp)))


if __name__ == "__main__":
    main()
