"""EmbSum trained briefly on planted-interest data ranks impressions better than popularity (per-impression AUC)."""
import pytest

from recbole_embsum.demo import EMBSUM_CONFIG
from recbole_embsum.evaluation import compare


@pytest.mark.slow
def test_briefly_trained_embsum_beats_popularity_on_planted_interests(mind_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    # The shared data: its tokenizer cache also holds the other tests' tokenizers (other vocabulary sizes), each
    # under its own key, so this test passes whichever ran first.
    data_path, name = mind_dataset
    embsum = {**EMBSUM_CONFIG, "epochs": 2, "eval_global_vector": "start", "summary_max_tokens": 16}
    specs = [compare.RunSpec("EmbSum", "EmbSum", embsum), compare.RunSpec("Pop", "Pop", {"epochs": 1})]
    results = compare.compare(specs, name, data_path, str(tmp_path / "out"),
                              overrides={"show_progress": False, "state": "ERROR"}, seed=2020)
    by_model = {result.spec.label: result for result in results}
    assert [result.status for result in results] == ["ok", "ok"], [result.error for result in results]
    embsum_auc = by_model["EmbSum"].test_result["imp_auc"]
    pop_auc = by_model["Pop"].test_result["imp_auc"]
    assert embsum_auc > pop_auc + 0.05, (embsum_auc, pop_auc)
