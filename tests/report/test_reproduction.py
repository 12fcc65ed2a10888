"""The Fischer & Krauss reproduction page: generated from a results folder (predictions, evaluation.json,
run_config.yaml) of synthetic walk-forward predictions with a known signal, checked against a direct computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from finmlops import cli
from finmlops.cli import app
from finmlops.provenance import file_sha256, stamp, write_json_atomic
from finmlops.report.reproduction import (
    NOT_IN_RUN,
    PAPERS,
    Book,
    Estimate,
    ReproductionError,
    _in_words,
    parse_period,
    render_markdown,
    reproduce_fischer_krauss,
    verdict,
    write_reproduction,
)
from finmlops.stats.bootstrap import BootstrapConfig

BOOT = BootstrapConfig(n_boot=200, block_len=10, seed=7)
DATA_HASH = "feedc0ffee"


def _predictions(n_tickers: int = 24, seed: int = 0) -> pd.DataFrame:
    """Walk-forward rows for mid-2008 to mid-2010 (both default periods, each partly): ``kdh_rf`` scores with the
    next return plus noise (a real edge), ``fk_lstm`` at random, ``kdh_dnn`` only up to 2009, ``majority`` a
    constant."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2008-07-01", "2010-06-30")
    tickers = [f"T{i:02d}" for i in range(n_tickers)]
    grid = pd.MultiIndex.from_product([dates, tickers], names=["date", "ticker"]).to_frame(index=False)
    grid["ret_next"] = rng.normal(0.0, 0.02, len(grid))
    median = grid.groupby("date")["ret_next"].transform("median")
    grid["y_true"] = (grid["ret_next"] > median).astype(int)
    grid["fold"] = grid["date"].dt.year
    parts = []
    for model, prob in (
        ("kdh_rf", 1 / (1 + np.exp(-(grid["ret_next"] * 100 + rng.normal(0, 2.0, len(grid)))))),
        ("fk_lstm", rng.uniform(0.3, 0.7, len(grid))),
        ("kdh_dnn", rng.uniform(0.3, 0.7, len(grid))),
        ("majority", np.full(len(grid), 0.6)),
    ):
        part = grid.assign(model=model, prob_up=prob)
        parts.append(part if model != "kdh_dnn" else part.loc[part["date"].dt.year <= 2009])
    return pd.concat(parts, ignore_index=True)


def _results(tmp_path: Path, preds: pd.DataFrame, kind: str = "cross_sectional") -> Path:
    """A results folder as a run leaves it: predictions, evaluation.json with provenance, run_config.yaml."""
    results = tmp_path / "results"
    results.mkdir()
    preds.to_parquet(results / "predictions.parquet", index=False)
    label = {"kind": kind, "horizon": 1, "threshold": 0.0, "execution": "close"}
    write_json_atomic(
        results / "evaluation.json",
        {
            "provenance": stamp(data_hash=DATA_HASH, config={"label": label}, seed=7),
            "predictions": {"file": "predictions.parquet", "sha256": file_sha256(results / "predictions.parquet")},
            "bootstrap": {"n_boot": 200, "block_len": 10, "seed": 7, "level": 0.95},
            "models": {},
        },
    )
    config = {
        "name": "synthetic", "seed": 7, "epochs": 1, "test_years": [2008, 2009, 2010], "label": label,
        "universe": {"source": "sp500", "tickers": sorted(preds["ticker"].unique()), "start": "2005-01-01",
                     "end": "2010-12-31"},
        "variants": [{"name": "fk_lstm"}, {"name": "kdh_dnn"}], "baselines": ["kdh_rf"],
    }  # fmt: skip
    (results / "run_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return results


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _results(tmp_path_factory.mktemp("repro"), _predictions())


@pytest.fixture(scope="module")
def page(run: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("page") / "fischer-krauss.md"
    write_reproduction(run, out, boot=BOOT)
    return out.read_text()


def _row(page: str, model: str, period: str, table: int = 0) -> list[str]:
    """The cells of ``model``'s ``period`` row in the page's ``table``-th table of this run."""
    rows = [line for line in page.splitlines() if line.startswith(f"| {model} | {period} |")]
    return [cell.strip() for cell in rows[table].strip("|").split("|")]


def _pct(text: str) -> float:
    """``+0.123% [...]`` -> 0.00123 (the point estimate)."""
    return float(text.split("%")[0]) / 100


def test_page_sets_the_papers_beside_every_model_and_period(page: str) -> None:
    for published in ("0.46%", "| 5.8 |", "above 0.45%", "fluctuating around zero after transaction costs"):
        assert published in page
    for model in ("fk_lstm", "kdh_dnn", "kdh_gbt", "kdh_rf", "kdh_ensemble"):
        for period in ("2001-2009", "2010-2021"):
            assert len([r for r in page.splitlines() if r.startswith(f"| {model} | {period} |")]) == 2
    # Absent models and a model's absent period say so, and carry no numbers.
    assert _row(page, "kdh_gbt", "2001-2009")[2] == NOT_IN_RUN
    assert _row(page, "kdh_dnn", "2010-2021")[2] == f"{NOT_IN_RUN}: no predictions in 2010-2021"
    assert "%" not in "".join(_row(page, "kdh_ensemble", "2010-2021"))
    # A constant score ranks nothing: no book in ticker order.
    assert _row(page, "majority", "2010-2021")[2] == "no book: the score is constant on every date (nothing to rank)"
    assert "kdh_gbt, kdh_ensemble have no book in this run" in page
    # Periods are cut to what the predictions cover.
    assert _row(page, "kdh_rf", "2001-2009")[2].startswith("2008-07-01 to 2009-12-31")
    assert _row(page, "kdh_rf", "2010-2021")[2].startswith("2010-01-01 to 2010-06-30")
    # Survivorship: the direction of each leg's bias is stated.
    assert "long leg is biased upwards" in page and "upper bound" in page
    assert "short leg is biased the other way" in page


def test_page_records_the_runs_config_data_hash_and_code(page: str, run: Path) -> None:
    assert DATA_HASH in page
    assert file_sha256(run / "run_config.yaml") in page
    assert file_sha256(run / "predictions.parquet") + "` (matches)" in page
    assert "name `synthetic`, universe `sp500` (24 tickers" in page
    assert "Code version that made the predictions: git `" in page
    assert (run / "run_config.yaml").read_text().rstrip("\n") in page


def test_the_pages_numbers_equal_a_direct_computation(page: str, run: Path) -> None:
    """Long the 10 highest scores, short the 10 lowest, by hand: gross, turnover x 5 bps, Sharpe x sqrt(252)."""
    preds = pd.read_parquet(run / "predictions.parquet")
    rows = preds.loc[(preds["model"] == "kdh_rf") & (preds["date"].dt.year <= 2009)]
    prev, gross, net, ics = {}, [], [], []
    for _, day in rows.groupby("date"):
        day = day.sort_values("ticker")
        order = day.sort_values("prob_up", ascending=False, kind="stable")["ticker"].tolist()
        w = dict.fromkeys(order[:10], 0.1) | dict.fromkeys(order[-10:], -0.1)
        ret = dict(zip(day["ticker"], day["ret_next"], strict=True))
        g = sum(wt * ret[t] for t, wt in w.items())
        turnover = sum(abs(w.get(t, 0.0) - prev.get(t, 0.0)) for t in set(w) | set(prev))
        gross.append(g)
        net.append(g - turnover * 5 / 1e4)
        ics.append(np.corrcoef(day["prob_up"], day["ret_next"])[0, 1])
        prev = w
    gross, net = np.array(gross), np.array(net)
    cells = _row(page, "kdh_rf", "2001-2009")
    assert _pct(cells[4]) == pytest.approx(gross.mean(), abs=5e-6)
    assert float(cells[5].split()[0]) == pytest.approx(gross.mean() / gross.std(ddof=1) * math.sqrt(252), abs=0.006)
    assert _pct(cells[6]) == pytest.approx(net.mean(), abs=5e-6)
    assert float(cells[7].split()[0]) == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252), abs=0.006)
    assert net.mean() > 0  # the synthetic signal is strong enough to pay 20 bps a day
    signal = _row(page, "kdh_rf", "2001-2009", table=1)
    assert float(signal[6].split()[0]) == pytest.approx(np.mean(ics), abs=6e-5)


def test_an_interval_that_includes_zero_is_never_an_edge(run: Path, page: str) -> None:
    assert verdict(Estimate(value=0.001, ci_low=-0.0001, ci_high=0.002, p_value=0.01)) == "no edge measured"
    assert verdict(Estimate(value=0.001, ci_low=0.0002, ci_high=0.002, p_value=0.2)) == "no edge measured"
    assert verdict(Estimate(value=0.001, ci_low=0.0002, ci_high=0.002, p_value=0.01)) == "edge"
    assert verdict(Estimate(value=-0.001, ci_low=-0.002, ci_high=-0.0002, p_value=0.01)) == "loss"
    border = Estimate(value=0.001, ci_low=0.0002, ci_high=0.002, p_value=0.2)
    words = _in_words(Book(mean_daily=border, sharpe=border, verdict=verdict(border)), "after costs", 4)
    assert words.startswith("no edge measured after costs: the CI excludes 0 but the test does not reject")
    rep = reproduce_fischer_krauss(run, boot=BOOT)
    books = [(c, b) for c in rep.cells if c.ok for b in (c.before, c.after) if b]
    assert books
    for cell, book in books:
        m = book.mean_daily
        if m.ci_low <= 0 <= m.ci_high:
            assert book.verdict != "edge", (cell.model, cell.period)
    assert rep.cell("fk_lstm", "2001-2009").after.verdict != "edge"  # random scores
    assert rep.cell("kdh_rf", "2001-2009").after.verdict == "edge"
    for c in rep.cells:
        if c.ok and c.after and c.after.verdict != "edge":
            assert (
                "no edge measured after costs" in _row(page, c.model, c.period)[8]
                or "loses" in _row(page, c.model, c.period)[8]
            )
    headline = page.split("## Does any edge survive costs?")[1].split("##")[0]
    assert "kdh_rf in 2001-2009" in headline and "fk_lstm" not in headline
    # Every edge before costs is weighed against the number of books tried, and the page says which survive.
    tried = sum(c.ok for c in rep.cells)
    gross = [c for c in rep.cells if c.ok and c.before.verdict == "edge"]
    strict = [c for c in gross if c.before.mean_daily.p_value * tried < 0.05]
    assert f"a Bonferroni correction over the {tried} books (p < {0.05 / tried:.4f})" in headline
    assert ("none survives" in headline) == (not strict) and all(f"{c.model} in {c.period}" in headline for c in strict)


def test_a_random_score_gets_no_edge_and_the_headline_says_no(tmp_path: Path) -> None:
    preds = _predictions()
    preds = preds.loc[preds["model"] != "kdh_rf"]
    rep = reproduce_fischer_krauss(_results(tmp_path, preds), boot=BOOT)
    text = render_markdown(rep)
    headline = text.split("## Does any edge survive costs?")[1].split("##")[0]
    assert "**No.**" in headline
    assert all(c.after.verdict != "edge" for c in rep.cells if c.ok and c.after)


def test_too_small_a_universe_is_said_not_faked(tmp_path: Path) -> None:
    rep = reproduce_fischer_krauss(_results(tmp_path, _predictions(n_tickers=15)), boot=BOOT)
    cell = rep.cell("kdh_rf", "2001-2009")
    assert cell.status == f"{NOT_IN_RUN}: k = 10 needs 20 tickers a date, this run has at most 15"
    assert "Not measurable from this run" in render_markdown(rep)


def test_accuracy_against_a_coin_flip_only_on_the_balanced_label(tmp_path: Path, run: Path) -> None:
    balanced = reproduce_fischer_krauss(run, boot=BOOT).cell("kdh_rf", "2001-2009")
    assert balanced.accuracy is not None and balanced.accuracy.ci_low > 0.5
    rep = reproduce_fischer_krauss(_results(tmp_path, _predictions(), kind="direction"), boot=BOOT)
    assert rep.cell("kdh_rf", "2001-2009").accuracy is None
    assert "not in this run: the label is `direction`" in render_markdown(rep)


def test_periods_and_missing_files_are_one_clear_error(tmp_path: Path) -> None:
    assert parse_period("2001-2009").name == "2001-2009"
    with pytest.raises(ReproductionError, match="expected FIRST-LAST"):
        parse_period("2009-2001")
    with pytest.raises(ReproductionError, match=r"evaluation\.json: missing"):
        reproduce_fischer_krauss(tmp_path)
    (tmp_path / "evaluation.json").write_text("{")
    with pytest.raises(ReproductionError, match=r"evaluation\.json: cannot read \(JSONDecodeError"):
        reproduce_fischer_krauss(tmp_path)


def test_the_command_writes_the_page(run: Path, tmp_path: Path) -> None:
    assert tuple(m.value for m in cli.Paper) == PAPERS
    out = tmp_path / "docs" / "fk.md"
    args = ["reproduce", "fischer-krauss", "--results", str(run), "--out", str(out), "--n-boot", "100"]
    result = CliRunner().invoke(app, [*args, "--period", "2009-2010"])
    assert result.exit_code == 0, result.output
    assert "| kdh_rf | 2009-2010 |" in out.read_text()
    assert str(out) in result.output
    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    figures = json.loads(as_json.output)
    assert figures["periods"] == ["2001-2009", "2010-2021"] and figures["run"]["data_hash"] == DATA_HASH
    bad = CliRunner().invoke(app, [*args, "--period", "2010"])
    assert bad.exit_code == 2 and "expected FIRST-LAST" in bad.output
    missing = CliRunner().invoke(app, ["reproduce", "fischer-krauss", "--results", str(tmp_path / "no"), "--out",
                                       str(out)])  # fmt: skip
    assert missing.exit_code == 1 and "evaluation.json: missing" in missing.output
