"""MIND per-impression metrics: hand-computed cases, ties, exclusions, and agreement with reference scorers."""
import logging
import math

import numpy as np
import pytest
import torch
from recbole.evaluator import register as recbole_register
from recbole.evaluator.collector import DataStruct
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.functional.retrieval import retrieval_normalized_dcg

from recbole_embsum.evaluation.metrics import (
    IMPRESSION_KEY,
    IMPRESSION_METRICS,
    ImpressionRanking,
    register_metrics,
)

D3 = 1 / math.log2(3)  # discount of rank 2
D5 = 1 / math.log2(5)  # discount of rank 4

# (impression id, score, label) rows.
HAND_ROWS = (
    # Impression 10: ranked 0.9(-) 0.8(+) 0.3(-) 0.1(+); clicks at ranks 2 and 4.
    [(10, 0.9, 0), (10, 0.8, 1), (10, 0.3, 0), (10, 0.1, 1)]
    # Impression 20: a single clicked candidate (no AUC: no negative).
    + [(20, 0.4, 1)]
    # Impression 30: no click, excluded from every metric.
    + [(30, 0.5, 0), (30, 0.2, 0)]
    # Impression 40: the click ties with a non-click for ranks 1-2.
    + [(40, 0.7, 1), (40, 0.7, 0), (40, 0.2, 0)]
    # Impression 50: 12 candidates, the click ranked 7th.
    + [(50, 1.0 - i / 20, int(i == 6)) for i in range(12)]
)
HAND_AUC = {10: 1 / 4, 40: (0.5 + 1) / 2, 50: 5 / 11}
HAND_MRR = {10: (1 / 2 + 1 / 4) / 2, 20: 1.0, 40: (1 + 1 / 2) / 2, 50: 1 / 7}
HAND_NDCG5 = {10: (D3 + D5) / (1 + D3), 20: 1.0, 40: (1 + D3) / 2, 50: 0.0}
HAND_NDCG10 = {**HAND_NDCG5, 50: 1 / math.log2(8)}


def rows_to_struct(rows, order=None):
    imp, score, label = (torch.tensor(column) for column in zip(*rows))
    if order is not None:
        imp, score, label = imp[order], score[order], label[order]
    data = DataStruct()
    data.set("rec.score", score.float())
    data.set("data.label", label.float())
    data.set(IMPRESSION_KEY, imp.long())
    return data


def evaluate(data, decimal_place=10):
    result = {}
    for cls in IMPRESSION_METRICS.values():
        result.update(cls({"metric_decimal_place": decimal_place}).calculate_metric(data))
    return result


def test_hand_computed_values():
    result = evaluate(rows_to_struct(HAND_ROWS))
    assert result["imp_auc"] == pytest.approx(np.mean(list(HAND_AUC.values())))
    assert result["imp_mrr"] == pytest.approx(np.mean(list(HAND_MRR.values())))
    assert result["imp_ndcg@5"] == pytest.approx(np.mean(list(HAND_NDCG5.values())))
    assert result["imp_ndcg@10"] == pytest.approx(np.mean(list(HAND_NDCG10.values())))


def test_per_impression_values_and_exclusions():
    data = rows_to_struct(HAND_ROWS)
    ranking = ImpressionRanking(data["rec.score"], data["data.label"], data[IMPRESSION_KEY])
    assert ranking.num_impressions == 5  # impressions 10, 20, 30, 40, 50 in sorted order
    assert (ranking.without_click, ranking.without_nonclick) == (1, 1)
    auc, auc_defined = ranking.auc()
    assert auc_defined.tolist() == [True, False, False, True, True]
    assert auc[auc_defined].tolist() == pytest.approx([HAND_AUC[10], HAND_AUC[40], HAND_AUC[50]])
    mrr, mrr_defined = ranking.mrr()
    assert mrr_defined.tolist() == [True, True, False, True, True]
    assert mrr[mrr_defined].tolist() == pytest.approx([HAND_MRR[i] for i in (10, 20, 40, 50)])
    ndcg, _ = ranking.ndcg(10)
    assert ndcg[mrr_defined].tolist() == pytest.approx([HAND_NDCG10[i] for i in (10, 20, 40, 50)])


def test_row_order_does_not_matter():
    shuffled = torch.randperm(len(HAND_ROWS), generator=torch.Generator().manual_seed(0))
    assert evaluate(rows_to_struct(HAND_ROWS, shuffled)) == pytest.approx(evaluate(rows_to_struct(HAND_ROWS)))


def test_exclusions_are_logged(caplog):
    with caplog.at_level(logging.INFO, logger="recbole_embsum.evaluation.metrics"):
        evaluate(rows_to_struct(HAND_ROWS))
    assert "5 impressions (22 rows): 1 without a click" in caplog.text
    assert "1 without a non-clicked candidate are excluded from imp_auc" in caplog.text


def test_all_impressions_undefined_gives_nan_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        result = evaluate(rows_to_struct([(1, 0.3, 0), (1, 0.1, 0), (2, 0.5, 1)]))
    assert math.isnan(result["imp_auc"])
    assert result["imp_mrr"] == 1.0  # impression 1 (no click) excluded; impression 2's click is ranked first
    assert "imp_auc is undefined" in caplog.text


def test_non_binary_labels_are_rejected():
    with pytest.raises(ValueError, match="0/1 click labels, found e.g. \\[2.0\\]"):
        evaluate(rows_to_struct([(1, 0.3, 2), (1, 0.1, 0)]))


def test_missing_impression_ids_name_the_collector():
    data = rows_to_struct(HAND_ROWS)
    del data[IMPRESSION_KEY]
    with pytest.raises(KeyError, match="ImpressionCollector"):
        evaluate(data)


# --- agreement with straightforward per-impression reference implementations ----------------------------------------
def mind_official_mrr(y_true, y_score):
    """MIND's evaluate.py mrr_score."""
    order = np.argsort(y_score)[::-1]
    y_true = np.take(y_true, order)
    return np.sum(y_true / (np.arange(len(y_true)) + 1)) / np.sum(y_true)


def mind_official_ndcg(y_true, y_score, k):
    """MIND's evaluate.py ndcg_score."""

    def dcg(y, s):
        order = np.argsort(s)[::-1]
        gains = 2 ** np.take(y, order[:k]) - 1
        return np.sum(gains / np.log2(np.arange(len(gains)) + 2))

    return dcg(y_true, y_score) / dcg(y_true, y_true)


def tie_averaged_mrr(y_true, y_score):
    """Expected MRR over random orders of tied scores: a click tied over ranks a..b gets mean(1/r, r=a..b)."""
    total = 0.0
    for score in y_score[y_true == 1]:
        first, last = np.sum(y_score > score) + 1, np.sum(y_score >= score)
        total += np.mean(1 / np.arange(first, last + 1))
    return total / y_true.sum()


def random_impressions(seed, tied):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, size=200)
    imp = np.repeat(rng.permutation(10_000)[: len(sizes)], sizes)
    score = rng.random(len(imp))
    if tied:
        score = np.round(score, 1)
    label = (rng.random(len(imp)) < 0.2).astype(np.float32)
    order = rng.permutation(len(imp))
    return imp[order], score[order].astype(np.float32), label[order]


def reference_means(imp, score, label, mrr_fn, ndcg_fn):
    values = {name: [] for name in IMPRESSION_METRICS}
    for i in np.unique(imp):
        y, s = label[imp == i], score[imp == i]
        if y.sum() == 0:
            continue
        if y.sum() < len(y):
            values["imp_auc"].append(roc_auc_score(y, s))
            tm_auc = binary_auroc(torch.from_numpy(s), torch.from_numpy(y).long()).item()
            assert tm_auc == pytest.approx(values["imp_auc"][-1], abs=1e-6)
        values["imp_mrr"].append(mrr_fn(y, s))
        for k in (5, 10):
            values[f"imp_ndcg@{k}"].append(ndcg_fn(y, s, k))
    return {name: float(np.mean(v)) for name, v in values.items()}


def torchmetrics_ndcg(y, s, k):
    return retrieval_normalized_dcg(torch.from_numpy(s), torch.from_numpy(y).long(), top_k=k).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_mind_official_scorer_without_ties(seed):
    imp, score, label = random_impressions(seed, tied=False)
    data = rows_to_struct(list(zip(imp.tolist(), score.tolist(), label.tolist())))
    expected = reference_means(imp, score, label, mind_official_mrr, mind_official_ndcg)
    assert evaluate(data) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_ties_match_sklearn_auc_and_torchmetrics_ndcg(seed):
    imp, score, label = random_impressions(seed, tied=True)
    data = rows_to_struct(list(zip(imp.tolist(), score.tolist(), label.tolist())))
    expected = reference_means(imp, score, label, tie_averaged_mrr, torchmetrics_ndcg)
    assert evaluate(data) == pytest.approx(expected, abs=1e-6)


def test_register_metrics_is_idempotent_and_complete():
    register_metrics()
    register_metrics()
    for name in ("imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"):
        assert recbole_register.metrics_dict[name] is IMPRESSION_METRICS[name]
        assert recbole_register.metric_information[name] == ["rec.score", "data.label", IMPRESSION_KEY]
        assert recbole_register.metric_types[name] == recbole_register.metric_types["auc"]  # VALUE, like AUC
        assert name not in recbole_register.smaller_metrics
