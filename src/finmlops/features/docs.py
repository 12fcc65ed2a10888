"""Generate ``docs/features.md`` from the registry: ``python -m finmlops.features.docs docs/features.md``."""

from __future__ import annotations

import sys
from pathlib import Path

from finmlops.data.validation import MAX_GAP_BUSINESS_DAYS
from finmlops.features import indicators
from finmlops.features.registry import FEATURE_SETS, REGISTRY, all_features, feature_names, sets_of

_INTRO = (
    """# Features

Generated from the registry in `src/finmlops/features/indicators.py` and `alpha158.py` (the standard sets) by
`python -m finmlops.features.docs docs/features.md`; a test fails when this file and the code disagree.
`finmlops features --list [--set SET]` prints the same table.

## Conventions

- **Adjusted prices.** Returns and price indicators use dividend-adjusted prices: `adj_close`, and open, high and
  low scaled by `adj_close / close`, so an ex-dividend day is not a fake drop. Volume is Yahoo's split-adjusted
  share count.
- **Per ticker.** Each ticker is computed on its own rows. Only `market_return`, `market_corr_20` and
  `market_beta_20` read other tickers, through the equal-weight return of the tickers trading that day.
- **Past only.** A value at date t uses rows at or before t. The label (`make_target`) and `forward_return` read
  the future and never enter the feature frame. A test changes every price after t, for every ticker, and checks
  that no feature at or before t moves.
- **Warm-up.** `window` is the number of rows one value needs, the current row included: the first `window - 1`
  rows of each ticker are NaN. EMA-type indicators (RSI, MACD, ATR) start from TA-Lib's seed at the series start,
  so their early values depend slightly on where the stored history begins.
- **Scale-free.** Each feature stays the same if all prices are multiplied by k and volume by 1/k (a split), or if
  the adjusted prices are multiplied by k (a later dividend re-basing the history). Dollar or share levels (SMA,
  Bollinger bands, VWAP, OBV, price x volume) are therefore given as ratios to price or as log values. Yahoo
  re-adjusts history for later splits and dividends, so a raw level at t would carry information from after t. Levels
  also differ by orders of magnitude across tickers.
- Division by zero (e.g. a zero-volume day) gives NaN, and windows skip those rows.
- **Gaps.** Windows (`make_windows`) never span a trading day missing from a ticker, nor a stretch of more than
  {max_gap} business days (Mon-Fri) between consecutive dates that every ticker shares (a one-ticker store, CSVs
  missing the same weeks), the gap rule of data validation. The label and `forward_return` are NaN across such a
  stretch. Indicators themselves are computed on the rows as stored, so the first rows after it still look back
  across it.
- **Windows at scale.** `make_windows` copies every window into `X` `[n, seq_len, f]`: 17 GB for the S&P 500 set's
  2.1 M windows of 60 x 36 float32. `make_window_index` gives the same windows (same order, values and labels) as
  one array of rows `[rows, f]` (0.3 GB there) and each window's first row; `batch`, `batches(size)`,
  `last_rows()` and `subset(mask)` copy only the windows asked for.

"""
    + indicators.__doc__.split("\n\n")[1].replace("Notation in formula texts:", "**Notation.**", 1)
    + "\n"
)


# Features whose name suggests the or TA-Lib's definition but whose value is a scale-free transform of it
# (see "Scale-free" above): (names, the usual definition). The registry's formula text gives what is computed.
DEVIATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("sma_5", "sma_10", "sma_20", "sma_50"), "SMA level of the close, in dollars (TA-Lib `SMA`)"),
    (("volume_sma_20",), "20-day mean volume, in shares (TA-Lib `SMA` of volume)"),
    (("vwap_20",), "20-day VWAP, in dollars"),
    (("price_volume",), "close x volume, in dollars"),
    (("obv",), "On-Balance Volume, a cumulative share count from the start of the series (TA-Lib `OBV`)"),
    (("macd", "macd_signal", "macd_hist"), "TA-Lib `MACD` outputs, in dollars"),
    (("bb_upper", "bb_lower"), "TA-Lib `BBANDS` bands, in dollars"),
    (("atr_14",), "TA-Lib `ATR`, in dollars (TA-Lib `NATR` is the same ratio in percent)"),
    (("momentum_3", "momentum_5", "momentum_10", "momentum_20"), "TA-Lib `ROC`, in percent"),
    (("market_beta_20",), "TA-Lib `BETA`, which takes two price series"),
)


def render_deviations() -> list[str]:
    """Markdown lines of the "Where definitions differ" section: one table row per feature."""
    lines = [
        "## Where definitions differ from the issue/TA-Lib",
        "",
        "These features keep the usual name but not the usual unit: each is the scale-free transform in the last",
        "column (the registry's formula). Volatilities (daily, not annualised) and Bollinger bands use the population",
        "standard deviation (ddof 0, TA-Lib's `STDDEV`), not pandas' default sample std (ddof 1).",
        "",
        "| feature | usual definition | here |",
        "|---|---|---|",
    ]
    for names, usual in DEVIATIONS:
        for name in names:
            formula = REGISTRY[name].formula.replace("|", "\\|")
            lines.append(f"| `{name}` | {usual} | {formula} |")
    lines.append("")
    return lines


def render_markdown() -> str:
    """The full text of docs/features.md."""
    lines = [_INTRO.replace("{max_gap}", str(MAX_GAP_BUSINESS_DAYS)), *render_deviations(), "## Feature sets", ""]
    for feature_set in FEATURE_SETS:
        names = feature_names(feature_set)
        lines.append(f"- **{feature_set}** ({len(names)}): " + ", ".join(f"`{n}`" for n in names))
    lines += ["", "## Registry", "", "| name | formula | window | sets |", "|---|---|---|---|"]
    for feature in all_features():
        formula = feature.formula.replace("|", "\\|")
        lines.append(f"| `{feature.name}` | {formula} | {feature.window} | {', '.join(sets_of(feature.name))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Write the rendered markdown to the path in ``argv[0]`` (default docs/features.md)."""
    Path(argv[0] if argv else "docs/features.md").write_text(render_markdown())


if __name__ == "__main__":
    main(sys.argv[1:])
