"""Tune: teach the text tower your own words from a captions file, watch it learn, compare, promote or roll back.

LiT keeps the image tower locked, so a tuned text tower reads the very vectors already in the index: promoting one
changes search at once and re-embeds nothing. The run is `models.train.train` (what `python -m models.train` runs)
in a background task; its loss and held-out recall are plotted after every epoch.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import streamlit as st

from ui import charts, state
from ui.errors import NO_INDEX_FIX, explain
from ui.training import IndexVectorSource, TuneRequest, tune_work, version_rows

TRAIN_MODES = {"head": "text head only (fast, safe)", "last:2": "last 2 encoder layers + head",
               "lora": "LoRA adapters (rank 8)", "whole": "the whole text tower (needs many captions)"}
CAPTION_TYPES = ["csv", "tsv", "tab", "jsonl", "ndjson"]
NO_HELD_OUT = ("No held-out recall: this run had no held-out captions (too few images to hold some out, or a held-out "
               "share of 0), so there is no measure of whether it helps.")


def render() -> None:
    st.title("Tune")
    st.caption("Teach search your own words: a captions file pairs photos with how you would describe them. The image "
               "tower stays locked (LiT), so the index is reused as it is — nothing is re-embedded.")
    try:
        services = state.services()
        backend = services.backend()
        collection = backend.collection
        empty = services.points() == 0
    except Exception as err:
        state.show_error(err)
        return
    if empty:
        st.info(f"Nothing is indexed yet: tuning works (captioned photos are embedded once), but the comparison needs "
                f"indexed photos. Fix: {NO_INDEX_FIX}.")
    _start_form(services, collection)
    _runs(services)
    from ui.compare import compare_versions

    compare_versions(services, collection)


def _start_form(services, collection) -> None:
    rows = version_rows(services.home, collection.image_tower_id)
    with st.form("tune"):
        st.subheader("Start a tuning run")
        path_col, upload_col = st.columns(2)
        captions = path_col.text_input("Captions file on this machine", key="t_captions",
                                       placeholder="/home/me/Pictures/captions.csv",
                                       help="CSV/TSV `image,caption` or JSONL; several captions per image are fine.")
        upload = upload_col.file_uploader("…or upload one", type=CAPTION_TYPES, key="t_upload")
        images_root = path_col.text_input("Images folder (for relative paths)", key="t_root",
                                          placeholder="default: the captions file's folder")
        val = upload_col.text_input("Held-out captions file (optional)", key="t_val",
                                    placeholder="default: hold out 10% of the images")
        a, b, c, d = st.columns(4)
        mode = a.selectbox("Train", list(TRAIN_MODES), format_func=TRAIN_MODES.get, key="t_mode")
        epochs = b.number_input("Epochs", 1, 200, 5, key="t_epochs")
        batch = c.selectbox("Batch size", [8, 16, 32, 64, 128, 256], index=3, key="t_batch")
        lr = d.text_input("Learning rate", key="t_lr", placeholder="default for the mode")
        e, f, g = st.columns(3)
        val_fraction = e.slider("Held-out share of images", 0.0, 0.5, 0.1, 0.05, key="t_valfrac")
        name = f.text_input("Version name", key="t_name", placeholder="default: model-date-time")
        start = g.selectbox("Start from", rows, format_func=lambda r: r.name, key="t_from")
        submitted = st.form_submit_button("Start tuning", type="primary")
    if not submitted:
        return
    try:
        request = TuneRequest(
            captions=_captions_path(services.home, captions, upload), model=str(start.path or collection.model),
            images_root=_optional_path(images_root), val=_optional_path(val), train=mode, epochs=int(epochs),
            batch_size=int(batch), lr=float(lr) if lr.strip() else None, val_fraction=float(val_fraction),
            name=name.strip() or None, device=state.options().device)
        _check(request)
    except (ValueError, OSError) as err:
        st.error(explain(err).markdown())
        return
    _launch(services, request, collection)


def _captions_path(home: Path, typed: str, upload) -> Path:
    """An uploaded file is kept under the data home (`captions/`), so the run can be resumed from the CLI."""
    if upload is not None:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(upload.name).name).lstrip(".") or "captions.csv"
        data = upload.getvalue()
        target = home / "captions" / safe
        if target.is_file() and target.read_bytes() != data:  # another file of the same name: an earlier run may
            digest = hashlib.sha256(data).hexdigest()[:8]  # still resume from the first one, so keep both
            target = target.with_name(f"{target.stem}-{digest}{target.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target
    path = _optional_path(typed)
    if path is None:
        raise ValueError("give a captions file: a path on this machine or an upload")
    if not path.is_file():
        raise ValueError(f"no captions file at {path}")
    return path


def _optional_path(text: str) -> Path | None:
    return Path(text.strip()).expanduser().resolve() if text and text.strip() else None


def _check(request: TuneRequest) -> None:
    """The config's own validation, before a thread is started (bad epochs, batch size, mode, name)."""
    from models.train.config import TrainConfig
    from models.train.run import NAME_PATTERN

    TrainConfig(captions=request.captions, train=request.train, epochs=request.epochs,
                batch_size=request.batch_size, lr=request.lr, val_fraction=request.val_fraction)
    if request.name and not NAME_PATTERN.match(request.name):
        raise ValueError(f"version name {request.name!r}: use letters, digits, '.', '_', '+' or '-'")
    if request.val is not None and not request.val.is_file():
        raise ValueError(f"no held-out captions file at {request.val}")


def _launch(services, request: TuneRequest, collection) -> None:
    if services.tasks.running("train"):
        st.warning("A tuning run is already in progress; wait for it to finish.")
        return
    source = None
    try:
        source = IndexVectorSource(services.backend().store, collection.name, state.library().by_path)
    except Exception:  # noqa: BLE001  (the run falls back to embedding with the locked tower)
        pass
    label = f"Tuning {Path(request.model).name} on {request.captions.name}"
    services.tasks.start("train", label, tune_work(request, services.home, source))
    st.rerun()


def _runs(services) -> None:
    tasks = services.tasks.of_kind("train")
    if not tasks:
        return

    @st.fragment(run_every=1.0 if tasks[0].running else None)
    def _panel() -> None:
        task = services.tasks.of_kind("train")[0]
        st.subheader("Current run" if task.running else "Last run")
        if task.running:
            st.progress(task.progress, text=f"{task.label}: {task.message or 'starting…'}")
        elif task.state == "failed":
            state.show_error(task.exception) if task.exception else st.error(task.error)
        _curves(task.points)
        if task.state == "done" and task.result:
            _summary(services, task.result)
        if st.session_state.get("train-was-running") and not task.running:
            st.session_state["train-was-running"] = False
            st.rerun(scope="app")  # the comparison below gains the new version
        st.session_state["train-was-running"] = task.running

    _panel()


def _curves(points: list[dict]) -> None:
    """Loss and held-out recall per epoch; a curve with nothing to draw says so instead of an empty chart."""
    loss, recall = charts.loss_curve(points), charts.recall_curves(points)
    if loss.empty and recall.empty:
        return
    left, right = st.columns(2)
    left.caption("Training loss")
    if loss.empty:
        left.caption("No epoch has finished yet.")
    else:
        left.line_chart(loss, x_label="epoch", y_label="loss", height=220)
    right.caption("Held-out recall (%) — epoch 0 is the model before tuning")
    if recall.empty:
        right.caption("No held-out captions in this run: nothing to plot.")
    else:
        right.line_chart(recall, x_label="epoch", y_label="%", height=220)


def _summary(services, result: dict) -> None:
    improved = result.get("improved")
    verdict = {True: "improved held-out recall", False: "did not beat the base model", None: "had no held-out set"}
    st.success(f"Saved **{result['name']}** ({result['epochs_completed']} epochs, best epoch {result['best_epoch']}): "
               f"tuning {verdict[improved]}.")
    table = charts.metrics_table({"before": result.get("metrics_before"), "after": result.get("metrics_after")})
    if not charts.has_metrics(table):
        st.caption(NO_HELD_OUT)
    else:
        st.dataframe(table.style.format("{:.1f}", na_rep="—"))
    skipped = sum(report.get("skipped", 0) for report in result.get("data", []))
    if skipped:
        st.caption(f"{skipped} caption rows were skipped (missing images, bad lines).")


if __name__ == "__main__":
    render()
