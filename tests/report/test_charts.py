"""The SVG charting: round ticks, and reference labels that stay out of the data's way."""

from __future__ import annotations

import re

import pytest

from finmlops.report.charts import MARGIN, Interval, interval_chart, nice_ticks


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0.43, 0.57) == [0.4, 0.45, 0.5, 0.55, 0.6]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(2.0, 2.0) == [1.8, 1.9, 2.0, 2.1, 2.2]
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0.0, float("nan"))


def test_the_coin_flip_label_sits_above_the_plot_not_on_the_pooled_points() -> None:
    # The last group ("pooled") is drawn at the right end, where a label on the 0.5 line used to cover its points.
    values = {("2022", "m"): Interval(0.5, 0.49, 0.51), ("pooled", "m"): Interval(0.5, 0.495, 0.505)}
    svg = interval_chart(["2022", "pooled"], [("m", "#000")], values, title="t", y_label="acc",
                         reference=(0.5, "0.5 (coin flip)"))  # fmt: skip
    label = re.search(r'<text class="tick reference" x="([\d.]+)" y="([\d.]+)"[^>]*>0\.5 \(coin flip\)</text>', svg)
    assert label, svg
    assert float(label.group(2)) < MARGIN["top"]  # in the top margin, above every point
    points = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert points and min(points) > MARGIN["top"]
