"""`IndexerSettings`: everything `python -m indexer` can be told, in one frozen dataclass.

Environment variables are read only for deployment paths and URLs (`LOUPE_HOME`, `LOUPE_DB_URL`,
`LOUPE_QDRANT_URL`, `LOUPE_QDRANT_API_KEY`); everything else comes from flags.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from models.home import data_home

DEFAULT_MODEL = "lit-b16b-2"  # the recommended LiT checkpoint, downloaded once
FALLBACK_MODEL = "offline-lite"  # what a first run uses when the default cannot be fetched (air-gapped)
# How every command line states the default (`indexer --help`, `ui --help`, README): one sentence, one place.
DEFAULT_MODEL_HELP = (f"default: the index's recorded model, else {DEFAULT_MODEL}; a first run that cannot download "
                      f"it uses {FALLBACK_MODEL}")
DEFAULT_IGNORES = ("*.tmp", "*.part", "*.crdownload", "*~", ".#*", "*.swp", "@eaDir", "#recycle", ".Trash*")


@dataclass(frozen=True)
class IndexerSettings:
    home: Path  # data home: catalog, vectors, thumbnails, model cache, owner lock
    roots: tuple[Path, ...] = ()  # folders to index (absolute)
    model: str | None = None  # preset; None = the index's recorded model, else DEFAULT_MODEL
    device: str | None = None  # None = CUDA when available
    runtime: str = "torch"  # inference: torch, onnxruntime, or auto (the fastest option per tower, timed once)
    precision: str | None = None  # CPU: fp32, bf16 (torch), auto; None: auto under runtime auto, else fp32
    db_url: str | None = None  # SQLAlchemy URL; None = SQLite under home
    qdrant_url: str | None = None  # Qdrant server; None = Qdrant Edge embedded under home
    qdrant_api_key: str | None = None
    shard_number: int = 1  # server only: collection sharding ...
    replication_factor: int = 1  # ... replication ...
    write_consistency_factor: int = 1  # ... and write quorum
    watch: bool = False  # follow filesystem events after the scan
    poll: float | None = None  # seconds between polls instead of native events (network mounts)
    settle: float = 2.0  # a file must keep size+mtime this long before it is read
    batch_size: int = 32  # images per model call
    workers: int = 0  # decode threads; 0 = one per core, at most 8 (`thread_plan`)
    torch_threads: int = 0  # torch intra-op threads for CPU inference; 0 = balanced (`thread_plan`)
    follow_symlinks: bool = False
    include_hidden: bool = False
    ignore: tuple[str, ...] = DEFAULT_IGNORES  # fnmatch globs on names (files and folders)
    thumbnails: bool = True
    thumbnail_size: int = 320
    max_megapixels: float = 180.0  # decompression-bomb guard
    tag_vocabulary: str | None = None  # tag new photos on arrival with this vocabulary ('default' or a file)
    serve: bool = True  # serve the local API while owning the data home
    visual_vectors: bool = True  # store a visual vector beside the text-aligned one (near-duplicates, "more like this")
    # A watching owner lets its model go once indexing has been idle `image_idle_s` and no query came for
    # `text_idle_s`; the `--watch` owner then stops the worker process that held it, so an idle owner is a parent
    # without torch (issue 14: <= 400 MB after 60 s without work; bench/owner_memory.py). The price is the next
    # query's wake: worker start (~3 s) and model load (~5 s, mostly importing transformers and timm) make ~9 s for
    # offline-lite on 2 cores (same bench). A UI session or a burst of searches keeps it warm; a query now and then
    # pays it. Raise `text_idle_s` to trade memory for it.
    image_idle_s: float = 20.0
    text_idle_s: float = 40.0
    optimize_after: int = 2000  # build the embedded store's HNSW index once this many vectors were added since

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None, **overrides) -> IndexerSettings:
        """Defaults ← environment (deployment URLs only) ← explicit overrides (flags). Unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown indexer settings: {sorted(unknown)}")
        env = {
            "db_url": os.environ.get("LOUPE_DB_URL") or None,
            "qdrant_url": os.environ.get("LOUPE_QDRANT_URL") or None,
            "qdrant_api_key": os.environ.get("LOUPE_QDRANT_API_KEY") or None,
        }
        values = {**env, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(home=data_home(home), **values)

    def to_json(self) -> str:
        """Every field, for a child process (`indexer.watcher.worker`): paths as text, tuples as lists.

        Path names that are not UTF-8 survive: they are `os.fsdecode`d strings (surrogate escapes), which JSON keeps.
        """
        return json.dumps({k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, tuple) else v)
                           for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> IndexerSettings:
        """The inverse of `to_json`."""
        values = json.loads(text)
        values["home"] = Path(values["home"])
        values["roots"] = tuple(Path(r) for r in values["roots"])
        values["ignore"] = tuple(values["ignore"])
        return cls(**values)

    def thread_plan(self, cuda: bool, cpus: int | None = None) -> tuple[int, int]:
        """(decode workers, torch intra-op threads), explicit settings kept, zeros balanced to the core count.

        Every core may decode (at most 8): a new 12 MP JPEG still costs a worker more CPU than offline-lite's forward
        pass (bench/index.py, 2 cores: 77 vs 50 ms per image), and a decode thread that runs ahead only blocks, never
        spins. On CPU torch gets half the cores, not all of them: its threads spin-wait between ops, and with every
        core also decoding that burnt CPU the decoders needed (2 cores, same library, bench/index.py: 2 workers +
        1 torch thread 10.0-10.8 img/s at 6.5-7.1 img per CPU-second; 2 + 2 (torch's default) 9.8-12.5 img/s at
        5.2-6.5; 1 + 1 7.9 img/s). With CUDA torch's own default is left alone (0)."""
        cpus = cpus or os.cpu_count() or 2
        workers = self.workers or min(8, cpus)
        if cuda:
            return workers, self.torch_threads
        return workers, self.torch_threads or max(1, cpus // 2)

    @property
    def catalog_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def thumbnails_dir(self) -> Path:
        return self.home / "thumbnails"
