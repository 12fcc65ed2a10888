"""Online experiments: weighted A/B splits, sticky keys, shadows, a Thompson-sampling bandit and contextual routing.

A pure library (no HTTP): the server calls :meth:`Experiment.route` for each request and feeds outcomes back with
:meth:`Experiment.record_outcome`. Configuration is YAML validated by pydantic and follows Seldon Core v2's
``Experiment`` (``candidates`` with weights, ``default``, ``mirror``), plus strategies Seldon lacks. See
docs/experiments.md.

Routing costs a few microseconds: cumulative weights and the :class:`Route` of every arm are precomputed, a route
is a ``bisect`` on a Python list, and the bandit's traffic shares are a cached vector refreshed from the Beta
posteriors after every ``refresh_every`` outcomes, not resampled per request.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_EXPERIMENT = "financial-ab-test-experiment"
SELDON_EXPERIMENT_SUFFIX = ".experiment"
SELDON_ROUTE_HEADER = "x-seldon-route"
Strategy = Literal["weighted", "bandit", "contextual"]
# A weight is relative; beyond this, sums and shares lose precision (and 1e308 weights overflow to 0/0).
MAX_WEIGHT = 1e9


class ExperimentConfigError(ValueError):
    """An experiment configuration or patch is invalid; the message names the experiment and the field."""


class UnknownExperiment(KeyError):
    """No experiment of that name is configured."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown experiment"


# --- configuration -------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Candidate(_Strict):
    """An arm: ``name`` labels it (metrics, ``Route.arm``); ``model`` is what the server scores (default ``name``)."""

    name: str = Field(min_length=1)
    weight: float = Field(
        default=1.0, ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description="Relative weight; normalised."
    )
    model: str | None = Field(default=None, min_length=1, description="Model reference, e.g. baseline-predictor@3.")

    @property
    def target(self) -> str:
        return self.model or self.name


class Mirror(_Strict):
    """Seldon's mirror: a model that gets a copy of ``percent`` % of the experiment's requests; never answers."""

    name: str = Field(min_length=1)
    percent: float = Field(default=100.0, ge=0, le=100, allow_inf_nan=False)


class BanditConfig(_Strict):
    """Thompson sampling over Beta(prior_alpha + correct, prior_beta + wrong) posteriors, one per arm.

    Each arm's share is ``min_share + (1 - n_arms * min_share) * P(arm is best)``, with P estimated from ``draws``
    posterior samples and refreshed after every ``refresh_every`` outcomes.
    """

    min_share: float = Field(default=0.05, ge=0, lt=1, allow_inf_nan=False, description="Floor per arm.")
    prior_alpha: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    prior_beta: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    refresh_every: int = Field(default=10, ge=1, description="Outcomes between share refreshes.")
    draws: int = Field(default=2000, ge=10, le=1_000_000, description="Posterior samples per refresh.")
    seed: int | None = Field(default=None, description="Seed of the posterior sampler and the arm draws.")


class ContextConfig(_Strict):
    """Route by a request header or V2 ``parameters`` value (the header wins), case-insensitively."""

    header: str | None = Field(default=None, min_length=1, description="e.g. x-volatility-regime")
    parameter: str | None = Field(default=None, min_length=1, description="e.g. regime")
    routes: dict[str, str] = Field(min_length=1, description="Value -> candidate name.")
    default: str | None = Field(default=None, description="Arm for a missing or unmapped value (default: default).")

    @field_validator("header")
    @classmethod
    def _lower_header(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @field_validator("routes")
    @classmethod
    def _lower_values(cls, value: dict[str, str]) -> dict[str, str]:
        return {str(k).strip().lower(): v for k, v in value.items()}

    @model_validator(mode="after")
    def _has_source(self) -> ContextConfig:
        if not self.header and not self.parameter:
            raise ValueError("set header or parameter (or both)")
        return self


class ExperimentConfig(_Strict):
    """One experiment, in Seldon Core v2's shape with finmlops' extensions (strategy, sticky_header, ...)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    strategy: Strategy = "weighted"
    default: str | None = Field(default=None, description="Candidate whose endpoint the experiment takes over.")
    candidates: list[Candidate] = Field(min_length=1)
    mirror: Mirror | None = None
    shadows: list[str] = Field(default_factory=list, description="Models that get a copy of every request.")
    sticky_header: str | None = Field(default=None, min_length=1, description="e.g. x-user-id")
    honour_seldon_route: bool = Field(default=True, description="A request's x-seldon-route pins its arm.")
    bandit: BanditConfig | None = None
    context: ContextConfig | None = None

    @field_validator("sticky_header")
    @classmethod
    def _lower_header(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidates: duplicate candidate names in {names}")
        if self.default is not None and self.default not in names:
            raise ValueError(f"default: {self.default!r} is not a candidate (candidates: {names})")
        # Each weight is at most MAX_WEIGHT, so the sum is finite; it must be positive too.
        if self.strategy == "weighted" and sum(c.weight for c in self.candidates) <= 0:
            raise ValueError("candidates: weights are all zero; at least one must be positive")
        if self.strategy == "bandit":
            floor = (self.bandit or BanditConfig()).min_share
            if floor * len(names) > 1:
                raise ValueError(f"bandit.min_share: {floor} x {len(names)} arms exceeds 1")
        elif self.bandit is not None:
            raise ValueError(f"bandit: only valid with strategy 'bandit', not {self.strategy!r}")
        if self.strategy == "contextual":
            if self.context is None:
                raise ValueError("context: strategy 'contextual' needs a context section")
            arms = [*self.context.routes.values(), self.context.default or self.default]
            unknown = sorted({a for a in arms if a is not None and a not in names})
            if unknown:
                raise ValueError(f"context: {unknown} are not candidates (candidates: {names})")
            if self.context.default is None and self.default is None:
                raise ValueError("context.default: set it or the experiment's default")
            if self.sticky_header is not None:
                raise ValueError("sticky_header: strategy 'contextual' routes by the context value and never reads it")
        elif self.context is not None:
            raise ValueError(f"context: only valid with strategy 'contextual', not {self.strategy!r}")
        return self

    @property
    def default_arm(self) -> str:
        """The arm for requests no strategy decides: ``default``, else the first candidate."""
        return self.default or self.candidates[0].name


@dataclass(frozen=True, slots=True)
class ExperimentLimits:
    """What one experiment may cost the server (``serving.yaml`` ``server.max_experiment_arms`` and
    ``server.max_bandit_draws``): each bandit refresh draws ``draws x arms`` Beta samples."""

    max_arms: int = 32
    max_bandit_draws: int = 20_000

    def check(self, config: ExperimentConfig) -> None:
        """Raise :class:`ExperimentConfigError` naming the field that exceeds a limit."""
        arms = len(config.candidates)
        if arms > self.max_arms:
            raise ExperimentConfigError(
                f"experiment {config.name!r}: candidates: {arms} arms exceed the server's limit of {self.max_arms} "
                "(server.max_experiment_arms)"
            )
        draws = config.bandit.draws if config.bandit is not None else 0
        if draws > self.max_bandit_draws:
            raise ExperimentConfigError(
                f"experiment {config.name!r}: bandit.draws: {draws} exceeds the server's limit of "
                f"{self.max_bandit_draws} (server.max_bandit_draws)"
            )


def _format_errors(name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return f"experiment {name!r}: " + "; ".join(parts)


def parse_config(raw: Mapping[str, Any], where: str = "") -> ExperimentConfig:
    """Validate one experiment mapping; errors raise :class:`ExperimentConfigError` naming it and the field."""
    name = str(raw.get("name", f"<unnamed{where}>")) if isinstance(raw, Mapping) else f"<entry{where}>"
    if not isinstance(raw, Mapping):
        raise ExperimentConfigError(f"experiment {name}: expected a mapping, got {type(raw).__name__}")
    try:
        return ExperimentConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ExperimentConfigError(_format_errors(name, exc)) from None


def default_config(name: str = DEFAULT_EXPERIMENT) -> ExperimentConfig:
    """The original system's A/B test: baseline-predictor 70 / enhanced-predictor 30, default baseline."""
    return ExperimentConfig(
        name=name,
        default="baseline-predictor",
        candidates=[
            Candidate(name="baseline-predictor", weight=70),
            Candidate(name="enhanced-predictor", weight=30),
        ],
    )


# --- routing -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: ``arm`` (label), ``model`` (what scores it) and the ``shadows`` that get a copy."""

    arm: str
    model: str
    shadows: tuple[str, ...] = ()


def stable_unit(key: str, salt: str) -> float:
    """A stable hash of ``key`` (salted with ``salt``) into [0, 1); the same in every process, unlike ``hash()``."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _seldon_route_model(value: str) -> str:
    """The model named in an ``x-seldon-route`` value such as ``:baseline-predictor_1:`` (version suffix dropped)."""
    first = value.strip().strip(":").split(":", 1)[0]
    return first.rsplit("_", 1)[0] if "_" in first else first


def seldon_route_value(model: str, version: str | int | None) -> str:
    """Seldon's ``x-seldon-route`` response header value for a model and version: ``:<model>_<version>:``."""
    return f":{model}_{version}:" if version not in (None, "") else f":{model}:"


class Experiment:
    """A validated experiment with its routing state. Create through :class:`ExperimentSet` or from a config.

    ``route`` and ``record_outcome`` are safe to call from several threads; a route reads an immutable snapshot.
    """

    def __init__(self, config: ExperimentConfig, *, updated_by: str = "config", updated_at: float | None = None):
        self.config = config
        self.updated_by = updated_by
        self.updated_at = time.time() if updated_at is None else updated_at
        self._lock = threading.Lock()
        arms = config.candidates
        self._arm_names: tuple[str, ...] = tuple(c.name for c in arms)
        self._arm_index = {c.name: i for i, c in enumerate(arms)}
        self._model_arms: dict[str, list[int]] = {}
        for i, c in enumerate(arms):
            self._model_arms.setdefault(c.target, []).append(i)
        self._always = tuple(config.shadows) + (
            (config.mirror.name,) if config.mirror and config.mirror.percent >= 100 else ()
        )
        self._partial_mirror = config.mirror if config.mirror and 0 < config.mirror.percent < 100 else None
        self._routes: tuple[Route, ...] = tuple(Route(c.name, c.target, self._always) for c in arms)
        self._routes_mirrored: tuple[Route, ...] = (
            tuple(Route(c.name, c.target, (*self._always, self._partial_mirror.name)) for c in arms)
            if self._partial_mirror
            else self._routes
        )
        self._by_seldon_model = {c.target.split("@")[0].split(":")[0]: i for i, c in enumerate(arms)}
        self._by_seldon_model.update({c.name: i for i, c in enumerate(arms)})
        self._default_index = self._arm_index[config.default_arm]
        bandit = config.bandit or BanditConfig()
        self._seed = bandit.seed
        self._rng = random.Random(bandit.seed)
        self._np_rng = np.random.default_rng(bandit.seed)
        self.successes = np.zeros(len(arms))
        self.failures = np.zeros(len(arms))
        self._pending = 0
        self.refreshes = 0
        if config.strategy == "bandit":
            self._shares = self._bandit_shares()
        elif config.strategy == "weighted":
            weights = np.array([c.weight for c in arms], dtype=float)
            self._shares = weights / weights.sum()
        else:
            self._shares = np.zeros(len(arms))
            self._shares[self._default_index] = 1.0
        self._cumulative = self._cumulate(self._shares)
        self._context: dict[str, int] = {}
        if config.context is not None:
            self._context = {v: self._arm_index[a] for v, a in config.context.routes.items()}
            self._context_default = self._arm_index[config.context.default or config.default_arm]
        self.route_counts = [0] * len(arms)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def arms(self) -> tuple[str, ...]:
        return self._arm_names

    @property
    def models(self) -> tuple[str, ...]:
        """Every model the experiment can call (arms, shadows, mirror), deduplicated in order."""
        names = [c.target for c in self.config.candidates] + list(self.config.shadows)
        if self.config.mirror:
            names.append(self.config.mirror.name)
        return tuple(dict.fromkeys(names))

    @staticmethod
    def _cumulate(shares: np.ndarray) -> list[float]:
        cumulative = np.cumsum(shares / shares.sum()).tolist()
        cumulative[-1] = 1.0  # guard against rounding leaving a gap below 1
        return cumulative

    # The hot path: no allocation beyond a float and, for sticky keys, one 8-byte digest.
    def route(
        self,
        headers: Mapping[str, str],
        parameters: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        among: tuple[int, ...] = (),
    ) -> Route:
        """The arm for one request. ``headers`` are looked up by lower-case name (as ASGI delivers them).

        Order: a pinned ``x-seldon-route`` naming a candidate; contextual value; sticky key; weighted/bandit draw.
        The draw (and a partial mirror's) is a stable hash of ``request_id`` when one is given, so a replay with the
        same request ids is routed the same whatever its timing; only the bandit's shares still move with feedback.
        ``among`` (indices into ``candidates``), when given, are the only arms this request may go to (those whose
        model takes its tensor's shape): an arm outside it is redrawn among them, which gives each of them its
        share renormalised over ``among``.
        """
        config = self.config
        index = -1
        if config.honour_seldon_route:
            pinned = headers.get(SELDON_ROUTE_HEADER)
            if pinned:
                index = self._by_seldon_model.get(_seldon_route_model(pinned), -1)
        if index < 0:
            if self._context:
                index = self._context_index(headers, parameters)
            else:
                if len(self._cumulative) == 1:  # one arm: every draw lands on it, so no hash to compute
                    index = 0
                else:
                    key = headers.get(config.sticky_header) if config.sticky_header else None
                    index = self._index(stable_unit(key, config.name) if key else self._draw(request_id, "route"))
        if among and index not in among:
            index = self._redraw(among, headers, request_id)
        self.route_counts[index] += 1
        if self._partial_mirror is not None and self._draw(request_id, "mirror") * 100 < self._partial_mirror.percent:
            return self._routes_mirrored[index]
        return self._routes[index]

    def _draw(self, request_id: str | None, purpose: str) -> float:
        """A uniform in [0, 1): the hash of ``request_id`` (salted by experiment, purpose and seed), else the rng."""
        if request_id:
            return stable_unit(request_id, f"{self.config.name}\0{purpose}\0{self._seed}")
        return self._rng.random()

    def _index(self, u: float) -> int:
        """The arm whose cumulative share interval holds ``u``."""
        index = bisect.bisect_right(self._cumulative, u)
        return index if index < len(self._cumulative) else len(self._cumulative) - 1

    def _redraw(self, among: tuple[int, ...], headers: Mapping[str, str], request_id: str | None) -> int:
        """An arm of ``among`` drawn by the current shares renormalised over them (uniformly when they are all 0);
        stable per sticky key; for contextual routing, the default arm when it is among them."""
        config = self.config
        if self._context and self._default_index in among:
            return self._default_index
        shares = self._shares[list(among)]
        total = float(shares.sum())
        key = headers.get(config.sticky_header) if config.sticky_header else None
        u = stable_unit(key, config.name + "/fit") if key else self._draw(request_id, "fit")
        if total <= 0:
            return among[min(int(u * len(among)), len(among) - 1)]
        position = bisect.bisect_right(np.cumsum(shares / total).tolist(), u)
        return among[min(position, len(among) - 1)]

    def _context_index(self, headers: Mapping[str, str], parameters: Mapping[str, Any] | None) -> int:
        context = self.config.context
        assert context is not None  # only called when contextual routes exist
        value = headers.get(context.header) if context.header else None
        if value is None and context.parameter and parameters:
            value = parameters.get(context.parameter)
        if value is None:
            return self._context_default
        return self._context.get(str(value).strip().lower(), self._context_default)

    def _resolve_arms(self, arm_or_model: str) -> list[int]:
        if arm_or_model in self._arm_index:
            return [self._arm_index[arm_or_model]]
        return self._model_arms.get(arm_or_model, [])

    def record_outcome(self, arm_or_model: str, correct: bool) -> bool:
        """Count one labelled outcome for an arm (or every arm serving that model). False if it names none.

        For a bandit, the traffic shares are recomputed after every ``bandit.refresh_every`` outcomes.
        """
        indices = self._resolve_arms(arm_or_model)
        if not indices:
            return False
        with self._lock:
            for i in indices:
                if correct:
                    self.successes[i] += 1
                else:
                    self.failures[i] += 1
            if self.config.strategy == "bandit":
                self._pending += 1
                if self._pending >= (self.config.bandit or BanditConfig()).refresh_every:
                    self._refresh_locked()
        return True

    def refresh(self) -> dict[str, float]:
        """Recompute the bandit's shares now (a no-op for other strategies); returns :meth:`traffic_share`."""
        if self.config.strategy == "bandit":
            with self._lock:
                self._refresh_locked()
        return self.traffic_share()

    def _refresh_locked(self) -> None:
        shares = self._bandit_shares()
        # Replace whole objects so a concurrent route sees either the old or the new vector, never a mix.
        self._shares = shares
        self._cumulative = self._cumulate(shares)
        self._pending = 0
        self.refreshes += 1

    def _bandit_shares(self) -> np.ndarray:
        """Floor + (1 - n * floor) * P(best arm), P from Monte Carlo draws of the Beta posteriors."""
        bandit = self.config.bandit or BanditConfig()
        n = len(self._arm_names)
        draws = self._np_rng.beta(
            bandit.prior_alpha + self.successes, bandit.prior_beta + self.failures, size=(bandit.draws, n)
        )
        p_best = np.bincount(draws.argmax(axis=1), minlength=n) / bandit.draws
        return bandit.min_share + (1.0 - n * bandit.min_share) * p_best

    def traffic_share(self) -> dict[str, float]:
        """The share of traffic each arm is meant to get: normalised weights, the bandit's cached shares, or for
        contextual routing the shares observed so far (the default arm alone before any request)."""
        if self.config.strategy == "contextual" and sum(self.route_counts) > 0:
            total = sum(self.route_counts)
            return {a: c / total for a, c in zip(self._arm_names, self.route_counts, strict=True)}
        return {a: float(s) for a, s in zip(self._arm_names, self._shares, strict=True)}

    def posteriors(self) -> dict[str, dict[str, float]]:
        """Per arm: outcomes counted, correct, and the Beta posterior mean (with the bandit's prior, else 1/1)."""
        bandit = self.config.bandit or BanditConfig()
        out = {}
        for i, arm in enumerate(self._arm_names):
            a, b = bandit.prior_alpha + self.successes[i], bandit.prior_beta + self.failures[i]
            out[arm] = {
                "outcomes": int(self.successes[i] + self.failures[i]),
                "correct": int(self.successes[i]),
                "posterior_mean": float(a / (a + b)),
            }
        return out

    def describe(self) -> dict[str, Any]:
        """The experiment's config and live state, JSON-ready (what ``GET /admin/experiments/{name}`` returns)."""
        return {
            "name": self.name,
            "config": self.config.model_dump(mode="json", exclude_none=True),
            "traffic_share": self.traffic_share(),
            "routed": dict(zip(self._arm_names, self.route_counts, strict=True)),
            "arms": self.posteriors(),
            "models": list(self.models),
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }

    def _inherit(self, old: Experiment) -> None:
        """Carry outcome counts and route counts of arms that survive an update."""
        for i, arm in enumerate(self._arm_names):
            j = old._arm_index.get(arm)
            if j is not None:
                self.successes[i] = old.successes[j]
                self.failures[i] = old.failures[j]
                self.route_counts[i] = old.route_counts[j]
        if self.config.strategy == "bandit":
            self._refresh_locked()


# --- the set -------------------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge recursively, ``None`` deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ExperimentSet:
    """All configured experiments by name; :meth:`update` swaps one atomically after validating the patch."""

    def __init__(self, experiments: list[ExperimentConfig] | None = None, limits: ExperimentLimits | None = None):
        self.limits = limits or ExperimentLimits()
        self._experiments: dict[str, Experiment] = {}
        self._lock = threading.Lock()
        for config in experiments or []:
            self.limits.check(config)
            if config.name in self._experiments:
                raise ExperimentConfigError(f"experiment {config.name!r}: defined twice")
            self._experiments[config.name] = Experiment(config)
        self._by_default = self._index_defaults()

    @classmethod
    def from_yaml(
        cls, source: str | Path | Mapping[str, Any] | list[Any], limits: ExperimentLimits | None = None
    ) -> ExperimentSet:
        """Read experiments from a YAML file or an already parsed document.

        Accepted shapes: ``{experiments: [ {name: ..., ...}, ... ]}``, ``{experiments: {name: {...}}}`` or a bare
        list. Other top-level keys (a server config's ``models``, say) are ignored. Every experiment must keep
        within ``limits`` (default :class:`ExperimentLimits`).
        """
        where = ""
        if isinstance(source, str | Path):
            path = Path(source)
            where = f"{path}: "
            try:
                source = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ExperimentConfigError(f"{path}: cannot read experiments: {exc}") from None
        entries: Any = source.get("experiments", []) if isinstance(source, Mapping) else source
        if isinstance(entries, Mapping):
            entries = [{"name": k, **(v or {})} for k, v in entries.items()]
        if not isinstance(entries, list):
            raise ExperimentConfigError(f"{where}experiments: expected a list or mapping, got {type(entries).__name__}")
        try:
            return cls([parse_config(e, where=f" #{i}") for i, e in enumerate(entries)], limits)
        except ExperimentConfigError as exc:
            raise ExperimentConfigError(f"{where}{exc}") from None

    @classmethod
    def default(cls) -> ExperimentSet:
        """The original A/B test only (see :func:`default_config`)."""
        return cls([default_config()])

    def _index_defaults(self) -> dict[str, Experiment]:
        return {e.config.default: e for e in self._experiments.values() if e.config.default}

    def __iter__(self) -> Iterator[Experiment]:
        return iter(list(self._experiments.values()))

    def __len__(self) -> int:
        return len(self._experiments)

    def __contains__(self, name: object) -> bool:
        return name in self._experiments

    def names(self) -> list[str]:
        return list(self._experiments)

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``; :class:`UnknownExperiment` lists the configured ones otherwise."""
        try:
            return self._experiments[name]
        except KeyError:
            raise UnknownExperiment(
                f"no experiment {name!r}; configured: {', '.join(self._experiments) or 'none'}"
            ) from None

    def from_header(self, seldon_model: str | None) -> Experiment | None:
        """The experiment a ``seldon-model: <name>.experiment`` header names, or None for any other value."""
        if seldon_model and seldon_model.endswith(SELDON_EXPERIMENT_SUFFIX):
            return self._experiments.get(seldon_model[: -len(SELDON_EXPERIMENT_SUFFIX)])
        return None

    def for_model(self, model: str) -> Experiment | None:
        """The experiment whose ``default`` is ``model``: Seldon routes requests to that model's endpoint through it."""
        return self._by_default.get(model)

    def models(self) -> list[str]:
        """Every model any experiment can call, deduplicated in order."""
        return list(dict.fromkeys(m for e in self._experiments.values() for m in e.models))

    def update(
        self,
        name: str,
        patch: Mapping[str, Any],
        who: str,
        check: Callable[[Experiment], None] | None = None,
    ) -> Experiment:
        """Apply a JSON merge patch to experiment ``name``, validate it, and swap it in; returns the new state.

        Outcome counts of surviving arms carry over (a bandit keeps learning). An invalid patch raises
        :class:`ExperimentConfigError` and leaves the experiment as it was, as does one beyond the set's limits.
        Renaming is refused. ``check`` (e.g.
        "the server serves every model it names") sees the new experiment before the swap; whatever it raises
        propagates and nothing changes.
        """
        if not isinstance(patch, Mapping):
            raise ExperimentConfigError(f"experiment {name!r}: patch must be a mapping, got {type(patch).__name__}")
        with self._lock:
            old = self.get(name)
            if "name" in patch and patch["name"] != name:
                raise ExperimentConfigError(f"experiment {name!r}: name: cannot be changed by an update")
            raw = merge_patch(old.config.model_dump(mode="python", exclude_none=True), patch)
            config = parse_config(raw)
            self.limits.check(config)  # before the bandit's first draws, which the limits bound
            new = Experiment(config, updated_by=who)
            if check is not None:
                check(new)
            new._inherit(old)
            self._experiments[name] = new
            self._by_default = self._index_defaults()
            return new
