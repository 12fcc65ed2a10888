"""``finmlops report`` and ``finmlops reproduce``."""

from __future__ import annotations

from pathlib import Path

import typer

from finmlops.cli.common import app, choices, console, emit_json, fail, settings_from

PANEL = "Reports"  # the group these commands are listed under in finmlops --help


@app.command("report", rich_help_panel=PANEL)
def report_command(
    out: str | None = typer.Option(None, "--out", help="HTML file to write (default: <home>/report.html)."),
    json_out: bool = typer.Option(False, "--json", help="Print the path and each section's inputs as JSON."),
) -> None:
    """One self-contained HTML page (no external assets) of every result in the workspace: evaluation with CIs,
    calibration and confusion, backtest and equity curves, leakage audit, importance, drift, A/B timeline and
    serving latency, with provenance. A section without its input says which command fills it. See docs/report.md."""

    from finmlops.report.page import ReportError, write_report  # deferred: scipy

    settings = settings_from()
    try:
        path, sections = write_report(settings, Path(out) if out else None)
    except (ReportError, OSError) as exc:
        fail(str(exc))
    if json_out:
        emit_json({
            "path": str(path),
            "sections": [
                {"key": s.key, "title": s.title, "filled": s.filled, "sources": list(s.sources), "missing": s.missing}
                for s in sections
            ],
        })  # fmt: skip
        return
    for s in sections:
        state = "[green]ok[/]" if s.filled else f"[yellow]empty[/] (run `{s.missing}`)"
        console.print(f"{s.title}: {state}", highlight=False)
    console.print(f"wrote {path}", highlight=False)


Paper = choices("Paper", ("fischer-krauss",))  # finmlops.report.reproduction.PAPERS (pandas, scipy)


@app.command("reproduce", rich_help_panel=PANEL)
def reproduce_command(
    paper: Paper = typer.Argument(..., help="The paper to set this run beside: fischer-krauss."),  # type: ignore[valid-type]
    results: Path = typer.Option(..., "--results", help="A run's results folder (<home>/results)."),
    out: Path = typer.Option(Path("docs/reproductions/fischer-krauss.md"), "--out", help="Markdown page to write."),
    period: list[str] = typer.Option(
        ["2001-2009", "2010-2021"], "--period", help="FIRST-LAST years of decision dates (repeatable)."
    ),
    k: int = typer.Option(10, "--k", min=1, help="Stocks long and stocks short each day."),
    cost_bps: float = typer.Option(5.0, "--cost-bps", min=0.0, help="Costs in bps per half-turn."),
    n_boot: int | None = typer.Option(None, "--n-boot", min=50, help="Bootstrap resamples (default: the run's)."),
    json_out: bool = typer.Option(False, "--json", help="Print every figure of the page as JSON."),
) -> None:
    """The papers' published figures beside this run's, from the run's own saved predictions and provenance (no
    refit): F&K's daily long top-k / short bottom-k, before and after costs, per model and period, with block-
    bootstrap CIs, the signal measures, and what survivorship bias does to the comparison. See docs/evaluation.md."""
    # deferred: scipy
    from finmlops.report.reproduction import ReproductionError, parse_period, read_run, write_reproduction
    from finmlops.stats.bootstrap import BootstrapConfig  # deferred: scipy

    try:
        periods = [parse_period(p) for p in period]
    except ReproductionError as exc:
        fail(f"--period: {exc}", code=2)
    try:
        boot = None
        if n_boot is not None:
            b = read_run(results).bootstrap
            boot = BootstrapConfig(n_boot=n_boot, block_len=int(b.get("block_len", 10)), seed=int(b.get("seed", 42)))
        rep = write_reproduction(results, out, periods=periods, k=k, cost_bps=cost_bps, boot=boot)
    except (ReproductionError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(rep.model_dump(mode="json"))
        return
    measured = sum(c.ok for c in rep.cells)
    edges = [f"{c.model} {c.period}" for c in rep.cells if c.ok and c.after and c.after.verdict == "edge"]
    console.print(
        f"{paper.value}: {measured} of {len(rep.cells)} model x period books measured; edge after costs: "
        f"{', '.join(edges) or 'none'}; wrote {out}",
        highlight=False,
    )
