"""finmlops: honest MLOps for next-day stock direction."""

__version__ = "0.1.0"
