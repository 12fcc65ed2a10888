"""The report page: every section in order, the provenance of all the files they read last, one self-contained HTML
file (``finmlops report``).

Each section is a module of ``finmlops.report.sections`` with ``build(settings) -> Section``: it reads its result
files as typed inputs (a missing one leaves the section with a note naming the command that fills it) and renders
them with ``finmlops.report.charts``. Every number printed comes from those files; nothing is recomputed: the equity
curves are the paths the backtest saved, the confusion matrices are counts of ``predictions.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from finmlops.provenance import write_text_atomic
from finmlops.report.base import ReportError, Section
from finmlops.report.sections import (
    abtest,
    audit,
    backtest,
    calibration,
    drift,
    evaluation,
    importance,
    latency,
    live,
    signal,
    strategies,
)
from finmlops.report.sections import provenance as provenance_section
from finmlops.settings import Settings

REPORT_FILE = "report.html"

SECTIONS: tuple[tuple[str, Callable[[Settings], Section]], ...] = (
    ("evaluation", evaluation.build),
    ("signal", signal.build),
    ("calibration", calibration.build),
    ("backtest", backtest.build),
    ("strategies", strategies.build),
    ("audit", audit.build),
    ("importance", importance.build),
    ("drift", drift.build),
    ("abtest", abtest.build),
    ("live", live.build),
    ("latency", latency.build),
)
# Sections about something a workspace may never do (`finmlops live`): left out, not shown empty, when absent.
OPTIONAL = frozenset({"live"})


def collect_sections(settings: Settings) -> list[Section]:
    """Every section in report order, the provenance of all files read last.

    A result file that exists but does not follow its documented schema raises ``ReportError`` naming it.
    """
    sections = []
    for name, build in SECTIONS:
        try:
            section = build(settings)
            if not (name in OPTIONAL and not section.filled):
                sections.append(section)
        except ReportError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ReportError(
                f"{name} section: a result file in {settings.results_dir} does not follow its schema "
                f"({type(exc).__name__}: {exc}); rerun the command that writes it"
            ) from exc
    sections.append(provenance_section.build(settings, [s for section in sections for s in section.sources]))
    return sections


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin:32px 0 8px;border-bottom:2px solid #4e79a7;padding-bottom:4px}h3{margin:18px 0 6px}
section{background:#fff;border-radius:8px;padding:4px 18px 14px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #e4e6ea;
text-align:right;vertical-align:top}th:first-child,td:first-child{text-align:left}thead th{background:#eef1f5}
.scroll{overflow-x:auto}.chart{width:100%;height:auto;display:block;margin:10px 0 2px}
.chart .title{font-size:13px;font-weight:600}.chart .tick{font-size:11px;fill:#555}.chart .label{font-size:12px}
.chart .grid{stroke:#e6e6e6}.chart .axis{stroke:#888}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;margin:2px 0 8px}.key svg{vertical-align:middle;
margin-right:4px}.note{color:#555;font-size:12.5px}.missing{color:#8a5a00;background:#fff6e0;padding:8px 10px;
border-radius:6px}.pass{color:#fff;background:#59a14f;padding:0 6px;border-radius:4px}.fail{color:#fff;
background:#e15759;padding:0 6px;border-radius:4px}.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px
solid #e4e6ea;border-radius:6px;padding:6px 10px}table.confusion td{text-align:center;min-width:70px}
nav ul{columns:2;padding-left:18px}pre{white-space:pre-wrap;font-size:11px;text-align:left}code{font-size:12px}
.decision{background:#eef1f5;padding:8px 10px;border-radius:6px}b.worse{color:#b3261e}b.better{color:#2e7d32}
table.text th,table.text td{text-align:left}
"""


def render_html(sections: Sequence[Section], settings: Settings) -> str:
    """The whole page: a header with the table of contents, then every section."""
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    toc = "".join(
        f'<li><a href="#{s.key}">{escape(s.title)}</a>{"" if s.filled else " <small>(no input yet)</small>"}</li>'
        for s in sections
    )
    body = "".join(f'<section id="{s.key}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>finmlops report</title><style>{CSS}</style></head><body><main>"
        f'<h1>finmlops report</h1><p class="note">Workspace {escape(str(settings.home.resolve()))}, generated '
        f"{generated}. Every number below is read from the result files listed under Provenance; realistic "
        "next-day direction accuracy for large caps is 50-55%, so read each figure with its interval.</p>"
        f"<nav><ul>{toc}</ul></nav>{body}</main></body></html>\n"
    )


def write_report(settings: Settings, out: Path | None = None) -> tuple[Path, list[Section]]:
    """Collect the sections, render them and write the page atomically to ``out`` (default
    ``<home>/report.html``). Returns the path and the sections."""
    sections = collect_sections(settings)
    path = write_text_atomic(out or settings.home / REPORT_FILE, render_html(sections, settings))
    return path, sections


def build_report(settings: Settings) -> Path:
    """``<home>/report.html`` from the workspace's results; the path. Used by ``finmlops report`` and ``run``."""
    return write_report(settings)[0]


def iter_sources(sections: Sequence[Section]) -> Iterator[str]:
    """Every input file the sections read, once, in report order."""
    yield from dict.fromkeys(s for section in sections for s in section.sources)
