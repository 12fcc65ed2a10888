"""Feature importance (``results/importance_<variant>.json``): the accuracy drop when a feature is shuffled, ± its
standard error across folds, top 20 per explained variant."""

from __future__ import annotations

from finmlops.monitoring.explain import GlobalImportance
from finmlops.report.base import Section, empty, note, read_model
from finmlops.report.charts import PALETTE, hbar_chart
from finmlops.settings import Settings

TITLE = "Feature importance"
TOP = 20


def render(imp: GlobalImportance) -> str:
    top = imp.features[:TOP]
    rows = [
        (f.feature, f.accuracy_drop, f.accuracy_drop_se, PALETTE[0] if f.accuracy_drop > 0 else "#aaa") for f in top
    ]
    chart = hbar_chart(
        rows,
        title=f"{imp.variant} ({imp.feature_set} features): accuracy drop when shuffled, top {len(top)}",
        x_label="accuracy drop (± standard error across folds)",
    )
    p = imp.pooled
    return chart + note(
        f"{imp.variant}: walk-forward test years {', '.join(map(str, imp.test_years))}, accuracy {p.accuracy:.4f} ± "
        f"{p.accuracy_se:.4f} on {p.n} windows, {imp.n_repeats} shuffles per feature and fold. A drop inside its "
        "error bar is noise."
    )


def build(settings: Settings) -> Section:
    paths = sorted(settings.results_dir.glob("importance_*.json"))
    if not paths:
        return empty("importance", TITLE, "finmlops explain --variant NAME --global", "feature importance")
    body = ""
    for path in paths:
        imp = read_model(path, GlobalImportance)
        if imp is not None:  # removed since the glob
            body += render(imp)
    return Section("importance", TITLE, body, tuple(map(str, paths)))
