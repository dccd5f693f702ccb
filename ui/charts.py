"""Data for the plots people would rather look at than read: loss and recall curves, score distributions.

Only shaping lives here (pandas frames that `st.line_chart` / `st.bar_chart` draw as they are), so the numbers a
chart shows can be tested without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

RECALL_KEYS = {"t2i_r1": "text→image R@1", "t2i_r5": "text→image R@5", "i2t_r1": "image→text R@1",
               "mean_recall": "mean recall"}
METRIC_LABELS = {"t2i_r1": "text→image R@1", "t2i_r5": "text→image R@5", "t2i_r10": "text→image R@10",
                 "i2t_r1": "image→text R@1", "i2t_r5": "image→text R@5", "i2t_r10": "image→text R@10",
                 "mean_recall": "mean recall"}


def loss_curve(points: Sequence[Mapping]) -> pd.DataFrame:
    """Training loss per epoch (epoch 0, the base model, has none)."""
    rows = [(p["epoch"], p["loss"]) for p in points if p.get("loss") is not None]
    return pd.DataFrame(rows, columns=["epoch", "loss"]).set_index("epoch")


def recall_curves(points: Sequence[Mapping]) -> pd.DataFrame:
    """Held-out recall per epoch, in percent; epoch 0 is the base model. Empty (no columns) when no epoch was
    validated, so callers show an empty state rather than a chart with a null axis."""
    rows = [{"epoch": p["epoch"], **{label: 100 * p[k] for k, label in RECALL_KEYS.items() if p.get(k) is not None}}
            for p in points]
    frame = pd.DataFrame(rows)
    frame = frame.set_index("epoch") if "epoch" in frame else frame
    return frame.dropna(axis=1, how="all").dropna(axis=0, how="all")


def metrics_table(named: Mapping[str, Mapping | None]) -> pd.DataFrame:
    """Rows = held-out metrics in percent (readable labels), one column per model; missing metrics are NaN (float
    columns, so they render as '—' and never as 'None'). See `has_metrics` for the empty state."""
    data = {name: [100 * m[k] if m and m.get(k) is not None else None for k in METRIC_LABELS]
            for name, m in named.items()}
    return pd.DataFrame(data, index=list(METRIC_LABELS.values()), dtype=float)


def has_metrics(table: pd.DataFrame) -> bool:
    """False when no model in the table was validated (nothing to compare: show an empty state, not a table)."""
    return bool(table.notna().any().any())


def score_histogram(scores: Mapping[str, Sequence[float]], bins: int = 20) -> pd.DataFrame:
    """Counts of cosine scores per bin, one column per series, over a shared range (so the shapes compare)."""
    series = {name: np.asarray(values, np.float64) for name, values in scores.items() if len(values)}
    if not series:
        return pd.DataFrame()
    low = min(float(v.min()) for v in series.values())
    high = max(float(v.max()) for v in series.values())
    edges = np.linspace(low, high if high > low else low + 1e-3, bins + 1)
    centres = [f"{(a + b) / 2:.3f}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return pd.DataFrame({name: np.histogram(values, edges)[0] for name, values in series.items()}, index=centres)
