"""What every section shares: the ``Section`` it returns, reading a result file as its typed input, and the HTML
formatting of numbers, intervals, tables and notes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from finmlops.stats import Comparison, describe_comparison
from finmlops.stats.comparison import format_interval, format_number

if TYPE_CHECKING:
    from finmlops.evaluation import results


class ReportError(ValueError):
    """A result file exists but cannot be read as its documented schema; the message names the file."""


class Input(BaseModel):
    """Base of a section's typed input: the fields it renders; other keys of the result file are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Estimate(Input):
    """A point estimate with its interval (``None`` where undefined: NaN after the JSON round trip)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class Section:
    """One part of the report: its HTML ``body``, the files it read, and ``missing`` (the command that would fill
    it) when its main input is absent."""

    key: str
    title: str
    body: str
    sources: tuple[str, ...] = ()
    missing: str | None = None

    @property
    def filled(self) -> bool:
        return self.missing is None


def empty(key: str, title: str, command: str, what: str, then: str = "") -> Section:
    """The section when its input is missing: a line naming the command that fills it."""
    body = (
        f'<p class="missing">No {escape(what)} yet: run <code>{escape(command)}</code>{escape(then)} to fill this '
        "section.</p>"
    )
    return Section(key, title, body, missing=command)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist; a clear error when it is not JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


M = TypeVar("M", bound=BaseModel)


def read_model(path: Path, model: type[M]) -> M | None:
    """``path``'s JSON validated as ``model``, or None when the file does not exist; a ``ReportError`` naming the
    file and the first field that does not follow the schema otherwise."""
    payload = read_json(path)
    if payload is None:
        return None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ReportError(
            f"{path}: does not follow its schema ({where}: {first['msg']}); rerun the command that writes it"
        ) from exc


def text(value: object) -> str:
    """``value`` as text, a dash for ``None`` (no "None" reaches the page)."""
    return "–" if value is None else str(value)


num = format_number
"""``num(value, spec)``: ``value`` formatted, or a dash when undefined (the sections' short name)."""


def ci(entry: Estimate | results.Estimate | None, spec: str = ".3f") -> str:
    """``value [low, high]``, or a dash when the value is undefined (None or NaN)."""
    return "–" if entry is None else format_interval(entry.value, entry.ci_low, entry.ci_high, spec)


def comparison(c: Comparison) -> str:
    """A comparison's sentence with its verdict marked: bold when it is better or worse than the reference."""
    text = escape(describe_comparison(c))
    return f'<b class="{c.verdict.replace(" ", "-")}">{text}</b>' if c.verdict in ("better", "worse") else text


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, raw: bool = False, text: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells already HTML). The first column is left-aligned, and
    every column with ``text`` (sentences rather than figures)."""
    cell = (lambda c: c) if raw else escape
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    kind = ' class="text"' if text else ""
    return f'<div class="scroll"><table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'
