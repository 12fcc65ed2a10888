"""finmlops.evaluation: metrics with block-bootstrap CIs, paired tests, cost-aware backtests and the leakage audit.

Consumes predictions frames (``docs/architecture.md``). See docs/evaluation.md for the methods.
"""

from finmlops.evaluation.audit import AuditConfig, future_dependence, run_audit, with_leak
from finmlops.evaluation.backtest import BacktestConfig, deflated_sharpe, run_backtest
from finmlops.evaluation.metrics import BootstrapConfig, evaluate_predictions, validate_predictions

__all__ = [
    "AuditConfig",
    "BacktestConfig",
    "BootstrapConfig",
    "deflated_sharpe",
    "evaluate_predictions",
    "future_dependence",
    "run_audit",
    "run_backtest",
    "validate_predictions",
    "with_leak",
]
