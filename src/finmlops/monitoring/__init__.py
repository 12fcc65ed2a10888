"""finmlops.monitoring: feature and prediction drift reports (``drift``: PSI, KS and normalised Wasserstein per
column; the statistics and the server's online ``SlidingDrift`` are ``finmlops.stats.drift``), the A/B analysis of
serving experiments (``abtest``: per-arm accuracy and latency, an always-valid day-unit mSPRT, the
promote/rollback/continue decision) and explanations (``explain``).

Submodules are imported directly (``from finmlops.monitoring.abtest import run_abtest``) so that a command loads only
what it needs. See docs/monitoring.md.
"""
