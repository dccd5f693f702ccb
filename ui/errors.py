"""Errors as people should read them: what went wrong, and the one thing to do about it.

Every page shows failures through `explain`, so a missing index, a locked store or a missing model reads the same
everywhere and always names the fix (a stack trace tells a photographer nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NO_INDEX_FIX = "run `python -m indexer FOLDER`, or add a folder on the **Index** page"


@dataclass(frozen=True)
class Friendly:
    title: str  # one line: what is wrong
    fix: str  # what to do about it (markdown)
    detail: str = ""  # the original message, for the curious

    def markdown(self) -> str:
        return f"**{self.title}**  \nFix: {self.fix}"


class NothingIndexedError(RuntimeError):
    """The index exists but holds no photo yet (a fresh data home)."""


def explain(err: BaseException, home: Path | None = None) -> Friendly:
    """Map an exception from the stores, the owner or the model to a title and a fix."""
    where = f" ({home})" if home else ""
    for kind, make in _RULES:
        friendly = make(err, where) if _is(err, kind) else None
        if friendly is not None:
            return friendly
    return Friendly(f"Something went wrong: {type(err).__name__}", "see the terminal running `python -m ui` for the "
                    "full error; reloading the page retries.", str(err))


def _is(err: BaseException, qualified: str) -> bool:
    """Match by qualified class name along the MRO, so this module imports none of the heavy packages."""
    return any(f"{c.__module__}.{c.__qualname__}" == qualified for c in type(err).__mro__)


def _no_index(err, where):
    return Friendly(f"Nothing is indexed in this data home yet{where}.", NO_INDEX_FIX, str(err))


def _owned(err, where):
    return Friendly(f"Another Loupe process owns this data home{where} but does not answer.",
                    "wait a few seconds and reload (it may be starting), or stop that process; the UI then opens "
                    "the data home itself.", str(err))


def _locked(err, where):
    return Friendly(f"The vector store is locked by another process{where}.",
                    "stop the other Loupe process (`python -m indexer`, another UI) or let it run with `--watch` so "
                    "the UI can go through it; then reload.", str(err))


def _store_down(err, where):
    return Friendly("The vector store cannot be reached.", "check that the Qdrant server in `LOUPE_QDRANT_URL` is "
                    "running (`docker compose up -d qdrant`), then reload.", str(err))


def _owner_down(err, where):
    return Friendly("The Loupe process that owns the data home stopped answering.",
                    "reload the page: with no owner, the UI opens the data home itself.", str(err))


def _owner_auth(err, where):
    return Friendly("The owner of the data home refused the UI's token.",
                    "reload the page (the owner writes a new token each time it starts).", str(err))


def _weights(err, where):
    return Friendly("The model's weights are not available on this machine.",
                    "download them once with network access (`python -m indexer --model NAME FOLDER` fetches them), "
                    "or use `--model offline-lite`, which needs no network.", str(err))


def _unknown_model(err, where):
    if "unknown model" not in str(err):
        return None
    return Friendly("Unknown model.", "pick one of the presets listed in the message, e.g. `offline-lite`.",
                    str(err.args[0]) if err.args else str(err))


def _owner_refused(err, where):
    return Friendly(f"The owner refused the request: {getattr(err, 'detail', err)}",
                    "check the folder path (it must exist and be absolute on the owner's machine).", str(err))


def _api_refused(err, where):
    return Friendly(f"Refused: {getattr(err, 'message', err)}", "check the folder path (it must exist and be "
                    "absolute).", str(err))


def _captions(err, where):
    return Friendly("The captions file cannot be used.", "give a CSV/TSV/JSONL file with `image,caption` rows whose "
                    "images exist (relative paths resolve against the images folder).", str(err))


def _query(err, where):
    return Friendly(f"That query cannot be run: {err}", "write at least one positive term, e.g. `beach - people`.",
                    str(err))


def _home_is_a_file(err, where):
    return Friendly(f"The data home cannot be created{where}: {err}.",
                    "start the UI with `--home FOLDER` (or set LOUPE_HOME) naming a folder; it is created when "
                    "missing.",
                    str(err))


def _image(err, where):
    return Friendly(f"That image cannot be used: {getattr(err, 'reason', err)}.",
                    "use a photo file (JPEG, PNG, HEIC, WebP…); an empty, truncated or non-image file cannot be read.",
                    str(err))


def _refused_value(err, where):
    return Friendly(f"That cannot be done: {err}", "change what the message names and try again.", str(err))


def _nothing(err, where):
    return Friendly(f"The index is empty{where}: no photo has been indexed yet.", NO_INDEX_FIX, str(err))


def _schema(err, where):
    return Friendly("This data home was written by a newer Loupe.", "upgrade Loupe (`pip install -U loupe`).",
                    str(err))


_RULES = [
    ("indexer.stores.homedir.HomeNotAFolderError", _home_is_a_file),
    ("search.backend.NoIndexError", _no_index),
    ("ui.errors.NothingIndexedError", _nothing),
    ("indexer.owner.ownership.HomeOwnedError", _owned),
    ("indexer.stores.vectors.StoreLockedError", _locked),
    ("indexer.stores.vectors.VectorStoreUnavailableError", _store_down),
    ("indexer.owner.client.OwnerUnavailableError", _owner_down),
    ("indexer.owner.client.OwnerAuthError", _owner_auth),
    ("indexer.owner.client.OwnerRequestError", _owner_refused),
    ("indexer.owner.api.ApiError", _api_refused),
    ("models.lit_download.WeightsUnavailable", _weights),
    ("models.train.captions.CaptionsError", _captions),
    ("indexer.stores.migrations.SchemaTooNewError", _schema),
    ("builtins.KeyError", _unknown_model),
    ("search.query.QueryError", _query),
    ("indexer.scan.decode.DecodeError", _image),
    ("builtins.ValueError", _refused_value),  # a form value, a file: the message names it; no query advice
]
