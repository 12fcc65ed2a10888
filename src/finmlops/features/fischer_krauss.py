"""``fk240``: Fischer & Krauss's (2018) input, the sequence of the last 240 one-day returns.

The set has one column, ``R1 = c / c[-1] - 1`` (the ``kdh`` set's first feature, dividend-adjusted close), and
the 240-day sequence is the window: a model reading ``fk240`` uses ``seq_len = 240`` (the ``fk_lstm`` preset), so
each sample is ``[240, 1]``, the returns of t-239..t.

Standardisation with training statistics only, as in the paper ("subtract the mean and divide by the standard
deviation of the training set"): nothing is scaled here. ``DeepModel.fit`` fits ``FeatureScaler`` on the fold's
training windows, i.e. one mean and one standard deviation (ddof 0) over every ``(window, step)`` value of
``train.X`` ``[n, 240, 1]``, and applies them unchanged to the validation and test windows. A return inside
several training windows counts once per window, so returns near either end of a ticker's training block weigh a
little less than in the paper's plain mean over days; validation and test returns never enter the statistics
(tests/features/test_fischer_krauss.py perturbs the test block and checks they do not move).
"""

from __future__ import annotations

from finmlops.features import alpha158  # noqa: F401  # declares R1 (kdh), which fk240 reuses
from finmlops.features.registry import include

FK240 = ("fk240",)
FK240_SEQ_LEN = 240

include("R1", FK240)
