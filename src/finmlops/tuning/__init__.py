"""finmlops.tuning: seeded Optuna searches over a variant's hyperparameters, pruned per walk-forward fold, with
MLflow nested runs and trials recorded for the deflated Sharpe ratio (``search``)."""
