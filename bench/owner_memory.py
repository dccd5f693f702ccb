"""Memory of a real `--watch` owner: peak while it indexes 12 MP JPEGs, then resident size as it sits idle.

    python bench/owner_memory.py [--n 40] [--model offline-lite] [--idle 60] [--dir bench/out/decode]
    (also the memory table of `bench/index.py --memory`)

Runs `python -m indexer LIB --watch` in a child process twice: once releasing the model when idle
(`--image-idle 20 --text-idle 40`, so it is gone within the idle window) and once keeping it (huge timeouts), and
samples the child's /proc status: VmHWM is the peak RSS while indexing, VmRSS the resident size after the scan and
after `--idle` seconds without work. RssAnon is what the process itself allocated; the rest are file pages (shared
libraries) the kernel can drop. Also printed: the floor, a bare interpreter that only imports torch, transformers
and timm — no in-process unloading can go below it.
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


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) >> 10
    return out


def run_owner(library: Path, home: Path, model: str, idle_s: float, extra: list[str]) -> dict[str, dict[str, int]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "indexer", str(library), "--watch", "--model", model, "--home", str(home), *extra]
    log = home.parent / f"{home.name}.log"
    with open(log, "w") as sink:
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            while "watching" not in log.read_text():  # printed once the first scan is done
                if child.poll() is not None:
                    raise RuntimeError(f"the owner exited: {log.read_text()[-2000:]}")
                time.sleep(0.5)
            after_scan = proc_memory(child.pid)
            time.sleep(idle_s)
            idle = proc_memory(child.pid)
        finally:
            child.terminate()
            child.wait(timeout=60)
    return {"after scan": after_scan, "idle": idle}


def floor_mb() -> dict[str, int]:
    code = "import torch, transformers, timm, time; print(open('/proc/self/status').read())"
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: int(values[k].split()[0]) >> 10 for k in ("VmRSS", "RssAnon", "RssFile")}


def memory_table(files: list[Path], model: str, idle_s: float, workdir: Path) -> str:
    library = workdir / "library"
    library.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = library / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    rows = [f"| owner | peak RSS while indexing (MB) | RSS after scan | RSS idle {idle_s:.0f} s | of which anon |",
            "|---|---:|---:|---:|---:|"]
    for label, extra in (("releases the idle model (--image-idle 20 --text-idle 40)",
                          ["--image-idle", "20", "--text-idle", "40"]),
                         ("model kept loaded", ["--image-idle", KEEP_FOREVER, "--text-idle", KEEP_FOREVER])):
        home = workdir / f"home-{len(rows)}"
        m = run_owner(library, home, model, idle_s, extra)
        rows.append(f"| {label} | {m['idle']['VmHWM']} | {m['after scan']['VmRSS']} | {m['idle']['VmRSS']} | "
                    f"{m['idle']['RssAnon']} |")
    floor = floor_mb()
    rows.append(f"| floor: `import torch, transformers, timm` only | — | — | {floor['VmRSS']} | {floor['RssAnon']} |")
    return "\n".join(rows)


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
