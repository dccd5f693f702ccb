"""Query latency of `SearchEngine.search` at 10k and 100k photos (Qdrant Edge next to qdrant-client's local mode),
and the wall time of a whole `python -m search … --json` process with and without a running owner.

    .venv/bin/python bench/search.py [--sizes 10000 100000] [--queries 30] [--model offline-lite] [--skip-cli]
                                     [--stores edge local] [--optimize] [--cli-runs 5] [--torch-threads N]

In-process latency: the engine end to end — text encoding with the real model (prompt ensembling for short
queries), the vector search (limit 20 with duplicate collapse on, so 60 candidates), fetching the candidates'
vectors, calibration, collapse and result metadata (thumbnail lookups). The stored vectors are synthetic but shaped
like offline-lite's (the square root of a peaked 1000-class softmax, from bench.capacity), with payloads built by
`indexer.stores.vectors.build_payload`; they go straight into the stores, so no 100k real photos are needed. Local mode
runs in memory (persisted, it writes every upsert to SQLite at ~50-100 points/s here; its queries scan the same
in-memory arrays either way). The engine runs over a small `search.backend.Backend` around the store and a real
model bundle; its one-time setup (a 512-vector library sample for calibration) happens before the clock starts.
Edge is measured with plain segments (brute force, as before the indexer's first optimize); `--optimize` adds a row
after an HNSW build (slow: minutes at 100k on 2 cores).

CLI: `python -m indexer DIR --watch --home H` is started on a folder of 600 small photos (so the engine's
512-vector library sample is full, as in a real library); once they are indexed the CLI runs --cli-runs times
through it (p50 of the whole process); a wrapper run lists which heavy modules the CLI imported (torch must not be
one) and times its phases, and `-X importtime` names the slowest imports. Then the owner gets SIGINT and the CLI
runs alone (opening the stores and loading the model itself).

Timings on a shared 2-core machine are noisy: each measurement is taken --repeat times and the better one is shown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402

from indexer.stores.vectors import VectorPoint, build_payload, point_id  # noqa: E402

log = logging.getLogger("bench.search")
COLLECTION = "bench-images"
DIM = 1000  # offline-lite's vector size
CHUNK = 2_000
QUERIES = (
    "a dog", "dog on the beach", "sunset over the sea", "a red car parked in the street", "birthday cake with candles",
    "cat sleeping on a sofa", "snowy mountains", "a bowl of soup", "people at a wedding", "city skyline at night",
    "a bicycle", "flowers in a garden", "a plate of pasta", "children playing football", "a lighthouse",
    "coffee cup on a wooden table", "a horse in a field", "rainy street", "a sailing boat", "fireworks",
    "a laptop on a desk", "autumn forest", "a bird on a branch", "pizza", "a bridge over a river",
    "a tent in the mountains", "an old church", "a waterfall", "breakfast with eggs and toast", "a train station",
)
CAMERAS = ("Apple iPhone 12", "Google Pixel 7", "Canon EOS 80D", "FUJIFILM X-T3", None)
TAGS = ("outdoor", "indoor", "beach", "food", "animal", "people", "night", "city")
HEAVY = ("torch", "transformers", "timm", "torchvision", "qdrant_edge", "qdrant_client", "sqlalchemy", "PIL",
         "fastapi", "uvicorn", "safetensors", "tokenizers")


# -- synthetic library -------------------------------------------------------------------------------------------

def synthetic_payload(i: int) -> tuple[str, dict]:
    digest = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
    year, month = 2012 + i % 13, (i // 997) % 12 + 1
    ext = ("jpg", "jpg", "jpg", "heic", "png")[i % 5]
    paths = [f"/home/user/Pictures/{year}/{year}-{month:02d} trip/IMG_{i:07d}.{ext}"]
    if i % 50 == 0:  # a few duplicates held at two paths
        paths.append(f"/home/user/Backup/{year}/IMG_{i:07d}.{ext}")
    tags = [TAGS[(i * 7 + k) % len(TAGS)] for k in range(i % 3)]
    payload = build_payload(digest, paths, 1.33e9 + i * 3571.0, 4032, 3024, tags=tags, camera=CAMERAS[i % 5])
    return point_id(digest), payload


def fill(store, start: int, stop: int) -> float:
    """Upsert synthetic points [start, stop); returns points per second."""
    from bench.capacity import Library

    library = Library(DIM, seed=start)
    seconds = 0.0
    for lo in range(start, stop, CHUNK):
        hi = min(stop, lo + CHUNK)
        vectors = library.vectors(hi - lo)
        points = [VectorPoint(*_swap(synthetic_payload(i), vectors[i - lo])) for i in range(lo, hi)]
        began = time.perf_counter()
        store.upsert(COLLECTION, points)
        seconds += time.perf_counter() - began
    return (stop - start) / seconds if seconds else float("nan")


def _swap(id_payload: tuple[str, dict], vector: np.ndarray) -> tuple[str, np.ndarray, dict]:
    return id_payload[0], vector, id_payload[1]


class BenchBackend:
    """A `search.backend.Backend` over any vector store and a real model bundle (what LocalBackend does, minus the
    catalog: the engine only needs the store, the collection and the encoders)."""

    kind = "bench"

    def __init__(self, store, home: Path, bundle):
        from models.active import ActiveModel
        from search.backend import CollectionRef

        self.store, self.home, self.bundle = store, home, bundle
        self.collection = CollectionRef(COLLECTION, bundle.name, bundle.image_tower_id, bundle.dim)
        self.active = ActiveModel(bundle, home)  # as the local backend and the owner do: checks promotions

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.active.encode_texts(list(texts)).cpu().numpy()

    def encode_image(self, path: Path | None = None, data: bytes | None = None) -> np.ndarray:
        from indexer.scan.decode import decode_image

        raw = data if data is not None else Path(path).read_bytes()
        decoded = decode_image(raw, min_side=2 * self.bundle.input_size)
        return self.bundle.model.encode_images(self.bundle.preprocess(decoded.image)[None])[0].cpu().numpy()

    def close(self) -> None:
        pass


# -- in-process latency ------------------------------------------------------------------------------------------

@dataclass
class Latency:
    store: str
    points: int
    total: list[float]  # ms per query
    parts: dict[str, list[float]]  # ms per query per part
    setup_ms: float  # engine's one-time calibrator setup
    upsert_per_s: float


class Timer:
    """Wraps callables on an object and sums their wall time per label for the current query."""

    def __init__(self) -> None:
        self.now: dict[str, float] = defaultdict(float)

    def wrap(self, obj, attr: str, label: str) -> None:
        original = getattr(obj, attr)

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.now[label] += (time.perf_counter() - began) * 1e3

        setattr(obj, attr, timed)


def measure(store, name: str, points: int, upsert_per_s: float, bundle, home: Path, n_queries: int,
            repeat: int) -> Latency:
    from search.engine import SearchEngine
    from search.query import build_query

    backend = BenchBackend(store, home, bundle)
    timer = Timer()
    timer.wrap(backend, "encode_texts", "text encode")
    timer.wrap(store, "query", "vector search")
    timer.wrap(store, "retrieve", "fetch vectors")
    engine = SearchEngine(backend)
    began = time.perf_counter()
    engine.calibrator()
    setup_ms = (time.perf_counter() - began) * 1e3
    queries = [build_query(QUERIES[i % len(QUERIES)]) for i in range(n_queries)]
    for q in queries[:3]:
        engine.search(q)  # warm-up
    best: Latency | None = None
    for _ in range(repeat):
        total, parts = [], defaultdict(list)
        for q in queries:
            timer.now.clear()
            began = time.perf_counter()
            engine.search(q)  # collapse on, limit 20 (the CLI's defaults)
            total.append((time.perf_counter() - began) * 1e3)
            for label in ("text encode", "vector search", "fetch vectors"):
                parts[label].append(timer.now[label])
            parts["rest (calibration, collapse, metadata)"].append(total[-1] - sum(timer.now.values()))
        run = Latency(name, points, total, dict(parts), setup_ms, upsert_per_s)
        if best is None or statistics.median(run.total) < statistics.median(best.total):
            best = run
    for label in ("encode_texts", "query", "retrieve"):
        for obj in (backend, store):
            obj.__dict__.pop(label, None)  # unwrap
    log.info("%s @ %d: p50 %.1f ms", name, points, statistics.median(best.total))
    return best


def latency_rows(args: argparse.Namespace, bundle, workdir: Path) -> list[Latency]:
    from indexer.stores.vectors_edge import EdgeVectorStore
    from indexer.stores.vectors_server import ServerVectorStore

    rows: list[Latency] = []
    sizes = sorted(args.sizes)
    for kind in args.stores:
        root = workdir / f"store-{kind}"
        shutil.rmtree(root, ignore_errors=True)
        # Local mode in memory: persisted, it writes every upsert to SQLite (~50-100 points/s here, 100k would take
        # half an hour) while its queries are the same in-memory numpy scan either way.
        store = EdgeVectorStore(root) if kind == "edge" else ServerVectorStore.local(None)
        label = "Qdrant Edge (as indexed: plain segments, exact search)" if kind == "edge" else \
            "qdrant-client local mode (in memory)"
        store.ensure_collection(COLLECTION, DIM)
        have = 0
        try:
            for size in sizes:
                log.info("%s: filling to %d points", kind, size)
                rate = fill(store, have, size)
                have = size
                rows.append(measure(store, label, size, rate, bundle, workdir, args.queries, args.repeat))
                if kind == "edge" and args.optimize:
                    rows.append(optimized(store, root, workdir, size, bundle, args))
                    store = EdgeVectorStore(root)
        finally:
            store.close()
            shutil.rmtree(root, ignore_errors=True)
    return rows


def optimized(store, root: Path, workdir: Path, size: int, bundle, args: argparse.Namespace) -> Latency:
    """Build HNSW on a copy of the shard (the original stays as the indexer leaves it) and measure there."""
    from indexer.stores.vectors_edge import EdgeVectorStore

    store.close()
    copy = workdir / "store-edge-optimized"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    (copy / ".lock").unlink(missing_ok=True)
    opt = EdgeVectorStore(copy)
    try:
        began = time.perf_counter()
        opt.optimize(COLLECTION)
        build_s = time.perf_counter() - began
        log.info("HNSW build at %d points: %.0f s", size, build_s)
        row = measure(opt, f"Qdrant Edge after optimize() (HNSW; build took {build_s:.0f} s)", size, float("nan"),
                      bundle, workdir, args.queries, args.repeat)
    finally:
        opt.close()
        shutil.rmtree(copy, ignore_errors=True)
    return row


# -- whole CLI process -------------------------------------------------------------------------------------------

WRAPPER = """
import time
started = time.perf_counter()
import json, sys
HEAVY = set(sys.argv.pop(1).split(","))
import indexer.owner.client, models.home, search.backend, search.cli, search.engine, search.query  # the CLI's
imported = time.perf_counter()
phases = {}
def timed(cls, name):
    original = getattr(cls, name)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
    setattr(cls, name, wrapper)
for name in ("open", "calibrator", "search"):
    timed(search.engine.SearchEngine, name)
try:
    search.cli.main(sys.argv[1:])
except SystemExit:
    pass
done = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
report = {"heavy": heavy, "count": len(sys.modules), "imports": imported - started, "main": done - imported,
          **phases}
print("BENCH-MODULES " + json.dumps(report), file=sys.stderr)
"""


def run_cli(argv: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - began, done


def cli_times(query_argv: list[str], env: dict, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        seconds, done = run_cli([sys.executable, "-m", "search", *query_argv], env)
        if done.returncode != 0:
            raise RuntimeError(f"search CLI failed ({done.returncode}): {done.stderr[-2000:]}")
        json.loads(done.stdout)
        times.append(seconds)
    return times


def import_profile(query_argv: list[str], env: dict) -> tuple[dict, list[tuple[float, str]], float]:
    """(heavy modules imported, the slowest top-level imports as (ms, name), total import ms)."""
    _, wrapped = run_cli([sys.executable, "-c", WRAPPER, ",".join(HEAVY), *query_argv], env)
    line = next((x for x in wrapped.stderr.splitlines() if x.startswith("BENCH-MODULES ")), None)
    if line is None:
        raise RuntimeError(f"wrapper failed: {wrapped.stderr[-2000:]}")
    modules = json.loads(line.split(" ", 1)[1])
    _, timed = run_cli([sys.executable, "-X", "importtime", "-m", "search", *query_argv], env)
    top, total = [], 0.0
    pattern = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")
    for row in timed.stderr.splitlines():
        m = pattern.match(row)
        if m and not m.group(3):  # top level: imported by the program itself, not by another module
            cumulative = int(m.group(2)) / 1e3
            top.append((cumulative, m.group(4)))
            total += cumulative
    return modules, sorted(top, reverse=True)[:8], total


def wait_for_owner(home: Path, n_files: int, process: subprocess.Popen, timeout: float = 300):
    from indexer.owner.client import OwnerClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the owner exited with {process.returncode}")
        client = OwnerClient.find(home) if (home / "owner.json").exists() else None
        if client is not None:
            status = client.status()
            if (status.get("collection") or {}).get("points") == n_files and status["files"]["pending"] == 0:
                return client
        time.sleep(0.2)
    raise TimeoutError("the owner did not finish indexing in time")


def owner_breakdown(home: Path, query: str) -> dict[str, float]:
    """Inside this process: what a query through the owner costs without interpreter start-up and imports."""
    from search.backend import open_backend
    from search.engine import SearchEngine
    from search.query import build_query

    out = {}
    began = time.perf_counter()
    engine = SearchEngine(open_backend(home))
    out["find owner + status"] = time.perf_counter() - began
    began = time.perf_counter()
    engine.calibrator()
    out["calibrator: 512-vector library sample (cached in the data home)"] = time.perf_counter() - began
    began = time.perf_counter()
    engine.search(build_query(query))
    out["the query itself (encode, search, fetch vectors)"] = time.perf_counter() - began
    engine.close()
    return out


def small_photos(folder: Path, n: int) -> list[Path]:
    """n small photo-like JPEGs (cached): enough photos for the engine's 512-vector library sample, quick to index."""
    from bench.decode import photo_like

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"small_{i:04d}.jpg" for i in range(n)]
    for i, path in enumerate(paths):
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            photo_like((640, 480), seed=100_000 + i).save(tmp, format="JPEG", quality=85)
            os.replace(tmp, path)
    return paths


def cli_rows(args: argparse.Namespace, workdir: Path) -> dict:
    photos = small_photos(args.dir / "search-cli", args.cli_photos)
    from bench.index import link_library

    folder = link_library(photos, workdir / "cli-library")
    home = workdir / "cli-home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOUPE_HOME", None)
    query_argv = [args.cli_query, "--json", "--home", str(home)]
    out: dict = {}

    baseline = []
    for _ in range(args.cli_runs):
        seconds, _ = run_cli([sys.executable, "-c", "pass"], env)
        baseline.append(seconds)
    out["python -c pass"] = baseline

    log.info("starting the owner on %d photos", len(photos))
    logfile = open(workdir / "owner.log", "w")  # noqa: SIM115 - closed below
    owner = subprocess.Popen(
        [sys.executable, "-m", "indexer", str(folder), "--watch", "--home", str(home), "--model", args.model],
        cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)
    try:
        wait_for_owner(home, len(photos), owner)
        log.info("owner ready; timing the CLI through it")
        cli_times(query_argv, env, 1)  # first query: the owner's text path warms up
        best = None
        for _ in range(args.repeat):
            times = cli_times(query_argv, env, args.cli_runs)
            if best is None or statistics.median(times) < statistics.median(best):
                best = times
        out["through owner"] = best
        out["modules"], out["slowest imports"], out["import total ms"] = import_profile(query_argv, env)
        out["in-process breakdown"] = owner_breakdown(home, args.cli_query)
    finally:
        owner.send_signal(signal.SIGINT)
        try:
            out["owner exit"] = owner.wait(timeout=120)
        except subprocess.TimeoutExpired:
            owner.kill()
            out["owner exit"] = "killed after 120 s"
        logfile.close()
    log.info("owner stopped (%s); timing the CLI alone", out["owner exit"])
    out["without owner"] = cli_times(query_argv, env, args.cli_runs)
    return out


# -- output ------------------------------------------------------------------------------------------------------

def pct(values: list[float], q: int) -> float:
    return float(np.percentile(values, q))


def print_latency(rows: list[Latency], n_queries: int) -> None:
    print(f"In-process `SearchEngine.search` latency, {n_queries} queries (limit 20, duplicate collapse on: 60 "
          "candidates), ms; parts are p50s\n")
    print("| store | vectors | p50 ms | p95 ms | text encode | vector search | fetch vectors | rest | "
          "engine setup ms (once) | fill rate pts/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        parts = [statistics.median(r.parts[k]) for k in ("text encode", "vector search", "fetch vectors",
                                                         "rest (calibration, collapse, metadata)")]
        p50 = statistics.median(r.total)
        flag = " ✅" if p50 <= 30 else ""
        fill_rate = "" if r.upsert_per_s != r.upsert_per_s else f"{r.upsert_per_s:,.0f}"
        print(f"| {r.store} | {r.points:,} | **{p50:.1f}**{flag} | {pct(r.total, 95):.1f} | "
              + " | ".join(f"{p:.1f}" for p in parts) + f" | {r.setup_ms:.0f} | {fill_rate} |")


def print_cli(out: dict, runs: int, model: str) -> None:
    print(f"\nWhole `python -m search \"…\" --json --home H` process (wall, {runs} runs; better of the repeats)\n")
    print("| run | p50 s | min s | max s |")
    print("|---|---:|---:|---:|")
    for key, label in (("python -c pass", "`python -c pass` (interpreter start-up, for reference)"),
                       ("through owner", "CLI through a running owner (`python -m indexer DIR --watch`)"),
                       ("without owner", f"CLI without an owner (opens the stores, loads {model})")):
        t = out[key]
        goal = " (goal ≤ 0.3)" if key == "through owner" else ""
        print(f"| {label}{goal} | **{statistics.median(t):.2f}** | {min(t):.2f} | {max(t):.2f} |")
    heavy = out["modules"]["heavy"]
    print(f"\nThrough the owner the CLI imported {out['modules']['count']} modules; heavy ones: "
          f"{', '.join(heavy) if heavy else 'none'} (torch {'IMPORTED' if 'torch' in heavy else 'not imported'}).")
    m = out["modules"]
    print(f"Inside one such process: imports {m['imports'] * 1e3:.0f} ms, then main() {m['main'] * 1e3:.0f} ms = "
          f"open the engine (find the owner, /status) {m.get('open', 0) * 1e3:.0f} ms + search "
          f"{m.get('search', 0) * 1e3:.0f} ms, of which the engine's one-time calibrator (512 library vectors, "
          f"scrolled from the owner or read from the data home's cache) {m.get('calibrator', 0) * 1e3:.0f} ms.")
    print(f"`-X importtime`: {out['import total ms']:.0f} ms of imports in all; slowest top-level imports: "
          + ", ".join(f"{name} {ms:.0f} ms" for ms, name in out["slowest imports"]) + ".")
    print("The same through the owner from this (warm) process: "
          + "; ".join(f"{k} {v * 1e3:.0f} ms" for k, v in out["in-process breakdown"].items())
          + f". Owner exit code after SIGINT: {out['owner exit']}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="stored vectors")
    parser.add_argument("--queries", type=int, default=30, help="timed queries per row")
    parser.add_argument("--stores", nargs="+", choices=["edge", "local"], default=["edge", "local"])
    parser.add_argument("--optimize", action="store_true", help="also measure Edge after an HNSW build (slow)")
    parser.add_argument("--model", default="offline-lite", help="model preset for text encoding")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch intra-op threads for in-process text encoding (0: torch's default)")
    parser.add_argument("--repeat", type=int, default=2, help="passes per measurement; the better is shown")
    parser.add_argument("--skip-cli", action="store_true", help="skip the whole-process CLI rows")
    parser.add_argument("--skip-latency", action="store_true", help="skip the in-process latency rows")
    parser.add_argument("--cli-runs", type=int, default=5, help="CLI processes per measurement")
    parser.add_argument("--cli-photos", type=int, default=600,
                        help="small photos the owner indexes (≥ 512 fills the engine's library sample)")
    parser.add_argument("--cli-query", default="a dog")
    parser.add_argument("--dir", type=Path, default=Path("bench/out"), help="cache of generated JPEGs (under it)")
    parser.add_argument("--workdir", type=Path, help="stores and homes (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("indexer", "models", "qdrant_client", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    args.dir = args.dir if args.dir.is_absolute() else ROOT / args.dir

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="loupe-bench-search-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows, cli, threads_used = [], None, 0
    try:
        if not args.skip_latency:
            import torch

            import models

            if args.torch_threads:
                torch.set_num_threads(args.torch_threads)
            bundle = models.create(args.model)
            threads_used = torch.get_num_threads()
            log.info("torch %s, %d threads, %s", torch.__version__, threads_used, bundle.model.device)
            rows = latency_rows(args, bundle, workdir)
        if not args.skip_cli:
            cli = cli_rows(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    threads = f"torch {threads_used} intra-op threads in-process; " if rows else ""
    print(f"\n{os.cpu_count()} CPUs; model {args.model}; {threads}{DIM}-d synthetic offline-lite-like vectors; "
          f"better of {args.repeat} passes\n")
    if rows:
        print_latency(rows, args.queries)
    if cli:
        print_cli(cli, args.cli_runs, args.model)


if __name__ == "__main__":
    main()
