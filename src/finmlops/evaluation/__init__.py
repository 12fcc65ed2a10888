"""finmlops.evaluation: metrics with block-bootstrap CIs, paired tests, cost-aware backtests and the leakage audit.

Consumes predictions frames (``docs/architecture.md``). See docs/evaluation.md for the methods.
"""

from finmlops.evaluation.audit import AuditConfig, future_dependence, run_audit, with_leak
from finmlops.evaluation.backtest import BacktestConfig, deflated_sharpe, run_backtest
from finmlops.evaluation.metrics import BootstrapConfig, evaluate_predictions, validate_predictions
from finmlops.evaluation.results import (
    Backtest,
    BacktestResult,
    Evaluation,
    EvaluationResult,
    ResultFileError,
    load_backtest,
    load_evaluation,
)

__all__ = [
    "AuditConfig",
    "Backtest",
    "BacktestConfig",
    "BacktestResult",
    "BootstrapConfig",
    "Evaluation",
    "EvaluationResult",
    "ResultFileError",
    "deflated_sharpe",
    "evaluate_predictions",
    "future_dependence",
    "load_backtest",
    "load_evaluation",
    "run_audit",
    "run_backtest",
    "validate_predictions",
    "with_leak",
]
