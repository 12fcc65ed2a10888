"""One settings model for the whole platform.

Precedence, highest first: explicit keyword arguments, ``FINMLOPS_*`` environment variables, the original system's
variables (``TICKERS``, ``INGESTION_START_DATE``, ``INGESTION_END_DATE``, ``RAW_DATA_DIR``), ``finmlops.yaml`` in
the current directory (or the file named by ``FINMLOPS_CONFIG``), then the defaults below.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "GOOG", "AMZN", "JPM", "TSLA", "NVDA", "XOM", "JNJ", "V")
CONFIG_FILE_ENV = "FINMLOPS_CONFIG"
DEFAULT_CONFIG_FILE = "finmlops.yaml"


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class SettingsError(ValueError):
    """Settings that cannot be used; ``fields`` holds (field, message) per invalid field, empty for a bad file."""

    def __init__(self, message: str, fields: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []


def config_file() -> Path:
    """The YAML file settings are read from (it need not exist)."""
    return Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))


def parse_iso_date(text: str) -> date:
    """``YYYY-MM-DD`` and nothing else (no ``03/01/2023``, ``2023-3-1``, ``20230301`` or times); ``ValueError``
    with a short message otherwise."""
    if not _ISO_DATE.fullmatch(text.strip()):
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date (YYYY-MM-DD)") from None


class Settings(BaseSettings):
    """Platform settings. Every field can be set in ``finmlops.yaml`` or as ``FINMLOPS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="FINMLOPS_", extra="forbid", populate_by_name=True)

    home: Path = Field(
        default=Path(".finmlops"),
        description="Workspace: data store, features, MLflow database, models and reports.",
        validation_alias=AliasChoices("FINMLOPS_HOME"),
    )
    # NoDecode: the environment gives a comma-separated string, not JSON.
    tickers: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_TICKERS),
        description="Universe of tickers, upper case.",
        validation_alias=AliasChoices("FINMLOPS_TICKERS", "TICKERS"),
    )
    start: date = Field(
        default=date(2018, 1, 1),
        description="First date to ingest (inclusive).",
        validation_alias=AliasChoices("FINMLOPS_START", "INGESTION_START_DATE"),
    )
    end: date = Field(
        default=date(2023, 12, 31),
        description="Last date to ingest (inclusive).",
        validation_alias=AliasChoices("FINMLOPS_END", "INGESTION_END_DATE"),
    )
    raw_data_dir: Path | None = Field(
        default=None,
        description="Folder of Yahoo-format CSVs for `ingest --source csv`.",
        validation_alias=AliasChoices("FINMLOPS_RAW_DATA_DIR", "RAW_DATA_DIR"),
    )
    sp500_dir: Path | None = Field(
        default=None,
        description="Folder of the sp500 universe's Yahoo-format CSVs (<TICKER>.csv), read by a run config with "
        "`universe: {source: sp500}`; not shipped (see docs/data.md), e.g. ../shared/data/sp500/ohlcv.",
        validation_alias=AliasChoices("FINMLOPS_SP500_DIR"),
    )
    feature_set: str = Field(default="basic", description="Default feature set: basic, enhanced or advanced.")
    horizon: int = Field(
        default=1, ge=1, description="Label horizon h in trading days: direction of the traded return t+1 -> t+1+h."
    )
    threshold: float = Field(
        default=0.0,
        ge=0.0,
        description="Dead band of the label as a fraction (0.002 = 0.2 %): |return| <= threshold is unlabelled; "
        "0 labels every known move (up if > 0, else down).",
    )
    execution: Literal["close", "open"] = Field(
        default="close",
        description="The label's trade: entered at the close (or open) of t+1, exited horizon days later at the same "
        "kind of price; the backtest earns exactly that return.",
    )
    seed: int = Field(default=42, description="Seed for every random choice in a run.")
    threads: int = Field(default=2, ge=1, description="CPU threads for torch and onnxruntime.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default sqlite:///<home>/mlflow.db. MLFLOW_TRACKING_URI also works.",
        validation_alias=AliasChoices("FINMLOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )

    @field_validator("tickers", mode="before")
    @classmethod
    def _split_tickers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [t for t in value.replace(" ", ",").split(",") if t]
        if isinstance(value, list | tuple):
            return [str(t).strip().upper() for t in value]
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, date):  # YAML's own unquoted dates
            return value
        if isinstance(value, str):
            return parse_iso_date(value)
        raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"workspace {value} exists and is not a directory")
        return value

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: date, info: Any) -> date:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError(f"end {value} is before start {start}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file()))

    # Derived workspace paths: one place decides the layout.
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home.resolve() / 'mlflow.db'}"


def check_workspace(home: Path) -> None:
    """``SettingsError`` unless ``home`` is a directory this process can write, or one it can create."""
    if home.exists() and not home.is_dir():
        raise SettingsError(f"workspace {home} exists and is not a directory; set FINMLOPS_HOME to a folder")
    probe = home.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise SettingsError(
            f"workspace {home} is not writable ({probe} is read-only or not yours); set FINMLOPS_HOME to a "
            "writable folder"
        )


def validation_message(exc: ValidationError, root: str = "config") -> str:
    """A pydantic error as one line, ``field.path: message; ...``, without input dumps or documentation URLs (the
    serving config and the run config word their errors with it)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or root}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in exc.errors(include_url=False)
    )


def _field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) per error, without pydantic's input dumps and documentation URLs."""
    alias_of = {
        str(alias): name
        for name, info in Settings.model_fields.items()
        if isinstance(info.validation_alias, AliasChoices)
        for alias in info.validation_alias.choices
    }
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"]) or "settings"
        field = alias_of.get(field, field)
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting"
        out.append((field, message))
    return out


def _read_config(path: Path) -> None:
    """Check that the YAML file ``path`` (when present) is a readable mapping; ``SettingsError`` naming it."""
    if not path.exists():
        return
    if path.is_dir():
        raise SettingsError(f"{path}: the settings file is a directory ({CONFIG_FILE_ENV} names a YAML file)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SettingsError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {getattr(exc, 'strerror', None) or exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")


def load_settings(**overrides: Any) -> Settings:
    """Read settings; ``overrides`` (e.g. CLI flags) win over every other source. ``None`` values are ignored.

    Raises ``SettingsError``: one line naming the file, or each invalid field with a short message.
    """
    path = config_file()
    _read_config(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fields = _field_errors(exc)
        raise SettingsError("; ".join(f"{f}: {m}" for f, m in fields), fields) from None
