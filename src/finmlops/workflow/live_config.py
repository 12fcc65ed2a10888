"""The live config: what ``finmlops live`` does each trading day (``configs/live*.yaml``).

It names the universe and the history the loop starts from, the label (the one place the outcome is defined: the
served ``prob_up`` is a probability of it, the feedback posts it, the retrains fit on it), the model the loop
retrains, the fitting window (expanding or rolling), what triggers a retrain (a schedule every N trading days,
a drift alarm, a decaying live accuracy), the progressive rollout (shadow, then canary shares, decided by the
always-valid test with the trading day as the unit) and the drift alarm's thresholds.
"""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finmlops.features.target import LabelSpec
from finmlops.models.variants import VARIANTS, VariantConfig, get_variant
from finmlops.settings import validation_message
from finmlops.workflow.config import RunConfigError, parse_yaml_model, read_config_text

SHIPPED_LIVE = ("live", "live-quarterly", "live-drift", "live-static", "live-tiny")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiveUniverse(_Section):
    """The bundled snapshot's ``tickers``; the store starts with their bars from ``history_start`` to the day
    before the first live day, and the replay feed serves the rest one day at a time."""

    source: Literal["snapshot"] = "snapshot"
    tickers: list[str] = Field(min_length=1)
    history_start: date

    @field_validator("tickers")
    @classmethod
    def _upper_unique(cls, value: list[str]) -> list[str]:
        upper = [t.strip().upper() for t in value]
        if len(set(upper)) != len(upper):
            raise ValueError("tickers must not repeat")
        return sorted(upper)


class LiveModel(_Section):
    """The retrained model: a deep variant preset with overrides, ``epochs`` (early stopping on the last
    ``val_days`` of the window, purged), fitted on ``threads`` torch threads in its own process."""

    variant: str = "lightweight"
    params: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(default=3, ge=1)
    val_days: int = Field(default=60, ge=5, description="Trading days at the end of the window held for early stop.")
    threads: int = Field(default=1, ge=1, description="1 keeps a refit bit-identical across reruns (resume).")


class WindowConfig(_Section):
    """``expanding``: every labelled day up to yesterday; ``rolling``: the last ``days`` of them."""

    kind: Literal["expanding", "rolling"] = "expanding"
    days: int = Field(default=756, ge=60, description="Trading days of a rolling window (756: three years).")


class DecayConfig(_Section):
    """Retrain when the champion's live accuracy over the last ``window_days`` days drops below ``below``."""

    window_days: int = Field(default=20, ge=5)
    below: float = Field(default=0.48, gt=0.0, lt=1.0)


class RetrainConfig(_Section):
    """What starts a retrain; any enabled trigger does, unless a retrain is pending or a canary is running.
    ``lag_days``: the refit runs in its own process meanwhile and its model becomes the challenger that many
    trading days after it started (a fixed lag, so a rerun makes the same moves on the same days)."""

    every_days: int | None = Field(default=21, ge=1, description="Trading days between scheduled retrains.")
    on_drift: bool = False
    on_decay: DecayConfig | None = None
    lag_days: int = Field(default=1, ge=1)
    cooldown_days: int = Field(default=10, ge=0, description="Fewest days between two triggered retrains.")


class RolloutConfig(_Section):
    """Flagger's progressive delivery: the challenger serves ``steps`` percent of the tickers (0 = shadow only),
    ``step_days`` trading days each; at every day the always-valid test on the live outcomes since it went to
    shadow (``finmlops.stats.sequential.daily_msprt``) may roll it back; after the last step the registry's live
    rule (``finmlops.tracking.registry.live_decision``) promotes it, or it waits up to ``max_days`` and is rolled
    back as inconclusive."""

    steps: list[int] = Field(default_factory=lambda: [0, 10, 50, 100])
    step_days: int = Field(default=5, ge=1)
    margin: float = Field(default=0.005, ge=0.0, lt=0.5)
    min_days: int = Field(default=20, ge=2, description="Days with outcomes before the test is read.")
    min_outcomes: int = Field(default=100, ge=10, description="Outcomes per arm before the test is read.")
    max_days: int = Field(default=60, ge=2)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or sorted(set(value)) != value or value[0] < 0 or value[-1] != 100:
            raise ValueError("steps must be strictly increasing percentages ending at 100, e.g. [0, 10, 50, 100]")
        return value


class DriftConfig(_Section):
    """The alarm on the champion's inputs of the last ``window_days`` days against its training window, calibrated
    on that window (``finmlops.monitoring.drift.calibrate_window_drift``): held-out ``window_days`` blocks of the
    training window set, per feature, the PSI it typically has without drift, and the threshold on the largest
    feature's PSI / typical PSI (the max over features: one test for all of them, corrected for their number) that
    those blocks exceed on a ``false_alarm`` share of days."""

    window_days: int = Field(default=20, ge=2)
    false_alarm: float = Field(
        default=0.05, gt=0.0, lt=0.5, description="Share of the training window's own days on which it alarms."
    )


class LiveConfig(_Section):
    """One ``finmlops live`` setup; ``workspace`` is the sub-folder of the home it lives in (its own store,
    registry, request log and journal), so that several setups can be compared over the same period."""

    name: str
    workspace: str = "live"
    seed: int = 42
    universe: LiveUniverse
    label: LabelSpec = LabelSpec()
    model: LiveModel = LiveModel()
    window: WindowConfig = WindowConfig()
    retrain: RetrainConfig = RetrainConfig()
    rollout: RolloutConfig = RolloutConfig()
    drift: DriftConfig = DriftConfig()
    history_rows: int = Field(default=120, ge=30, description="Rows of OHLCV per ticker in each scoring request.")

    @model_validator(mode="after")
    def _consistent(self) -> LiveConfig:
        if self.model.variant not in VARIANTS:
            raise ValueError(f"model.variant: unknown {self.model.variant!r}; known: {', '.join(VARIANTS)}")
        try:
            VariantConfig.model_validate(
                {**VARIANTS[self.model.variant].model_dump(), **self.model.params, "name": self.model.variant}
            )
        except ValidationError as exc:
            raise ValueError(f"model.params: {validation_message(exc)}") from None
        return self

    def variant(self) -> Any:
        """The ``finmlops.models.VariantConfig`` retrained, overrides applied."""

        return get_variant(self.model.variant, **self.model.params)

    @property
    def registered_name(self) -> str:
        return f"{self.model.variant}-predictor"

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_live_config(text: str, source: str) -> LiveConfig:
    """A :class:`LiveConfig` from YAML ``text``; errors are :class:`RunConfigError` naming ``source`` and the field."""
    return parse_yaml_model(text, source, LiveConfig, "live config")


def load_live_config(path: Path) -> LiveConfig:
    return parse_live_config(read_config_text(path, "live config"), str(path))


def shipped_live_config(name: str = "live") -> LiveConfig:
    """A live config shipped with the package (``configs/<name>.yaml``)."""
    if name not in SHIPPED_LIVE:
        raise RunConfigError(f"no shipped live config {name!r}; shipped: {', '.join(SHIPPED_LIVE)}")
    text = (resources.files("finmlops.workflow") / "configs" / f"{name}.yaml").read_text()
    return parse_live_config(text, f"configs/{name}.yaml")
