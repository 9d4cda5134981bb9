"""How sure a comparison is: two models scored on the same impressions, compared impression by impression.

For each impression both models score, take the difference of their per-impression AUCs (MIND's AUC, as
``imp_auc``). Reported:

* the mean difference (equal to the difference of the two ``imp_auc`` values over those impressions);
* its 95% confidence interval by the paired bootstrap: impressions resampled with replacement, the mean difference
  recomputed (``scipy.stats.bootstrap``, percentile method, 10,000 resamples, seeded);
* the two-sided Wilcoxon signed-rank test of the per-impression differences (``scipy.stats.wilcoxon``; impressions
  with a zero difference are left out, as Wilcoxon's original procedure does). "Significant" means p < 0.05.

Per-impression AUC comes from the same ranking code as the ``imp_auc`` metric (``metrics.ImpressionRanking``), so the
two always agree; impressions where AUC is undefined (no click or no non-click) take no part.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from recbole_embsum.evaluation.metrics import ImpressionRanking

ALPHA = 0.05
CONFIDENCE = 0.95
N_RESAMPLES = 10000
_BOOTSTRAP_CELLS = 20_000_000  # resamples x impressions drawn at once (memory of one bootstrap batch)


def per_impression_auc(impression_ids, labels, scores):
    """``{impression id: AUC}`` for every impression with a click and a non-click.

    Args:
        impression_ids: [N] impression id of each row (any hashable values, e.g. the raw string ids).
        labels: [N] 0/1 clicks. scores: [N] model scores.
    """
    uniques, codes = np.unique(np.asarray(impression_ids), return_inverse=True)
    ranking = ImpressionRanking(torch.as_tensor(np.asarray(scores, dtype=np.float64)),
                                torch.as_tensor(np.asarray(labels, dtype=np.float64)),
                                torch.as_tensor(codes.astype(np.int64)))
    values, defined = ranking.auc()  # [G] in ascending code order, i.e. the order of `uniques`
    return {impression: float(value) for impression, value, ok in zip(uniques, values.tolist(), defined.tolist())
            if ok}


@dataclass
class PairedComparison:
    """``a - b`` in mean per-impression AUC over the impressions both define."""

    impressions: int
    difference: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self):
        return self.p_value < ALPHA


def paired_comparison(auc_a, auc_b, seed=0):
    """Compare two ``per_impression_auc`` results (``a - b``) over their common impressions."""
    from scipy import stats

    common = sorted(set(auc_a) & set(auc_b))
    differences = np.array([auc_a[key] - auc_b[key] for key in common], dtype=np.float64)  # [n]
    if len(differences) < 2:
        nan = math.nan
        return PairedComparison(len(differences), float(differences.mean()) if len(differences) else nan, nan, nan,
                                nan)
    if not differences.any():  # identical on every impression: nothing to resample, no rank to test
        return PairedComparison(len(differences), 0.0, 0.0, 0.0, 1.0)
    interval = stats.bootstrap(
        (differences,), np.mean, n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
        vectorized=True, batch=max(1, _BOOTSTRAP_CELLS // len(differences)), rng=np.random.default_rng(seed),
    ).confidence_interval
    p_value = float(stats.wilcoxon(differences).pvalue)
    return PairedComparison(len(differences), float(differences.mean()), float(interval.low),
                            float(interval.high), p_value)
