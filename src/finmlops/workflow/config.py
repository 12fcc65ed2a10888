"""The run config, as Qlib's ``qrun`` reads one: a YAML file that declares a whole ``finmlops run``.

It names the universe, the dates, the label, the variants with their hyperparameters, the baselines and tree
estimators, the walk-forward folds (yearly or Fischer & Krauss's study periods), the bootstrap, the strategies,
the backtest costs, the replayed traffic and the importance step. ``configs/default.yaml``
and ``configs/quick.yaml`` are the shipped ones (``finmlops run`` and ``finmlops run --quick``). Every run writes
its *resolved* config (every default filled in, every ticker named) to ``<home>/results/run_config.yaml``, and
``finmlops run --config <that file>`` in a fresh workspace reproduces the same predictions.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finmlops.data import DataError, universe_source, universe_tickers
from finmlops.executor import ExecutorConfig, ExecutorKind, RayConfig
from finmlops.features.target import LabelSpec
from finmlops.models.baselines import ALL_BASELINES
from finmlops.models.estimators import ENSEMBLE_MEMBERS, ESTIMATORS, check_estimator_params
from finmlops.models.variants import PRESETS, VariantConfig, get_variant
from finmlops.provenance import write_text_atomic
from finmlops.settings import validation_message

CONFIG_FILE = "run_config.yaml"  # the resolved config every run writes to its results folder
SHIPPED = ("default", "quick")


# The pipeline's steps in order (finmlops.workflow.steps.build_steps builds them; a test keeps the two equal).
STEP_NAMES = (
    "ingest", "features", "train", "backtest", "register", "traffic", "abtest", "drift", "importance", "report",
)  # fmt: skip


class RunConfigError(ValueError):
    """A run config that cannot be read or does not validate; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UniverseConfig(_Section):
    """Which market: ``source`` is ``snapshot10`` (the bundled ten; ``snapshot`` is the same), ``sp500`` (443 S&P
    500 constituents, read from the folder that the ``sp500_dir`` setting names) or a folder of ``<TICKER>.csv``
    files; ``tickers`` (all of the universe's when omitted) from ``start`` to ``end``."""

    source: str = Field(default="snapshot", description="snapshot10 (or snapshot), sp500, or a CSV folder's path.")
    tickers: list[str] | None = Field(default=None, description="Upper-case tickers; None: all of the universe's.")

    @field_validator("source")
    @classmethod
    def _known_or_folder(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("source must be snapshot10, sp500 or a CSV folder's path")
        return value

    start: date
    end: date

    @field_validator("tickers")
    @classmethod
    def _upper_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        upper = [t.strip().upper() for t in value]
        if not upper or len(set(upper)) != len(upper):
            raise ValueError("tickers must be a non-empty list without duplicates")
        return upper

    @model_validator(mode="after")
    def _ordered(self) -> UniverseConfig:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self


class VariantSpec(_Section):
    """A deep variant preset (``finmlops.models.VARIANTS``) with hyperparameter overrides."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class BootstrapSection(_Section):
    n_boot: int = Field(default=1000, ge=50)
    block_len: int = Field(default=10, ge=1, description="Block length in trading days.")


class CostsConfig(_Section):
    """Backtest costs in basis points of turnover, the top-k book size and the capital for business figures."""

    cost_bps: float = Field(default=5.0, ge=0.0)
    slippage_bps: float = Field(default=0.0, ge=0.0)
    execution: Literal["close", "open"] = "close"
    top_k: int = Field(default=2, ge=1)
    capital: float = Field(default=100_000.0, gt=0.0)


class TrafficConfig(_Section):
    """The A/B replay through the served champions: one request per ticker per trading day from ``start`` to
    ``end`` (default: the whole last test year, which the final models never trained on), or with ``per: day`` one
    request per day scoring every ticker; seeded routing, so the request log is a function of the config
    (finmlops.serving.traffic)."""

    start: date | None = None
    end: date | None = None
    per: Literal["ticker", "day"] = Field(
        default="ticker", description="ticker: a request per ticker per day; day: one [n, T] request per day."
    )


class StudyPeriodsConfig(_Section):
    """Fischer & Krauss's study periods (``folds: study_periods``): ``train_days`` trading days of training (the
    last ``val_frac`` of them the early-stopping block), then ``trade_days`` of trading, rolled by ``trade_days``
    (``finmlops.features.splits.study_period_folds``)."""

    train_days: int = Field(default=750, ge=2)
    trade_days: int = Field(default=250, ge=1)
    val_frac: float = Field(default=0.2, ge=0.0, lt=1.0)


class ImportanceConfig(_Section):
    """Permutation importance of the best deep variant on the last ``folds`` test years, ``repeats`` shuffles."""

    folds: int = Field(default=2, ge=1)
    repeats: int = Field(default=3, ge=1)


class RunConfig(_Section):
    """One whole ``finmlops run``. ``workspace`` is a sub-folder of the home the run works in (``quick``), so
    that a small run's models never compete with the full run's champions; ``None`` is the home itself."""

    name: str
    workspace: str | None = None
    seed: int = 42
    threads: int = Field(default=2, ge=1)
    universe: UniverseConfig
    label: LabelSpec = LabelSpec()
    variants: list[VariantSpec]
    baselines: list[str]
    estimators: list[str] = Field(
        default_factory=list,
        description="Tree models of finmlops.models.ESTIMATORS (kdh_gbt, kdh_rf, kdh_ensemble, lgbm_alpha158), "
        "fitted by the walk-forward beside the variants and baselines; evaluated and backtested, not registered.",
    )
    estimator_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Hyperparameters over the papers' for an estimator of this run, by name "
        "({kdh_rf: {n_estimators: 100}}); kdh_ensemble's members read kdh_gbt's and kdh_rf's.",
    )
    folds: Literal["yearly", "study_periods"] = Field(
        default="yearly",
        description="yearly: expanding walk-forward with one test fold per test year; study_periods: Fischer & "
        "Krauss's rolling train/trade blocks (study_periods section) whose trading block starts in a test year.",
    )
    study_periods: StudyPeriodsConfig = StudyPeriodsConfig()
    strategies: list[str] | None = Field(
        default=None,
        description="Backtest strategies (finmlops.evaluation.backtest.ALL_STRATEGIES); None: the default three.",
    )
    register_variants: list[str] | None = Field(
        default=None,
        description="The variants whose final models are registered and may be served; None: every variant. The "
        "A/B replay serves the champions of baseline and enhanced, so a run with traffic registers both.",
    )
    epochs: int = Field(ge=1)
    test_years: list[int] = Field(min_length=1)
    bootstrap: BootstrapSection = BootstrapSection()
    costs: CostsConfig = CostsConfig()
    traffic: TrafficConfig = TrafficConfig()
    importance: ImportanceConfig = ImportanceConfig()
    executor: ExecutorKind = Field(
        default="serial", description="serial, or ray: the walk-forward's fold x model fits as Ray tasks."
    )
    ray: RayConfig = RayConfig()
    steps: list[str] | None = Field(
        default=None,
        description="The pipeline steps this run runs (STEP_NAMES), each with every step it needs; None: all ten. "
        "A research run on the universe stops after [ingest, features, train, backtest].",
    )

    @field_validator("test_years")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if sorted(set(value)) != value:
            raise ValueError("test_years must be strictly increasing")
        return value

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [s for s in value if s not in STEP_NAMES]
        if bad or not value or len(set(value)) != len(value):
            raise ValueError(f"steps {value}: give each once, from {', '.join(STEP_NAMES)}")
        return [s for s in STEP_NAMES if s in value]  # the pipeline's order

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        unknown = [v.name for v in self.variants if v.name not in PRESETS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(PRESETS)}")
        for i, v in enumerate(self.variants):
            try:
                VariantConfig.model_validate({**PRESETS[v.name].model_dump(), **v.params, "name": v.name})
            except ValidationError as exc:
                raise ValueError(f"variants.{i}.params ({v.name}): {validation_message(exc)}") from None
        bad = [b for b in self.baselines if b not in ALL_BASELINES]
        if bad:
            raise ValueError(f"unknown baseline(s) {bad}; known: {', '.join(ALL_BASELINES)}")

        bad = [e for e in self.estimators if e not in ESTIMATORS]
        if bad:
            raise ValueError(f"unknown estimator(s) {bad}; known: {', '.join(ESTIMATORS)}")
        members = {m for m in ENSEMBLE_MEMBERS if m in ESTIMATORS} if "kdh_ensemble" in self.estimators else set()
        used = set(self.estimators) | members
        for name, params in self.estimator_params.items():
            if name not in used:
                raise ValueError(f"estimator_params.{name}: {name} is not an estimator of this run ({self.estimators})")
            try:
                check_estimator_params(name, params)
            except ValueError as exc:
                raise ValueError(f"estimator_params.{name}: {exc}") from None
        names = [*self.variant_names, *self.baselines, *self.estimators]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique across variants, baselines and estimators, got {names}")
        if self.strategies is not None:
            from finmlops.evaluation.backtest import ALL_STRATEGIES  # deferred: scipy

            bad = [s for s in self.strategies if s not in ALL_STRATEGIES]
            if bad or not self.strategies:
                raise ValueError(f"unknown strategy(ies) {bad}; known: {', '.join(ALL_STRATEGIES)}")
        if self.register_variants is not None:
            bad = [r for r in self.register_variants if r not in self.variant_names]
            if bad:
                raise ValueError(
                    f"register_variants names {bad}, which are not among the variants {list(self.variant_names)}"
                )
        if not self.universe.start.year < self.test_years[0] <= self.test_years[-1] <= self.universe.end.year:
            raise ValueError(
                f"test_years {self.test_years[0]}..{self.test_years[-1]} must lie after the first year of data "
                f"({self.universe.start.year}) and within its last ({self.universe.end.year})"
            )
        if self.traffic_end < self.traffic_start:
            raise ValueError(f"traffic.end {self.traffic_end} is before traffic.start {self.traffic_start}")
        if self.importance.folds > len(self.test_years):
            raise ValueError(f"importance.folds {self.importance.folds} exceeds the {len(self.test_years)} test years")
        return self

    # --- what the steps read ------------------------------------------------------------------------------------

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    @property
    def registered_names(self) -> tuple[str, ...]:
        """The variants whose final models the register step fits and registers."""
        return self.variant_names if self.register_variants is None else tuple(self.register_variants)

    def variant_configs(self) -> list[Any]:
        """The ``finmlops.models.VariantConfig`` of each variant, overrides applied."""

        return [get_variant(v.name, **v.params) for v in self.variants]

    @property
    def executor_config(self) -> ExecutorConfig:
        """The walk-forward's executor (docs/distributed.md): the same predictions, bit for bit, either way."""
        return ExecutorConfig(kind=self.executor, ray=self.ray)

    @property
    def tickers(self) -> tuple[str, ...]:
        if self.universe.tickers is None:
            raise RunConfigError("the config is not resolved: universe.tickers is unset (call resolve())")
        return tuple(self.universe.tickers)

    @property
    def traffic_start(self) -> date:
        """First replayed day: ``traffic.start``, else the first day of the last test year."""
        return self.traffic.start or date(self.test_years[-1], 1, 1)

    @property
    def traffic_end(self) -> date:
        """Last replayed day: ``traffic.end``, else the end of the last test year (bounded by the data's end)."""
        return self.traffic.end or min(date(self.test_years[-1], 12, 31), self.universe.end)

    @property
    def gap_seq_len(self) -> int:
        """The longest window of the run's variants: it sizes every walk-forward purge and embargo."""
        return max(v.seq_len for v in self.variant_configs())

    def resolve(self) -> RunConfig:
        """Every default made explicit: the universe's tickers named, so the file alone reproduces the run."""
        if self.universe.tickers is not None:
            return self

        source = self.universe.source
        try:
            if source in ("snapshot", "snapshot10", "sp500"):
                tickers = universe_tickers(source)
            else:
                tickers = universe_source(source).tickers
        except DataError as exc:
            raise RunConfigError(f"universe.source: {exc}") from None
        universe = self.universe.model_copy(update={"tickers": tickers})
        return self.model_copy(update={"universe": universe})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


M = TypeVar("M", bound=BaseModel)


def parse_yaml_model(text: str, source: str, model: type[M], what: str) -> M:
    """``model`` validated from YAML ``text`` (a mapping); ``source`` names it and ``what`` says what it is
    ("run config", "live config") in the one-line :class:`RunConfigError`."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunConfigError(f"{source}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise RunConfigError(f"{source}: a {what} is a YAML mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RunConfigError(f"{source}: {validation_message(exc)}") from None


def read_config_text(path: Path, what: str) -> str:
    """The text of a config file; a missing or unreadable file is a :class:`RunConfigError` naming it."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunConfigError(f"{path}: cannot read the {what} ({exc.__class__.__name__}: {exc})") from None


def parse_run_config(text: str, source: str) -> RunConfig:
    """A :class:`RunConfig` from YAML ``text``; ``source`` names it in errors (:class:`RunConfigError`)."""
    return parse_yaml_model(text, source, RunConfig, "run config")


def load_run_config(path: Path) -> RunConfig:
    """Read a run config file; a missing or unreadable file is a :class:`RunConfigError` naming it."""
    return parse_run_config(read_config_text(path, "run config"), str(path))


def shipped_config(name: str) -> RunConfig:
    """``default`` or ``quick``: the configs that ship with the package (``configs/`` in the repository)."""
    if name not in SHIPPED:
        raise RunConfigError(f"no shipped config {name!r}; shipped: {', '.join(SHIPPED)}")
    text = (resources.files("finmlops.workflow") / "configs" / f"{name}.yaml").read_text()
    return parse_run_config(text, f"configs/{name}.yaml")


def write_resolved(config: RunConfig, results_dir: Path) -> Path:
    """Write the resolved config beside the run's results (atomically); returns its path."""
    return write_text_atomic(Path(results_dir) / CONFIG_FILE, config.resolve().to_yaml())
