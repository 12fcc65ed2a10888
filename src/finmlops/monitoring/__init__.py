"""finmlops.monitoring: feature and prediction drift (``drift``: PSI, KS, normalised Wasserstein, the online
``SlidingDrift`` the server updates per request), the A/B analysis of serving experiments (``abtest``: per-arm
accuracy and latency, an always-valid mSPRT, the promote/rollback/continue decision) and explanations (``explain``).

Submodules are imported directly (``from finmlops.monitoring.drift import SlidingDrift``) so the server loads only
what it needs. See docs/monitoring.md.
"""
