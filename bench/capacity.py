"""How Qdrant Edge's disk use, RAM, index build time and query latency grow with the library: the capacity plan's data.

    python -m bench.capacity [--max 300000] [--dims 1000 768] [--quant none int8] [--queries 200] [--dir DIR]

For each (dims, quantization) pair one on-disk Edge shard is filled in chunks; at 10k, 100k, 300k (and 1M with
`--max 1000000`) points it is optimised (HNSW built, as `EdgeVectorStore.optimize` does after a bulk load) and
measured: upsert rate, HNSW build wall/CPU seconds, bytes on disk (segments, and the WAL apart: it is transient).
Then a fresh process opens the shard, as a restarted owner would, and measures what serving costs: reopen time,
RSS after the queries, HNSW query latency p50/p95, brute-force (exact) latency, and HNSW recall@10 against the
exact answer. Prints one markdown table.

Why it talks to `qdrant_edge` directly: `indexer.stores.vectors_edge.EdgeVectorStore` takes no quantization or
memory-placement config (it creates shards with Edge's defaults), and the question here is precisely what those
settings buy. The unquantized rows use exactly the store's defaults (vectors `Cached`, cosine, WAL on), the same
payload (`indexer.stores.vectors.build_payload`), point ids (`point_id`) and payload indexes (`INDEXED_FIELDS`), so they
stand for what Loupe does today. The int8 rows are the memory-saving layout a server deployment would use:
scalar int8 quantization kept in RAM (`Pinned`), original vectors `Cold` on disk, HNSW search with rescoring.

Synthetic vectors, because neither a million photos nor the time to embed them exists here: 1000-d vectors are
offline-lite-like (the square root of a softmax over 1000 classes, peaked on a few "subjects"), 768-d ones are
LiT-like (a 64-d gaussian mixture mapped linearly into 768-d: clusters of similar photos, low intrinsic dimension).
Uniform random vectors would be the worst case for HNSW; real embeddings have far lower intrinsic dimension.

Timings on a shared 2-core machine are noisy (other processes compete for the cores): CPU seconds are printed next
to wall seconds for the build, and ratios between rows mean more than absolute numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from indexer.stores.vectors import INDEXED_FIELDS, build_payload, point_id

CHECKPOINTS = (10_000, 100_000, 300_000, 1_000_000)
CHUNK = 1_000  # points per upsert call. Larger calls skew reopen: Edge replays the last WAL entries into RAM
CENTRES = 2_000  # "subjects" in the synthetic library
LATENT = 64  # intrinsic dimension of the synthetic LiT-like vectors
EXACT_QUERIES = 20  # brute force is slow at 1M; 20 queries give a usable median and the recall reference
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "float": qe.PayloadSchemaType.Float}


@dataclass
class Row:
    dims: int
    quant: str
    points: int
    upsert_per_s: float
    build_s: float
    build_cpu_s: float
    disk_mb: float
    wal_mb: float
    load_s: float
    rss_anon_mb: float
    rss_file_mb: float
    exact_p50: float
    hnsw_p50: float
    hnsw_p95: float
    recall: float


class Library:
    """Deterministic synthetic embeddings (see the module docstring for why they look the way they do)."""

    def __init__(self, dims: int, seed: int = 0):
        self.dims = dims
        self.rng = np.random.default_rng(0)  # the library's structure is shared by every seed ...
        if dims == 1000:
            self.centres = self.rng.standard_normal((CENTRES, dims), dtype=np.float32)
        else:  # low intrinsic dimension, as real image embeddings have: a random linear map of a 64-d mixture
            self.centres = self.rng.standard_normal((CENTRES, LATENT), dtype=np.float32)
            self.basis = self.rng.standard_normal((LATENT, dims), dtype=np.float32) / np.sqrt(LATENT)
        self.rng = np.random.default_rng(seed + 1)  # ... the photos drawn from it differ (queries use another seed)

    def vectors(self, n: int) -> np.ndarray:
        which = self.rng.integers(0, CENTRES, n)
        spread = self.rng.uniform(0.3, 1.0, (n, 1)).astype(np.float32)  # bursts of near-duplicates to loners
        if self.dims == 1000:  # offline-lite: sqrt(softmax(logits)) is unit-norm by construction
            logits = 3.0 * self.centres[which] + 1.5 * spread * self.rng.standard_normal((n, 1000), dtype=np.float32)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            out = np.sqrt(p)
        else:
            latent = self.centres[which] + spread * self.rng.standard_normal((n, LATENT), dtype=np.float32)
            out = latent @ self.basis + 0.05 * self.rng.standard_normal((n, self.dims), dtype=np.float32)
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _payload(i: int) -> tuple[str, dict]:
    digest = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
    path = f"/photos/{2000 + i % 25}/{(i // 1000) % 12 + 1:02d}/IMG_{i:07d}.jpg"
    payload = build_payload(digest, [path], 1.6e9 + i * 60.0, 4032, 3024, tags=("outdoor",) if i % 3 else (),
                            camera="Apple iPhone 12")
    return point_id(digest), payload


def _config(dims: int, quant: str) -> qe.EdgeConfig:
    if quant == "none":  # EdgeVectorStore's exact config
        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dims, distance=qe.Distance.Cosine))
    scalar = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
    vectors = qe.EdgeVectorParams(size=dims, distance=qe.Distance.Cosine, memory=qe.Memory.Cold)
    return qe.EdgeConfig(vectors=vectors, quantization_config=scalar)


def _du(path: Path) -> int:
    """Allocated bytes, not apparent sizes: Qdrant preallocates sparse mmap files that take no disk yet."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _rss_mb() -> tuple[float, float]:
    """(anonymous, file-backed) resident MB: heap vs mmapped store pages (reclaimable, but needed for speed)."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                found[key] = int(value.split()[0]) / 1024
    return found.get("RssAnon", float("nan")), found.get("RssFile", float("nan"))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads: Edge's optimiser runs on its own threads
    return usage.ru_utime + usage.ru_stime


def _timed_queries(shard: qe.EdgeShard, queries: np.ndarray, params: qe.SearchParams | None) -> tuple[list, list]:
    latencies, answers = [], []
    for q in queries:
        start = time.perf_counter()
        found = shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q), params=params, with_payload=False))
        latencies.append((time.perf_counter() - start) * 1000)
        answers.append({str(p.id) for p in found})
    return latencies, answers


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def probe(path: Path, dims: int, quant: str, n_queries: int) -> dict:
    """Open a built shard the way a freshly started owner would and measure what serving costs.

    Runs in its own process (see `_serve_stats`), so RSS counts only what loading and searching touch: the builder's
    allocator leftovers would otherwise inflate it. Order matters: HNSW queries (what users run) before the RSS
    reading, the brute-force reference (which pages every original vector in) after it.
    """
    queries = Library(dims, seed=1).vectors(n_queries)  # same distribution as the library, different draws
    rss0 = _rss_mb()
    start = time.perf_counter()
    shard = qe.EdgeShard.load(str(path))
    load_s = time.perf_counter() - start
    approx = qe.SearchParams(quantization=qe.QuantizationSearchParams(rescore=True)) if quant != "none" else None
    _timed_queries(shard, queries[:10], approx)  # first touches of the mmaps, as a long-running owner has had
    hnsw_ms, found = _timed_queries(shard, queries, approx)
    (anon, file), (anon0, file0) = _rss_mb(), rss0
    exact = qe.SearchParams(exact=True, quantization=qe.QuantizationSearchParams(ignore=True))
    exact_ms, truth = _timed_queries(shard, queries[:EXACT_QUERIES], exact)
    shard.close()
    # recall over the queries that have a brute-force answer (zip stops at the shorter list)
    recall = statistics.mean(len(f & t) / max(1, len(t)) for f, t in zip(found, truth, strict=False))
    return {"load_s": load_s, "rss_anon_mb": anon - anon0, "rss_file_mb": file - file0,
            "exact_p50": _p(exact_ms, 50), "hnsw_p50": _p(hnsw_ms, 50),
            "hnsw_p95": _p(hnsw_ms, 95), "recall": recall}


def _serve_stats(path: Path, dims: int, quant: str, n_queries: int) -> dict:
    command = [sys.executable, "-m", "bench.capacity", "--probe", str(path), "--dims", str(dims), "--quant", quant,
               "--queries", str(n_queries)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_config(dims: int, quant: str, checkpoints: list[int], n_queries: int, workdir: Path) -> list[Row]:
    path = workdir / f"edge-{dims}-{quant}"
    shutil.rmtree(path, ignore_errors=True)
    library = Library(dims)
    shard = qe.EdgeShard.create(str(path), _config(dims, quant))
    for field, kind in INDEXED_FIELDS.items():
        shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))
    rows: list[Row] = []
    have = 0
    for target in checkpoints:
        upsert_s = 0.0
        while have < target:
            n = min(CHUNK, target - have)
            vectors = library.vectors(n)
            points = []
            for j in range(n):
                pid, payload = _payload(have + j)
                points.append(qe.Point(pid, vectors[j], payload))
            start = time.perf_counter()
            shard.update(qe.UpdateOperation.upsert_points(points))
            shard.flush()  # lets Edge truncate its WAL, else a reopen replays (and holds in RAM) every chunk
            upsert_s += time.perf_counter() - start
            have += n
        added = target - (rows[-1].points if rows else 0)
        wall, cpu = time.perf_counter(), _cpu_s()
        shard.optimize()
        build_s, build_cpu_s = time.perf_counter() - wall, _cpu_s() - cpu
        shard.close()  # flushes; the serving process opens it next, as a restarted owner would
        wal = _du(path / "wal")
        disk = _du(path) - wal
        stats = _serve_stats(path, dims, quant, n_queries)
        rows.append(Row(dims, quant, target, added / upsert_s, build_s, build_cpu_s, disk / 2**20, wal / 2**20,
                        **stats))
        print(_line(rows[-1]), flush=True)  # partial results survive an interrupted long run
        shard = qe.EdgeShard.load(str(path))
    shard.close()
    shutil.rmtree(path, ignore_errors=True)
    return rows


HEADER = (
    "| dims | vectors | points | upsert/s | HNSW build s (CPU s) | disk MB | WAL MB | reopen s | RSS MB heap + mmap "
    "| exact p50 ms | HNSW p50 / p95 ms | recall@10 |\n"
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _line(r: Row) -> str:
    vectors = "fp32" if r.quant == "none" else "int8 SQ (RAM) + fp32 (disk)"
    return (
        f"| {r.dims} | {vectors} | {r.points:,} | {r.upsert_per_s:,.0f} | {r.build_s:,.1f} ({r.build_cpu_s:,.1f}) "
        f"| {r.disk_mb:,.0f} | {r.wal_mb:,.0f} | {r.load_s:.2f} | {r.rss_anon_mb:,.0f} + {r.rss_file_mb:,.0f} "
        f"| {r.exact_p50:.1f} "
        f"| {r.hnsw_p50:.2f} / {r.hnsw_p95:.2f} | {r.recall:.3f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=300_000, help="largest library (1000000 for the 1M rows)")
    parser.add_argument("--dims", type=int, nargs="+", default=[1000, 768], help="1000: offline-lite, 768: LiT")
    parser.add_argument("--quant", nargs="+", choices=["none", "int8"], default=["none", "int8"])
    parser.add_argument("--queries", type=int, default=200, help="HNSW queries per checkpoint")
    parser.add_argument("--dir", type=Path, default=None, help="where the shards go (default: a temp dir)")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # internal: measure one built shard
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.dims[0], args.quant[0], args.queries)))
        return
    checkpoints = [c for c in CHECKPOINTS if c < args.max] + [args.max]
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="loupe-capacity-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Qdrant Edge capacity, {os.cpu_count()} CPUs, checkpoints {checkpoints}, shards under {workdir}\n")
    print(HEADER, flush=True)
    rows: list[Row] = []
    start = time.perf_counter()
    for dims in args.dims:
        for quant in args.quant:
            rows += run_config(dims, quant, checkpoints, args.queries, workdir)
    print(f"\n{len(rows)} rows in {time.perf_counter() - start:,.0f} s")
    if args.dir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
