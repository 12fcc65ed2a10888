"""finmlops.stats: the project's statistics, one implementation each, on numpy and scipy only (no torch, no MLflow).

``comparison``: the wording of a model-versus-reference comparison (signed difference, side of the test, verdict),
used by every command and page that prints one.
"""

from finmlops.stats.comparison import Comparison, describe_comparison

__all__ = ["Comparison", "describe_comparison"]
