"""Generate ``docs/features.md`` from the registry: ``python -m finmlops.features.docs docs/features.md``."""

from __future__ import annotations

import sys
from pathlib import Path

from finmlops.features import indicators
from finmlops.features.registry import FEATURE_SETS, all_features, feature_names, sets_of

_INTRO = (
    """# Features

Generated from the registry in `src/finmlops/features/indicators.py` by
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

"""
    + indicators.__doc__.split("\n\n")[1].replace("Notation in formula texts:", "**Notation.**", 1)
    + "\n"
)


def render_markdown() -> str:
    """The full text of docs/features.md."""
    lines = [_INTRO, "## Feature sets", ""]
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
