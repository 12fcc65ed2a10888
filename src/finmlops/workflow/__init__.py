"""finmlops.workflow: ``finmlops run``, the whole platform in one command, each step skipped when its inputs are
unchanged; ``finmlops live``, the platform lived day by day (daily.py). The CLI calls it; no stage imports it."""
