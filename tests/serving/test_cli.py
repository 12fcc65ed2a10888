"""`finmlops serve` refuses to start with one clear error line when it cannot serve."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from finmlops.cli import app


def test_missing_config_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_invalid_config_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "serving.yaml"
    path.write_text("models:\n  - name: a\n    source: a.onnx\nserver:\n  max_batch_size: -1\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 1 and "serving.yaml" in result.output and "max_batch_size" in result.output


def test_a_model_that_cannot_load_is_named(tmp_path: Path) -> None:
    path = tmp_path / "serving.yaml"
    path.write_text(f"models:\n  - name: a\n    source: {tmp_path / 'missing.onnx'}\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 1 and "missing.onnx" in result.output


def test_default_config_needs_a_champion_in_the_registry() -> None:
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1 and "champion" in result.output


def test_serve_help_shows_what_config_defaults_to() -> None:
    """Rich reads ``[...]`` in help text as markup and drops it; the default must survive into --help."""
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if "--config" in x)
    assert "every *-predictor@champion in the registry + the A/B test" in line, line
