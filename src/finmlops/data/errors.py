"""Errors of the data layer; each message names the file (or source), the row and the broken rule."""

from __future__ import annotations


class DataError(Exception):
    """Base class: any failure of ingesting, validating or reading market data."""


class DataValidationError(DataError):
    """Input data break a rule. ``row`` is the 1-based CSV line, or the ISO date for in-memory frames."""

    def __init__(self, source: str, row: int | str | None, rule: str, detail: str) -> None:
        self.source = source
        self.row = row
        self.rule = rule
        self.detail = detail
        where = f"{source}" if row is None else f"{source}, row {row}"
        super().__init__(f"{where}: rule '{rule}' failed: {detail}")


class DataSourceError(DataError):
    """A source could not deliver data (offline, unknown ticker, missing file)."""


class DataStoreError(DataError):
    """The store is empty, corrupted, or new data conflict with stored data."""
