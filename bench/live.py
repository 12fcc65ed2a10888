"""``finmlops live`` over two years of the 10-ticker snapshot: seconds per simulated day, split by phase.

The timed setup is ``configs/live.yaml`` (monthly retraining, every 21 trading days, on an expanding window); the
reference, lived over the same days in the same run, is ``configs/live-static.yaml`` (the same loop, never
retrained), so the ratio is what retraining and canaries cost on top of serving, feedback and drift. Both are then
summarised side by side (``finmlops.workflow.live_compare``: served accuracy, IC, Sharpe with block-bootstrap CIs,
retrains, promotions, rollbacks, wrong promotions in hindsight, refit CPU seconds), with ``--setups`` adding the
quarterly and drift-triggered ones.

    python bench/live.py [--from 2022-01-03] [--to 2023-12-29] [--home DIR] [--setups live-static,live]

Goal (issue 14): the two years in at most 10 minutes on 2 cores. A refit runs in its own process while the days
go on; the wall time of a day includes waiting for a refit only when it was not done by its collection day.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from finmlops.settings import Settings
from finmlops.workflow.daily import PHASES, run_live
from finmlops.workflow.live_compare import compare_live, comparison_frame
from finmlops.workflow.live_config import shipped_live_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", default="2022-01-03")
    parser.add_argument("--to", dest="end", default="2023-12-29")
    parser.add_argument("--home", default=None, help="Workspace (default: a temporary folder, removed after).")
    parser.add_argument("--setups", default="live-static,live", help="Shipped live configs, the reference first.")
    args = parser.parse_args()
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    names = args.setups.split(",")
    with tempfile.TemporaryDirectory(prefix="finmlops-bench-live-") as tmp:
        home = Path(args.home or tmp)
        home.mkdir(parents=True, exist_ok=True)
        settings = Settings(home=home)
        timings = {}
        for name in names:
            config = shipped_live_config(name)
            started = time.perf_counter()
            result = run_live(settings, config, start=start, end=end)
            wall = time.perf_counter() - started
            days = max(len(result.days), 1)
            timings[name] = wall
            per_phase = ", ".join(
                f"{phase} {result.phase_seconds.get(phase, 0.0) / days:.3f}" for phase in ("bootstrap", *PHASES)
            )
            print(
                f"{name}: {len(result.days)} days {start}..{end} in {wall:.1f} s = {wall / days:.3f} s/day "
                f"(s/day by phase: {per_phase})",
                flush=True,
            )
        reference = names[0]
        for name in names[1:]:
            print(f"{name} / {reference}: {timings[name] / timings[reference]:.2f}x the wall time")
        comparison = compare_live(settings, [shipped_live_config(n) for n in names])
        print(comparison_frame(comparison).to_string(index=False))
        for setup in comparison.setups:
            for h in setup.hindsight:
                print(
                    f"{setup.name}: promotion {h.day} v{h.new} over v{h.old}: accuracy over the next {h.days} days "
                    f"{h.new_accuracy:.4f} vs {h.old_accuracy:.4f} ({'wrong' if h.wrong else 'right'})"
                )
        total = sum(timings.values())
        print(f"total {total:.0f} s; goal: {names[-1]} over ~500 days <= 600 s on 2 cores")


if __name__ == "__main__":
    main()
