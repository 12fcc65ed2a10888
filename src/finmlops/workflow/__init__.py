"""finmlops.workflow: ``finmlops run``, the whole platform in one command, each step skipped when its inputs are
unchanged. The CLI calls it; no stage imports it."""
