"""Text-tower versions side by side: held-out recall, training curves, example queries and their score
distributions under each tower — then promote one, or roll back.

Both sides rank through `SearchEngine` with the index's own store and collection; only the text tower differs
(`VersionBackend`), so what the comparison shows is what search would show after promoting.
"""

from __future__ import annotations

import streamlit as st

from ui import charts, state
from ui.training import BASE, VersionBackend, epoch_points, version_rows

EXAMPLE_QUERIES = "a beach at sunset\na dog\nbirthday party\nsnow in the mountains"
SHOWN = 4  # results per query and side
DISTRIBUTION_POOL = 200  # top hits whose scores make the distribution
FEW_PAIRS = 100  # below this many training pairs a promotion asks for confirmation (a guard, not a fitted constant)


def compare_versions(services, collection) -> None:
    st.subheader("Compare text-tower versions")
    rows = version_rows(services.home, collection.image_tower_id)
    if len(rows) == 1:
        st.caption("No tuned version for this index yet: start a run above.")
        return
    label = {row.name: row.name + (" — active" if row.active else "") for row in rows}
    left, right = st.columns(2)
    # Keyed by the number of versions: when a run adds one, B opens on it (a kept key would keep showing the old one).
    a = left.selectbox("Version A", rows, index=0, format_func=lambda r: label[r.name], key=f"cmp_a-{len(rows)}")
    b = right.selectbox("Version B", rows, index=len(rows) - 1, format_func=lambda r: label[r.name],
                        key=f"cmp_b-{len(rows)}")
    _recall(a, b)
    _example_queries(services, collection, a, b)
    _promote(services, collection, rows, b)


def _recall(a, b) -> None:
    """Each tuned version was validated on its own held-out set, next to the base model on that same set."""
    named = {}
    for row in (a, b):
        if row.name != BASE:
            named[f"base on {row.name}'s held-out set"] = row.metadata.get("metrics_before")
            named[row.name] = row.metadata.get("metrics_after")
    if not named:
        st.caption("Pick a tuned version to see its held-out recall.")
        return
    table = charts.metrics_table(named)
    unvalidated = [row.name for row in (a, b) if row.name != BASE and not row.metadata.get("metrics_after")]
    if unvalidated:
        st.caption(f"{' and '.join(dict.fromkeys(unvalidated))}: not validated (no held-out captions), so there is "
                   "no held-out recall to compare.")
    if not charts.has_metrics(table):
        return
    table = table.dropna(axis=1, how="all")
    st.dataframe(table.style.format("{:.1f}", na_rep="—"))
    headline = table.loc[[charts.METRIC_LABELS[k] for k in ("t2i_r1", "t2i_r5", "mean_recall")]]
    st.bar_chart(headline, stack=False, y_label="%", horizontal=True, height=200)
    columns = st.columns(2)
    for column, row in zip(columns, (a, b), strict=True):
        history, before = row.metadata.get("history") or [], row.metadata.get("metrics_before")
        curve = charts.recall_curves(epoch_points(history, before))
        if not curve.empty:
            column.caption(f"{row.name}: held-out recall per epoch (%)")
            column.line_chart(curve, height=200)


def _example_queries(services, collection, a, b) -> None:
    queries = st.text_area("Example queries (one a line)", EXAMPLE_QUERIES, key="cmp_queries", height=110)
    queries = [q.strip() for q in queries.splitlines() if q.strip()][:6]
    if not queries or not st.toggle("Run the example queries with both versions", key="cmp_run"):
        return
    try:
        engines = {row.name: _engine(services, collection, row) for row in (a, b)}
        guard = state.guard()
    except Exception as err:
        state.show_error(err)
        return
    for query in queries:
        st.markdown(f"**{query}**")
        columns = st.columns(2)
        scores = {}
        for column, row in zip(columns, (a, b), strict=True):
            scores[row.name] = _side(column, engines[row.name], guard, query)
        with st.expander("Score distribution of the top hits"):
            st.bar_chart(charts.score_histogram(scores), stack=False, x_label="cosine score", y_label="photos")


def _side(column, engine, guard, query: str) -> list[float]:
    from search.query import build_query

    page = engine.search(build_query(query), limit=SHOWN, min_score=0.0)
    thumbs = guard.thumbnails([r.content_hash for r in page.results])
    shown = [(thumbs.get(r.content_hash), f"{r.calibrated:.0%} · {r.score:.3f}") for r in page.results]
    shown = [(image, caption) for image, caption in shown if image]
    if shown:
        column.image([i for i, _ in shown], caption=[c for _, c in shown], width=110)
    vector, _ = engine.query_vector(build_query(query))
    hits = engine.backend.store.query(engine.collection, vector, limit=DISTRIBUTION_POOL)
    return [h.score for h in hits]


def _engine(services, collection, row):
    return _version_engine(services, str(services.home), collection.name, str(row.path or collection.model),
                           services.generation)


@st.cache_resource(max_entries=4, show_spinner="Loading the text tower…")
def _version_engine(_services, home: str, collection: str, model: str, generation: int):
    import models
    from search.engine import SearchEngine

    bundle = models.create(model, device=state.options().device)
    return SearchEngine(VersionBackend(_services.backend(), bundle))


def _promote(services, collection, rows, chosen) -> None:
    from models import versions

    active = next((r for r in rows if r.active), rows[0])
    st.markdown(f"Search uses **{active.name}** now.")
    concerns = [] if chosen.name == BASE or chosen.active else promotion_concerns(chosen.metadata)
    confirmed = True
    if concerns:
        st.warning(f"Promoting **{chosen.name}** may make search worse: " + "; ".join(concerns) + ".")
        confirmed = st.checkbox(f"Promote {chosen.name} anyway", key="promote-confirm")
    left, right = st.columns(2)
    if left.button(f"Promote {chosen.name}", key="promote", type="secondary" if concerns else "primary",
                   disabled=chosen.name == BASE or chosen.active or not confirmed):
        versions.promote(services.home, chosen.name)
        st.toast(f"Search now uses {chosen.name}")
        st.rerun()
    if right.button("Roll back", key="rollback", disabled=active.name == BASE,
                    help="Re-activate the previously promoted version (or the base model)."):
        now = versions.rollback(services.home, collection.image_tower_id)
        st.toast(f"Search now uses {now or 'the base model'}")
        st.rerun()


def promotion_concerns(metadata: dict) -> list[str]:
    """Why promoting a tuned version is a risk, in words (empty: validated on enough captions and not worse).

    A version trained on a handful of pairs, or never measured on held-out captions, can make every search worse
    without anyone noticing; the page then asks for a confirmation instead of offering a one-click promote."""
    concerns = []
    pairs = (metadata.get("train_size") or {}).get("pairs")
    if pairs is not None and pairs < FEW_PAIRS:
        concerns.append(f"it was trained on only {pairs} caption pair{'' if pairs == 1 else 's'}")
    before, after = metadata.get("metrics_before") or {}, metadata.get("metrics_after") or {}
    if not after:
        concerns.append("it was never validated on held-out captions")
    elif after.get("mean_recall") is not None and before.get("mean_recall") is not None \
            and after["mean_recall"] < before["mean_recall"]:
        concerns.append(f"its held-out recall ({100 * after['mean_recall']:.1f}%) is below the base model's "
                        f"({100 * before['mean_recall']:.1f}%)")
    return concerns
