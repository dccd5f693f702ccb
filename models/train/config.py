"""`TrainConfig`: everything one tuning run is told, in one frozen dataclass (saved with the run for `--resume`).

The defaults follow LiT's recipe where it applies to a small personal data set: AdamW with linear warmup and cosine
decay, a learnable temperature, the image tower locked (Zhai et al., "LiT: Zero-Shot Transfer with Locked-image text
Tuning", CVPR 2022). The learning rate depends on how much of the text tower moves (`--train`): a fresh head wants a
larger step than a pretrained encoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

DEFAULT_MODEL = "offline-lite"
DEFAULT_LR = {"whole": 2e-5, "last": 5e-5, "lora": 5e-4, "head": 1e-3}
# `--keep auto`: pick the epoch by validation recall only when the validation split has at least this many images.
# Below it one photo moves R@1 by several points, and picking the best of ~10 epochs on such a split mostly picks
# noise (an early epoch): bench/tuning_dev.py (4-fold on the in-house dev captions) measured the last epoch of the
# full cosine schedule ahead of the picked one at 100 and ~280 pairs. The split is still measured and reported (and
# gates `--promote`); it just does not choose.
MIN_SELECT_VAL_IMAGES = 50
KEEP_CHOICES = ("auto", "best", "last")


@dataclass(frozen=True)
class TrainMode:
    """What part of the text tower trains: 'whole', 'last' (N encoder layers + head), 'lora' or 'head'."""

    kind: str
    layers: int = 0  # only for 'last'

    @classmethod
    def parse(cls, text: str) -> TrainMode:
        kind, _, n = text.partition(":")
        if kind == "last":
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"--train last:N needs a positive layer count, got {text!r}")
            return cls("last", int(n))
        if kind in ("whole", "lora", "head") and not n:
            return cls(kind)
        raise ValueError(f"--train must be whole, last:N, lora or head, not {text!r}")

    def __str__(self) -> str:
        return f"last:{self.layers}" if self.kind == "last" else self.kind


@dataclass(frozen=True)
class TrainConfig:
    captions: Path | None = None  # captions file (CSV/TSV/JSONL); None only when resuming from a run's config
    images_root: Path | None = None  # relative image paths resolve here (default: the captions file's folder)
    image_vectors: Path | None = None  # precomputed vectors by key (.npz); rows then name keys, not files
    val: Path | None = None  # held-out captions file; else a seeded split by image (val_fraction)
    val_fraction: float = 0.1  # share of *images* held out for validation when no --val file is given
    model: str = DEFAULT_MODEL  # base preset, custom pair, or a saved tuned dir (continue tuning)
    name: str | None = None  # output version name; default `<base>-<YYYYmmdd-HHMMSS>`
    train: str = "head"  # whole | last:N | lora | head
    lora_rank: int = 8  # LoRA rank r on attention q/v (Hu et al. 2021)
    lora_alpha: float = 16.0  # LoRA scale alpha (update is alpha/r · B·A)
    lr: float | None = None  # peak learning rate; None = DEFAULT_LR for the mode
    weight_decay: float = 0.01  # AdamW decoupled decay on matrices (not biases, norms, temperature)
    epochs: int = 10
    batch_size: int = 64  # contrastive batch: the negatives of each caption are the other images in it
    accum_steps: int = 1  # micro-batches per optimizer step (each micro-batch keeps its own negatives)
    warmup_fraction: float = 0.05  # share of optimizer steps spent in linear warmup before cosine decay
    patience: int = 3  # epochs without a better validation score before stopping early (0: never stop)
    keep: str = "auto"  # which epoch is saved: best (by validation), last, or auto (best iff ≥ MIN_SELECT_VAL_IMAGES)
    seed: int = 0
    device: str | None = None  # None/'auto': CUDA when available
    max_epochs_this_run: int | None = None  # stop (resumably) after this many epochs in this process
    cache_text: bool = True  # head / last:N: run the frozen text layers once per caption, not every step

    def __post_init__(self) -> None:
        TrainMode.parse(self.train)
        checks = [
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 2, "--batch-size must be at least 2 (a contrastive batch needs negatives)"),
            (self.accum_steps >= 1, "--accum-steps must be at least 1"),
            (0.0 <= self.warmup_fraction < 1.0, "--warmup-fraction must be in [0, 1)"),
            (self.patience >= 0, "--patience must be >= 0"),
            (self.keep in KEEP_CHOICES, f"--keep must be one of {', '.join(KEEP_CHOICES)}"),
            (self.lora_rank >= 1, "--lora-rank must be at least 1"),
            (self.lr is None or self.lr > 0, "--lr must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def mode(self) -> TrainMode:
        return TrainMode.parse(self.train)

    def selects_best(self, val_images: int) -> bool:
        """Whether validation recall picks the saved epoch (and early stopping applies) for a split of that size."""
        return self.keep == "best" or (self.keep == "auto" and val_images >= MIN_SELECT_VAL_IMAGES)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode.kind]

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown training settings {unknown} (written by another Loupe version?)")
        paths = {"captions", "images_root", "image_vectors", "val"}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in data.items()})

    def hyperparameters(self) -> dict:
        """What the saved tower's metadata records about how it was trained."""
        keys = ("train", "lora_rank", "lora_alpha", "weight_decay", "epochs", "batch_size", "accum_steps",
                "warmup_fraction", "patience", "keep", "seed", "val_fraction")
        return {k: getattr(self, k) for k in keys} | {"lr": self.peak_lr}
