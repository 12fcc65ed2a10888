"""finmlops.stats: the project's statistics, one implementation each, on numpy and scipy only (no pandas, torch,
MLflow or ONNX; ``lint-imports`` enforces it, and that stats imports nothing else of finmlops).

- ``comparison``: the wording of a model-versus-reference comparison (signed difference, side of the test,
  verdict), used by every command and page that prints one.
- ``bootstrap``: the circular moving-block bootstrap over dates (as date weights), ``BootstrapConfig`` and the one
  paired test that the evaluation and the promotion rule share.
- ``classification``: ROC AUC and log loss.
- ``sequential``: the A/B test's mSPRT with the trading day as its unit, the Wilson interval, a simulator of
  correlated same-day outcomes.
- ``drift``: PSI, KS, normalised Wasserstein, the drift reference profile and the server's ``SlidingDrift``.
- ``sharpe``: the deflated Sharpe ratio.
"""

from finmlops.stats.comparison import Comparison, describe_comparison

__all__ = ["Comparison", "describe_comparison"]
