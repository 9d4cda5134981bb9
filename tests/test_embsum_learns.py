"""EmbSum trained briefly on planted-interest data ranks impressions better than popularity (per-impression AUC)."""
import pytest

from recbole_embsum.evaluation import compare

# A small EmbSum that trains in seconds per epoch on the shared synthetic data: a 2-layer T5 from scratch (d = 32) with
# a 400-token tokenizer, short item texts, a step per batch of 32, lambda raised from 0.05 so the decoder trains too.
SMALL_EMBSUM = {
    "plm_init": "scratch",
    "plm_config": {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 1, "num_heads": 4, "d_kv": 8},
    "tokenizer_vocab_size": 400,
    "upe_codes": 8,
    "cpe_codes": 2,
    "title_max_tokens": 12,
    "abstract_max_tokens": 12,
    "learning_rate": 0.002,
    "train_batch_size": 32,
    "grad_accum_steps": 1,
    "summary_weight": 0.5,
    "MAX_ITEM_LIST_LENGTH": 12,  # the latest 12 clicks (3 sessions) carry the planted interests; 60 is 5x the work
}


@pytest.mark.slow
def test_briefly_trained_embsum_beats_popularity_on_planted_interests(mind_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    # The shared data: its tokenizer cache also holds the other tests' tokenizers (other vocabulary sizes), each
    # under its own key, so this test passes whichever ran first.
    data_path, name = mind_dataset
    embsum = {**SMALL_EMBSUM, "epochs": 2, "eval_global_vector": "start", "summary_max_tokens": 16}
    specs = [compare.RunSpec("EmbSum", "EmbSum", embsum), compare.RunSpec("Pop", "Pop", {"epochs": 1})]
    results = compare.compare(specs, name, data_path, str(tmp_path / "out"),
                              overrides={"show_progress": False, "state": "ERROR"}, seed=2020)
    by_model = {result.spec.label: result for result in results}
    assert [result.status for result in results] == ["ok", "ok"], [result.error for result in results]
    embsum_auc = by_model["EmbSum"].test_result["imp_auc"]
    pop_auc = by_model["Pop"].test_result["imp_auc"]
    assert embsum_auc > pop_auc + 0.05, (embsum_auc, pop_auc)
