"""Every number `compare` prints equals an independent computation from the converted files (plain csv + numpy).

Nothing here uses recbole_embsum's metric code: per-impression AUC is counted pair by pair, popularity is counted
from <name>.train.inter, and the paired test is scipy's on differences computed here.
"""
import collections
import os
import re

import numpy as np
import pytest
from scipy import stats
from test_pop import read_inter, train_clicks

from recbole_embsum.evaluation import compare

SETTINGS = {"epochs": 2, "embedding_size": 8, "state": "ERROR", "show_progress": False}


def pairwise_auc(labels, scores):
    """AUC of one impression by counting (click, non-click) pairs; ties count 1/2. None when undefined."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    difference = positives[:, None] - negatives[None, :]
    return float(((difference > 0) + 0.5 * (difference == 0)).mean())


def auc_by_impression(impressions, labels, scores):
    groups = collections.defaultdict(lambda: ([], []))
    for impression, label, score in zip(impressions, labels, scores):
        groups[impression][0].append(label)
        groups[impression][1].append(score)
    aucs = {key: pairwise_auc(*value) for key, value in groups.items()}
    return {key: value for key, value in aucs.items() if value is not None}


@pytest.fixture(scope="module")
def comparison(mind_dataset, tmp_path_factory):
    data_path, name = mind_dataset
    output = tmp_path_factory.mktemp("comparison")
    cwd = os.getcwd()
    os.chdir(output)  # RecBole's trainers write log_tensorboard/ in the working directory
    try:
        results = compare.compare(compare.model_specs(["Pop", "BPR"]), name, data_path, str(output / "out"),
                                  overrides=SETTINGS)
    finally:
        os.chdir(cwd)
    return data_path, name, output / "out", {result.spec.label: result for result in results}


def test_pop_imp_auc_equals_popularity_counted_from_the_files(comparison):
    data_path, name, output, results = comparison
    clicks = train_clicks(data_path, name)
    test = read_inter(os.path.join(data_path, name, f"{name}.test.inter"))
    expected = auc_by_impression([r["impression_id"] for r in test], [int(float(r["label"])) for r in test],
                                 [clicks.get(r["item_id"], 0) for r in test])
    assert results["Pop"].test_result["imp_auc"] == pytest.approx(np.mean(list(expected.values())), abs=5e-5)

    # scores/Pop.npz: every test row once, scored by its item's training clicks
    scores = compare.load_scores(output / "scores" / "Pop.npz")
    assert sorted(zip(scores["impression_id"], scores["item_id"], scores["label"].tolist())) == sorted(
        (r["impression_id"], r["item_id"], int(float(r["label"]))) for r in test)
    assert scores["score"].tolist() == [float(clicks.get(item, 0)) for item in scores["item_id"]]


def test_every_imp_auc_and_the_paired_test_equal_a_recount_from_the_scores(comparison):
    _, _, output, results = comparison
    aucs = {}
    for label in ("Pop", "BPR"):
        scores = compare.load_scores(output / "scores" / f"{label}.npz")
        aucs[label] = auc_by_impression(scores["impression_id"], scores["label"], scores["score"])
        assert results[label].test_result["imp_auc"] == pytest.approx(np.mean(list(aucs[label].values())), abs=5e-5)

    best, other = sorted(aucs, key=lambda label: -np.mean(list(aucs[label].values())))
    common = sorted(set(aucs[best]) & set(aucs[other]))
    differences = np.array([aucs[other][key] - aucs[best][key] for key in common])
    markdown = (output / "results.md").read_text()
    assert f"## imp_auc against the best model ({best})" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {other} | ") and "interval" not in line
               and line.count("|") == 7)
    delta, interval, p_value, impressions, verdict = [cell.strip() for cell in row.split("|")[2:7]]
    assert float(delta) == pytest.approx(differences.mean(), abs=5e-5)
    assert int(impressions) == len(common)
    assert float(p_value) == pytest.approx(stats.wilcoxon(differences).pvalue, rel=1e-2)
    low, high = map(float, re.findall(r"[-+]\d\.\d+", interval))
    assert low <= float(delta) <= high
    assert verdict == ("significant" if stats.wilcoxon(differences).pvalue < 0.05 else "not significant")
