"""Synthetic windows for training tests: tiny, fast, and with labels the features determine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch


@dataclass
class SynthWindows:
    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    tickers: np.ndarray


def linear_windows(n: int, seq_len: int, n_features: int, seed: int) -> SynthWindows:
    """y = 1 iff a fixed linear mix of the last day's features is positive (the mix is the same for every seed)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, seq_len, n_features)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, n_features) + 0.3
    y = (x[:, -1, :] @ w > 0).astype(np.float32)
    dates = pd.bdate_range("2015-01-01", periods=n).to_numpy()
    return SynthWindows(x, y, dates, np.array(["AAA"] * n))


@pytest.fixture
def linear() -> Callable[[int, int, int, int], SynthWindows]:
    return linear_windows


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
