"""One settings model for the whole platform.

Precedence, highest first: explicit keyword arguments, ``FINMLOPS_*`` environment variables, the original system's
variables (``TICKERS``, ``INGESTION_START_DATE``, ``INGESTION_END_DATE``, ``RAW_DATA_DIR``), ``finmlops.yaml`` in
the current directory (or the file named by ``FINMLOPS_CONFIG``), then the defaults below.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, Field, field_validator
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


def config_file() -> Path:
    """The YAML file settings are read from (it need not exist)."""
    return Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))


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


def load_settings(**overrides: Any) -> Settings:
    """Read settings; ``overrides`` (e.g. CLI flags) win over every other source. ``None`` values are ignored."""
    path = config_file()
    if path.exists():
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
