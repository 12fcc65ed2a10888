"""What the command line shows people: help text as written (issue 15.7)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from rich.text import Text

from finmlops.cli import app


def _commands(command: Any, path: str = "finmlops") -> Iterator[tuple[str, Any]]:
    """Every command and group under ``command`` (typer's own click objects), with its command line."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_help_text_prints_as_written() -> None:
    """Typer renders help through rich markup, which swallows a bracketed "[default: ...]" ("Study name .")."""
    swallowed, seen = [], 0
    for path, command in _commands(typer.main.get_command(app)):
        texts = [("help", command.help or "")] + [(p.name, getattr(p, "help", None) or "") for p in command.params]
        seen += 1
        swallowed += [f"{path} {name}: {text!r}" for name, text in texts if Text.from_markup(text).plain != text]
    assert seen > 25 and swallowed == []
