"""The papers' tree models behind the common ``Predictor`` interface (``fit(train, val)``, ``predict_proba``), so
that :func:`finmlops.training.cross_val_predict` fits them like any other model, and their equal-weight ensemble.

Each reads the decision day's features, ``X[:, -1, :]`` of windows with ``seq_len`` 1 (:data:`ESTIMATORS` gives
the feature set). All are seeded and deterministic with a fixed thread count (LightGBM ``deterministic=True``,
row-wise; scikit-learn's forest grows the same trees for a given ``random_state`` whatever ``n_jobs``, and
predicts on one thread, whose sum over trees has one order).

- ``kdh_gbt``: Krauss, Do & Huck's gradient-boosted trees on ``kdh``: 100 trees of depth 3, learning rate 0.1,
  15 of the 31 features per tree (LightGBM).
- ``kdh_rf``: their random forest on ``kdh``: 1,000 trees of depth up to 20, ``floor(sqrt(31)) = 5`` features
  per split (scikit-learn).
- ``lgbm_alpha158``: Qlib's LightGBM benchmark hyperparameters on ``alpha158`` (its ``workflow_config_lightgbm``:
  200 leaves-class trees, strong L1/L2, learning rate 0.2, early stopping 50 rounds on the validation block), as a
  classifier of the label instead of Qlib's regression on the return.
- ``kdh_ensemble``: :class:`EnsembleModel`, the mean of the three KDH models' probabilities (the DNN is the
  ``kdh_dnn`` deep preset, so the ensemble is assembled in ``finmlops.training``, which owns torch, and averages
  the members' walk-forward predictions when the run fits them beside it).

No ONNX export: the registry and the server take ONNX graphs of the torch networks; converting forests needs
skl2onnx/onnxmltools (not installed) and a 1,000-tree forest is a large graph. These models are evaluated by the
walk-forward and are not registered or served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from finmlops.models.base import Predictor, WindowsLike, check_windows


@dataclass(frozen=True)
class EstimatorSpec:
    """A tree model's name, the feature set it reads (windows of ``seq_len`` 1) and its reference."""

    name: str
    feature_set: str
    reference: str


ENSEMBLE_MEMBERS = ("kdh_dnn", "kdh_gbt", "kdh_rf")
"""``kdh_ensemble``'s members, in the order the ensemble averages them (``kdh_dnn`` is a deep preset)."""

ESTIMATORS: dict[str, EstimatorSpec] = {
    s.name: s
    for s in (
        EstimatorSpec("kdh_gbt", "kdh", "Krauss, Do & Huck (2017), GBT"),
        EstimatorSpec("kdh_rf", "kdh", "Krauss, Do & Huck (2017), RAF"),
        EstimatorSpec("kdh_ensemble", "kdh", "Krauss, Do & Huck (2017), ENS1: mean of DNN, GBT and RAF"),
        EstimatorSpec("lgbm_alpha158", "alpha158", "Qlib benchmarks, LightGBM on Alpha158"),
    )
}


def _xy(windows: WindowsLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    check_windows(windows, what)
    y = np.asarray(windows.y, dtype=np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{what}: labels must be 0 or 1")
    return np.asarray(windows.X[:, -1, :], dtype=np.float64), y.astype(int)


class LightGBMModel:
    """LightGBM classifier on the last day's features; early-stopped on ``val`` when ``patience`` is set."""

    def __init__(self, name: str, params: dict[str, Any], *, seed: int, threads: int, patience: int | None) -> None:
        import lightgbm as lgb  # deferred: lightgbm, scipy, sklearn; optional heavy dependency, loaded on use

        self.name, self.patience = name, patience
        self.model = lgb.LGBMClassifier(
            **params, n_jobs=threads, random_state=seed, deterministic=True, force_row_wise=True, verbose=-1
        )

    def fit(self, train: WindowsLike, val: WindowsLike) -> LightGBMModel:
        import lightgbm as lgb  # deferred: lightgbm, scipy, sklearn; optional heavy dependency, loaded on use

        x, y = _xy(train, "train")
        if self.patience is None or len(val.y) == 0:
            self.model.fit(x, y)
            return self
        x_val, y_val = _xy(val, "val")
        self.model.fit(
            x, y, eval_X=(x_val,), eval_y=(y_val,), eval_metric="binary_logloss",
            callbacks=[lgb.early_stopping(self.patience, verbose=False)],
        )  # fmt: skip
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return self.model.predict_proba(np.asarray(windows.X[:, -1, :], dtype=np.float64))[:, 1]


class RandomForestModel:
    """scikit-learn random forest on the last day's features (no early stopping: ``val`` is unused)."""

    def __init__(self, name: str, *, seed: int, threads: int, n_estimators: int = 1000, max_depth: int = 20) -> None:
        from sklearn.ensemble import RandomForestClassifier  # deferred: scipy, sklearn

        self.name, self.threads = name, threads
        self.model = RandomForestClassifier(
            n_estimators=n_estimators, max_depth=max_depth, max_features="sqrt", random_state=seed, n_jobs=threads
        )

    def fit(self, train: WindowsLike, val: WindowsLike) -> RandomForestModel:
        x, y = _xy(train, "train")
        self.model.fit(x, y)
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        # On one thread: scikit-learn adds the trees' probabilities in the order its threads finish, so with
        # n_jobs > 1 the last bits change from call to call (2e-16 between two S&P 500 runs) and so would the
        # predictions' SHA-256. The fit stays parallel: each tree is seeded, whatever thread grows it.
        self.model.set_params(n_jobs=1)
        try:
            return self.model.predict_proba(np.asarray(windows.X[:, -1, :], dtype=np.float64))[:, 1]
        finally:
            self.model.set_params(n_jobs=self.threads)


class EnsembleModel:
    """Equal-weight ensemble: every member is fit on the same ``train``/``val``; P = mean of their P."""

    def __init__(self, name: str, members: Sequence[Predictor]) -> None:
        if not members:
            raise ValueError(f"{name}: an ensemble needs at least one member")
        self.name, self.members = name, list(members)

    def fit(self, train: WindowsLike, val: WindowsLike) -> EnsembleModel:
        for member in self.members:
            member.fit(train, val)
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return np.mean([np.asarray(m.predict_proba(windows), dtype=np.float64) for m in self.members], axis=0)


KDH_GBT_PARAMS: dict[str, Any] = {
    "n_estimators": 100, "max_depth": 3, "num_leaves": 8, "learning_rate": 0.1, "colsample_bytree": 15 / 31,
}  # fmt: skip
QLIB_LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 1000, "learning_rate": 0.2, "max_depth": 8, "num_leaves": 210, "colsample_bytree": 0.8879,
    "subsample": 0.8789, "subsample_freq": 1, "reg_alpha": 205.6999, "reg_lambda": 580.9768,
}  # fmt: skip


_RF_PARAMS = ("n_estimators", "max_depth")
# Set by the model itself from the run's seed and threads, or fixed for determinism: not a run's to override.
_MANAGED = {"random_state", "n_jobs", "deterministic", "force_row_wise", "verbose", "self", "kwargs"}


def estimator_param_names(name: str) -> set[str]:
    """The hyperparameters a run config may set for ``name`` (``kdh_ensemble`` has none of its own: its members
    read ``kdh_gbt``'s and ``kdh_rf``'s)."""
    if name not in ESTIMATORS:
        raise KeyError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    if name == "kdh_rf":
        return set(_RF_PARAMS)
    if name == "kdh_ensemble":
        return set()
    import inspect

    import lightgbm as lgb  # deferred: lightgbm, scipy, sklearn; optional heavy dependency, loaded on use

    return set(inspect.signature(lgb.LGBMModel.__init__).parameters) - _MANAGED


def check_estimator_params(name: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming each hyperparameter ``name`` does not take, or a value that is not a positive
    integer where the forest needs one (the first fit would otherwise fail, minutes into a run)."""
    allowed = estimator_param_names(name)
    unknown = sorted(set(params) - allowed)
    if unknown:
        takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "set kdh_gbt's and kdh_rf's, its members'"
        raise ValueError(f"{name} has no hyperparameter {', '.join(unknown)}; {takes}")
    for key, value in params.items():
        if not isinstance(value, int | float | str | bool | None):
            raise ValueError(f"{name}.{key} must be a number, string, boolean or null, got {value!r}")
        if key in _RF_PARAMS and name == "kdh_rf" and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}.{key} must be an integer >= 1, got {value!r}")


def make_estimator(
    name: str, *, seed: int = 0, threads: int = 1, members: Sequence[Predictor] = (), **overrides: Any
) -> Predictor:
    """A fresh, unfitted tree model of :data:`ESTIMATORS` by name. ``kdh_ensemble`` takes its fitted-on-demand
    ``members`` (the training layer passes ``kdh_dnn``, ``kdh_gbt`` and ``kdh_rf``). ``overrides`` change the
    model's hyperparameters (tests use tiny forests: ``n_estimators=20``)."""
    if name == "kdh_gbt":
        return LightGBMModel(name, KDH_GBT_PARAMS | overrides, seed=seed, threads=threads, patience=None)
    if name == "kdh_rf":
        return RandomForestModel(name, seed=seed, threads=threads, **overrides)
    if name == "lgbm_alpha158":
        return LightGBMModel(name, QLIB_LGBM_PARAMS | overrides, seed=seed, threads=threads, patience=50)
    if name == "kdh_ensemble":
        return EnsembleModel(name, members)
    raise KeyError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")
