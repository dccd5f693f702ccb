"""Indexer throughput and watch latency on 12-megapixel JPEGs: is decoding hidden behind the model?

    .venv/bin/python bench/index.py [--n 200] [--dir bench/out/decode] [--batch-size 32] [--workers 2]
                                    [--torch-threads 2] [--model offline-lite] [--repeat 2] [--skip-watch]

Measures, on one set of generated photo-like 12 MP JPEGs (bench/decode.py's generator; cached in --dir, so a rerun
generates nothing):

* end-to-end: a real first scan, `IndexerService(settings).scan()` on a fresh data home each pass (walk, catalog,
  read, SHA-256, reduced-size decode, preprocess, thumbnails, model, catalog writes, Qdrant Edge upserts);
* model-only: the same images, decoded and preprocessed beforehand, through `bundle.model.encode_images` in the
  same batches, with torch's threads and with one thread (what the extra intra-op threads buy);
* their ratio (goal ≥ 85%: decoding fully hidden behind the model);
* decode + preprocess, with and without Pillow's reduced-size decode (draft), one thread and the decode pool;
* watch latency: a running `IndexerService.watch()`, files written into the watched folder one at a time, from the
  file's close (or rename) to its point being in the vector store (searchable), p50/p95.

Every throughput is reported twice: img/s of wall-clock time (best of --repeat passes) and img/s per CPU-second of
this process (all its threads). On a shared machine other processes stretch wall time, not the CPU time spent per
image, so the CPU column is the steadier one. The model is warmed up (one batch) before any timed pass; its load
time is never counted. A per-stage CPU breakdown of the best end-to-end pass shows where the time goes, and a CPU
budget turns the per-image CPU costs into the ratio an otherwise idle machine would allow.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402
from PIL import Image, features  # noqa: E402

import indexer.scan.pipeline as pipeline_module  # noqa: E402
from bench.decode import SIZE_12MP, ensure_files  # noqa: E402
from indexer.owner.service import IndexerService  # noqa: E402
from indexer.scan.decode import decode_image  # noqa: E402
from indexer.settings import IndexerSettings  # noqa: E402

log = logging.getLogger("bench.index")
QUALITY = 90


# -- instrumentation ---------------------------------------------------------------------------------------------

class Stages:
    """Calls, wall seconds and CPU seconds (of the calling thread) per named stage; thread-safe."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.calls[name] += 1
                    self.wall[name] += time.perf_counter() - wall
                    self.cpu[name] += time.thread_time() - cpu

        return timed


def instrument(service: IndexerService, stages: Stages) -> Callable[[], None]:
    """Time every stage of the service's pipeline by wrapping instance attributes; returns an undo function."""
    undo: list[Callable[[], None]] = []

    def patch(obj, attr: str, name: str) -> None:
        original = getattr(obj, attr)
        had_own = attr in vars(obj)
        setattr(obj, attr, stages.wrap(name, original))
        undo.append(lambda: setattr(obj, attr, original) if had_own else delattr(obj, attr))

    pipe, catalog, bundle = service.pipeline, service.catalog, service.slot()
    # worker threads
    patch(pipe, "_prepare", "worker: total per file")
    patch(pipeline_module, "content_hash", "worker: sha256")
    patch(pipeline_module, "decode_image", "worker: decode (draft)")
    patch(bundle, "preprocess", "worker: preprocess")
    patch(pipeline_module, "make_thumbnail", "worker: thumbnail")
    patch(catalog, "has_embedding", "worker: catalog.has_embedding")
    # main thread
    patch(service.reconciler, "folder", "main: walk + reconcile")
    patch(service.reconciler, "finish", "main: reconcile finish")
    patch(pipe, "_embed", "main: per batch total")
    patch(bundle.model, "encode_images", "main: model")  # CPU: the main thread's share only
    for method in ("upsert_contents", "set_hashes", "record_embeddings", "mark_indexed"):
        patch(catalog, method, f"main: catalog.{method}")
    patch(service.sync, "upsert_vectors", "main: payloads + Edge upsert")
    patch(service, "_maybe_complete", "main: complete collection")

    def restore() -> None:
        for fn in reversed(undo):
            fn()

    return restore


# -- measurements ------------------------------------------------------------------------------------------------

@dataclass
class Rate:
    wall: float  # images per wall-clock second (best pass)
    cpu: float  # images per CPU-second of this process (best pass)


def best(rates: list[Rate]) -> Rate:
    return Rate(max(r.wall for r in rates), max(r.cpu for r in rates))


def timed(n: int, fn: Callable[[], object]) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Rate(n / (time.perf_counter() - wall), n / (time.process_time() - cpu))


def link_library(files: list[Path], folder: Path) -> Path:
    """A folder holding exactly these files (hard links: no copy, same bytes, new paths)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in files:
        try:
            os.link(f, folder / f.name)
        except OSError:
            shutil.copyfile(f, folder / f.name)
    return folder


def settings_for(home: Path, roots: tuple[Path, ...], args: argparse.Namespace) -> IndexerSettings:
    return IndexerSettings.from_env(home=home, roots=roots, model=args.model, workers=args.workers,
                                    torch_threads=args.torch_threads or None, batch_size=args.batch_size,
                                    thumbnails=True, serve=False)


def warm_up(bundle, batch_size: int) -> None:
    pixel = bundle.preprocess(Image.new("RGB", (640, 480), "gray"))
    bundle.model.encode_images(pixel.expand(batch_size, *pixel.shape).contiguous())


def scan_pass(library: Path, home: Path, args: argparse.Namespace, n: int) -> tuple[Rate, Stages, IndexerService]:
    """One real first scan on a fresh data home (the model is loaded and warmed up before the clock starts)."""
    shutil.rmtree(home, ignore_errors=True)
    service = IndexerService(settings_for(home, (library,), args))  # fresh home: loads the model here
    warm_up(service.slot(), args.batch_size)
    stages = Stages()
    restore = instrument(service, stages)
    reports = []
    rate = timed(n, lambda: reports.append(service.scan()))
    restore()
    if reports[0].embedded != n or reports[0].failed:
        raise RuntimeError(f"scan embedded {reports[0].embedded} of {n} ({reports[0].failed} failed)")
    return rate, stages, service


def preprocessed(bundle, blobs: list[bytes], workers: int) -> list[torch.Tensor]:
    def prep(blob: bytes) -> torch.Tensor:
        return bundle.preprocess(decode_image(blob, min_side=2 * bundle.input_size).image)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(prep, blobs))


def model_pass(bundle, tensors: list[torch.Tensor], batch_size: int) -> Rate:
    """The same images in the same batches through the model alone (inputs decoded and preprocessed beforehand)."""
    batches = [torch.stack(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)]

    def run() -> None:
        for batch in batches:
            bundle.model.encode_images(batch).cpu()

    return timed(len(tensors), run)


def throughput(library: Path, files: list[Path], workdir: Path, args: argparse.Namespace):
    """End-to-end and model-only passes interleaved (so both see the same machine load), best of --repeat each.

    The model-only pass also runs with one torch thread: what the second intra-op thread buys (or wastes).
    Returns (end-to-end, model-only, model-only on 1 thread, (stages of the fastest scan, its seconds), service).
    """
    e2e, model, model1, service, tensors, fastest = [], [], [], None, None, None
    threads = torch.get_num_threads()
    for i in range(args.repeat):
        if service is not None:
            service.close()
        rate, stages, service = scan_pass(library, workdir / f"home-{i}", args, args.n)
        e2e.append(rate)
        if fastest is None or rate.wall > fastest[1]:
            fastest = (stages, rate.wall)
        bundle = service.slot()
        if tensors is None:
            log.info("decoding %d images for the model-only passes", args.n)
            tensors = preprocessed(bundle, [f.read_bytes() for f in files], args.workers)
        model.append(model_pass(bundle, tensors, args.batch_size))
        torch.set_num_threads(1)
        try:
            model1.append(model_pass(bundle, tensors, args.batch_size))
        finally:
            torch.set_num_threads(threads)
        log.info("pass %d: end-to-end %.2f img/s (%.2f img/CPU-s), model-only %.2f img/s (%.2f img/CPU-s), "
                 "model-only 1 thread %.2f img/s (%.2f img/CPU-s)", i + 1, rate.wall, rate.cpu, model[-1].wall,
                 model[-1].cpu, model1[-1].wall, model1[-1].cpu)
    stages, wall_rate = fastest
    return best(e2e), best(model), best(model1), (stages, args.n / wall_rate), service


def decode_rates(bundle, blobs: list[bytes], workers: int, repeat: int) -> dict[str, tuple[Rate, Rate]]:
    """decode + preprocess (a worker's work up to the model tensor), full vs reduced, 1 thread vs the pool.

    Both run in pool threads, as in the pipeline: on the main thread torch would spread the preprocessing's small
    tensor ops over its intra-op threads, which costs more than it saves (measured here: 5 ms → 18 ms + spinning).
    """
    size = 2 * bundle.input_size
    work = {
        "full decode": lambda b: bundle.preprocess(decode_image(b, min_side=None).image),
        f"reduced decode (draft, ≥{size} px)": lambda b: bundle.preprocess(decode_image(b, min_side=size).image),
    }
    out = {}
    for name, fn in work.items():
        rates = []
        for threads in (1, workers):
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(fn, blobs[:threads]))  # warm up each thread
                rates.append(best([timed(len(blobs), lambda f=fn, p=pool: list(p.map(f, blobs)))
                                   for _ in range(repeat)]))
        log.info("%s: 1 thread %.2f img/s, %d threads %.2f img/s", name, rates[0].wall, workers, rates[1].wall)
        out[name] = (rates[0], rates[1])
    return out


def watch_latency(service: IndexerService, folder: Path, files: list[Path], mode: str) -> list[float]:
    """Seconds from each file's close (mode 'write') or rename (mode 'rename') to its point being in the store."""
    store, collection = service.store, service.collection.name
    thread = threading.Thread(target=service.watch, name="bench-watch", daemon=True)
    service.stop.clear()
    thread.start()
    time.sleep(1.0)  # let the observer register its inotify watches
    latencies = []
    try:
        for src in files:
            data = src.read_bytes()
            before = store.count(collection)
            dest = folder / f"{mode}-{src.name}"
            if mode == "write":
                with open(dest, "wb") as f:
                    f.write(data)
                done = time.perf_counter()  # the close is the 'complete' moment
            else:
                tmp = folder / f".{dest.name}.part"  # hidden and ignored (*.part) until renamed
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, dest)
                done = time.perf_counter()
            deadline = done + 60
            while store.count(collection) <= before:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{dest.name} not searchable after 60 s")
                time.sleep(0.005)
            latencies.append(time.perf_counter() - done)
            log.info("watch (%s) %s: %.0f ms", mode, dest.name, latencies[-1] * 1e3)
            time.sleep(0.3)  # one file at a time: let the loop go idle again
    finally:
        service.stop.set()
        thread.join(timeout=30)
    return latencies


# -- output ------------------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_table(e2e: Rate, model: Rate, model1: Rate, decode: dict[str, tuple[Rate, Rate]], workers: int,
                watch: dict[str, list[float]]) -> None:
    print("| measurement | img/s (wall, best) | img/s per CPU-second | vs model-only (wall) | vs model-only (CPU) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| model-only: `encode_images` on pre-decoded batches | {model.wall:.1f} | {model.cpu:.1f} | 100% | 100% |")
    print(f"| model-only, 1 torch thread | {model1.wall:.1f} | {model1.cpu:.1f} | {model1.wall / model.wall:.0%} "
          f"| {model1.cpu / model.cpu:.0%} |")
    print(f"| end-to-end: first `scan()`, fresh home, thumbnails on | {e2e.wall:.1f} | {e2e.cpu:.1f} "
          f"| **{e2e.wall / model.wall:.0%}** | {e2e.cpu / model.cpu:.0%} |")
    for name, (one, many) in decode.items():
        print(f"| decode + preprocess, {name}, 1 thread | {one.wall:.1f} | {one.cpu:.1f} | | |")
        print(f"| decode + preprocess, {name}, pool of {workers} | {many.wall:.1f} | {many.cpu:.1f} | | |")
    (full1, fullN), (red1, redN) = decode.values()
    print(f"| **reduced / full decode** (1 thread; pool) | {red1.wall / full1.wall:.2f}x; "
          f"{redN.wall / fullN.wall:.2f}x | {red1.cpu / full1.cpu:.2f}x; {redN.cpu / fullN.cpu:.2f}x | | |")
    for mode, lat in watch.items():
        what = "write + close" if mode == "write" else "write temp + rename"
        print(f"| watch latency, {what} → searchable, {len(lat)} files | p50 **{pct(lat, 50) * 1e3:.0f} ms**, "
              f"p95 {pct(lat, 95) * 1e3:.0f} ms | max {max(lat) * 1e3:.0f} ms | | |")


def print_breakdown(stages: Stages, wall_per_run: float, n: int) -> None:
    print(f"\nWhere the best end-to-end pass spent its time ({n} images, {wall_per_run:.1f} s wall). CPU ms per "
          "image is the calling thread's CPU time; wall includes waiting for the cores other threads hold.\n")
    print("| stage | calls | CPU ms / image | wall ms / image | share of pass wall |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(stages.calls, key=lambda k: (not k.startswith("main"), -stages.cpu[k])):
        print(f"| {name} | {stages.calls[name]} | {stages.cpu[name] / n * 1e3:.1f} | {stages.wall[name] / n * 1e3:.1f} "
              f"| {stages.wall[name] / wall_per_run:.0%} |")


def print_budget(stages: Stages, model: Rate, model1: Rate, n: int, cpus: int) -> None:
    """The CPU arithmetic behind the ratio, free of other processes' load: what a quiet machine would allow."""
    compute_ms = 1e3 / model1.cpu  # the model's own work per image (one thread: no spinning, no sync)
    worker_ms = stages.cpu["worker: total per file"] / n * 1e3
    main_ms = sum(v for k, v in stages.cpu.items() if k.startswith("main:") and k not in
                  ("main: per batch total", "main: model")) / n * 1e3
    speedup = max(1.0, model.wall / model1.wall)  # what torch's extra threads buy the model alone
    e2e_max = min(cpus * 1e3 / (compute_ms + worker_ms + main_ms), 1e3 / compute_ms)  # img/s
    model_max = speedup * 1e3 / compute_ms
    print(f"\nCPU budget per image: model {compute_ms:.0f} ms (1 thread; {1e3 / model.cpu:.0f} ms of CPU with "
          f"{torch.get_num_threads()} threads), decode pool {worker_ms:.0f} ms (read, hash, decode, preprocess, "
          f"thumbnail), catalog + store writes {main_ms:.1f} ms. On {cpus} otherwise idle cores end-to-end can reach "
          f"at most {cpus} / {compute_ms + worker_ms + main_ms:.0f} ms = {e2e_max:.1f} img/s, model-only "
          f"{model_max:.1f} img/s (its extra threads measured {model.wall / model1.wall:.2f}x of one): a ceiling of "
          f"**{min(1.0, e2e_max / model_max):.0%}**. Decoding is hidden only if the model leaves cores idle.")


def main(argv: list[str] | None = None) -> None:
    cpus = os.cpu_count() or 1
    default_workers, default_torch = IndexerSettings(home=Path(".")).thread_plan(cuda=False)  # CPU inference
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="12 MP JPEGs in the scanned library (default 200)")
    parser.add_argument("--dir", type=Path, default=Path("bench/out/decode"),
                        help="cache of generated JPEGs, shared with bench/decode.py (default bench/out/decode)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (indexer default 32)")
    parser.add_argument("--workers", type=int, default=default_workers,
                        help=f"decode pool threads (indexer default: CPUs, at most 8 = {default_workers})")
    parser.add_argument("--torch-threads", type=int, default=default_torch,
                        help=f"torch intra-op threads (indexer default on CPU: half the CPUs = {default_torch})")
    parser.add_argument("--model", default="offline-lite", help="model preset (default offline-lite)")
    parser.add_argument("--repeat", type=int, default=2, help="passes per throughput; the best is reported")
    parser.add_argument("--decode-n", type=int, default=60, help="images in the decode rows (full decode is slow)")
    parser.add_argument("--watch-files", type=int, default=20, help="files per watch-latency mode")
    parser.add_argument("--watch-modes", nargs="+", choices=["write", "rename"], default=["write", "rename"])
    parser.add_argument("--skip-watch", action="store_true", help="skip the watch-latency rows")
    parser.add_argument("--memory", action="store_true",
                        help="also run a real --watch owner (bench/owner_memory.py): peak RSS while indexing, "
                             "RSS after --idle seconds, with and without releasing the idle model")
    parser.add_argument("--idle", type=float, default=60.0, help="idle seconds before the memory table's last sample")
    parser.add_argument("--workdir", type=Path, help="data homes and library links (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("indexer", "models", "watchdog", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    n_watch = 0 if args.skip_watch else args.watch_files * len(args.watch_modes)
    files = ensure_files(args.dir, args.n + n_watch, QUALITY, cpus)  # watch files: contents the scan never saw
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="loupe-bench-index-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        library = link_library(files[:args.n], workdir / "library")
        mean_mb = sum(f.stat().st_size for f in files[:args.n]) / args.n / 1e6

        e2e, model, model1, (stages, wall_per_run), service = throughput(library, files[:args.n], workdir, args)
        bundle = service.slot()
        blobs = [f.read_bytes() for f in files[:args.decode_n]]
        decode = decode_rates(bundle, blobs, args.workers, args.repeat)
        del blobs

        watch: dict[str, list[float]] = {}
        if not args.skip_watch:
            for k, mode in enumerate(args.watch_modes):
                chunk = files[args.n + k * args.watch_files: args.n + (k + 1) * args.watch_files]
                watch[mode] = watch_latency(service, library, chunk, mode)
        settle = service.settings.settle
        service.close()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"\n{args.n} JPEGs {SIZE_12MP[0]}x{SIZE_12MP[1]} (mean {mean_mb:.1f} MB, quality {QUALITY}); model "
        f"{args.model}, batch {args.batch_size}, {bundle.input_size} px input; {cpus} CPUs "
        f"({platform.processor() or platform.machine()}); torch {torch.__version__} with "
        f"{torch.get_num_threads()} intra-op threads on {bundle.model.device}; decode pool {args.workers} threads; "
        f"Pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}; best of {args.repeat} "
        f"passes; watch settle {settle} s (closed files: 0.3 s quiet)\n"
    )
    print_table(e2e, model, model1, decode, args.workers, watch)
    print_breakdown(stages, wall_per_run, args.n)
    print_budget(stages, model, model1, args.n, cpus)
    if args.memory:
        from bench.owner_memory import memory_table

        with tempfile.TemporaryDirectory() as tmp:
            print(f"\nmemory of a `--watch` owner indexing the same {args.n} files:\n")
            print(memory_table(files[:args.n], args.model, args.idle, Path(tmp)))


if __name__ == "__main__":
    main()
