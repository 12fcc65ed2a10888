"""Provenance: the stamp of every JSON result the other sections read (data hash, code version, seed, config and
package versions), with a warning when they come from different datasets or code versions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from finmlops.report.base import Input, Section, empty, note, read_json, table, text
from finmlops.settings import Settings

TITLE = "Provenance"


class Stamp(Input):
    """A result's ``provenance`` block (``finmlops.provenance.stamp``)."""

    created_at: str | None = None
    data_hash: str | None = None
    git_commit: str | None = None
    seed: int | None = None
    config: Any = None
    versions: Any = None


def read_stamps(sources: Sequence[str]) -> list[tuple[str, Stamp]]:
    """``(file name, stamp)`` of each JSON source, once, in order; files without a valid stamp are left out."""
    stamps = []
    for source in dict.fromkeys(sources):
        path = Path(source)
        payload = read_json(path) if path.suffix == ".json" else None
        if payload is None or not isinstance(payload.get("provenance"), dict):
            continue
        try:
            stamps.append((path.name, Stamp.model_validate(payload["provenance"])))
        except ValidationError:
            continue
    return stamps


def _details(label: str, value: Any) -> str:
    return f"<details><summary>{label}</summary><pre>{escape(json.dumps(value, indent=1))}</pre></details>"


def render(stamps: list[tuple[str, Stamp]]) -> str:
    rows = [
        [
            escape(name),
            escape(text(p.created_at)),
            f'<code title="{escape(text(p.data_hash))}">{escape(text(p.data_hash)[:16])}</code>',
            f"<code>{escape(text(p.git_commit))}</code>",
            escape(text(p.seed)),
            _details("config", p.config) + _details("versions", p.versions),
        ]
        for name, p in stamps
    ]
    hashes = sorted({p.data_hash for _, p in stamps if p.data_hash})
    commits = sorted({p.git_commit for _, p in stamps if p.git_commit})
    body = ""
    if len(hashes) > 1:
        body += note(f"Warning: these results come from {len(hashes)} different datasets: {', '.join(hashes)}.")
    if len(commits) > 1:
        body += note(f"These results were computed by {len(commits)} code versions: {', '.join(commits)}.")
    return body + table(["file", "created", "data hash", "git commit", "seed", "config"], rows, raw=True)


def build(settings: Settings, sources: Sequence[str]) -> Section:
    stamps = read_stamps(sources)
    if not stamps:
        return empty("provenance", TITLE, "finmlops evaluate", "stamped results")
    return Section("provenance", TITLE, render(stamps), tuple(sources))
