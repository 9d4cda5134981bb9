"""The PLM content baselines (NAMLPLM, MINER) as RecBole models, with a tiny RoBERTa built from scratch: defaults and
registration, shapes, padding that changes nothing, evaluation caching, labeled scores equal to full-ranking scores,
learning planted topic interests, the checkpoint round trip, the preflight's one line for a missing ``plm``."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from recbole.config import Config
from recbole.utils import get_trainer

import recbole_embsum  # noqa: F401  (registers the models)
from recbole_embsum import preflight
from recbole_embsum.evaluation import compare
from recbole_embsum.model.content import TwoTowerRecommender
from recbole_embsum.model.plm_content import PLMContentRecommender

from conftest import GOODREADS_YAML, MIND_YAML, assert_checkpoint_round_trip, build_model

MODELS = ["NAMLPLM", "MINER"]
# A 1-layer RoBERTa of width 32 from scratch, its byte-level BPE tokenizer trained on the item text (offline).
TINY_PLM = {
    "plm_init": "scratch",
    "plm_config": {"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "intermediate_size": 64, "max_position_embeddings": 64},
    "tokenizer_vocab_size": 400,
    "news_embedding_size": 32,
    "query_dim": 16,
    "context_codes": 4,
    "context_code_dim": 16,
    "category_embedding_size": 8,
    "dropout_prob": 0.0,  # MINER: dropout on 32-d news vectors slows learning on the small synthetic data
    "learning_rate": 0.003,
    "warmup_ratio": 0.0,
    "train_batch_size": 32,
    "grad_accum_steps": 1,
    "MAX_ITEM_LIST_LENGTH": 20,
    "show_progress": False,
}


@pytest.fixture(scope="module")
def plm_data(tmp_path_factory, mind_dataset):
    """The shared converted MIND copied once for this module (the scratch tokenizer is cached beside it)."""
    data_path = str(tmp_path_factory.mktemp("plm_data"))
    shutil.copytree(os.path.join(mind_dataset[0], "mind"), os.path.join(data_path, "mind"))
    return data_path, "mind"


def _build(model, dataset, yaml=MIND_YAML, **overrides):
    data_path, name = dataset
    return build_model(model, data_path, name, yaml, {**TINY_PLM, **overrides})


def test_models_are_registered_with_packaged_paper_defaults(mind_dataset):
    for model, two_tower in (("NAMLPLM", True), ("MINER", False)):
        config = Config(model=model, dataset="mind", config_file_list=[MIND_YAML],
                        config_dict={"data_path": mind_dataset[0]})
        assert issubclass(config.model_class, PLMContentRecommender)
        assert issubclass(config.model_class, TwoTowerRecommender) == two_tower
        assert config["plm"] == "roberta-base" and config["plm_init"] == "pretrained"  # paper Appendix B
        assert config["plm_config"]["hidden_size"] == 768 and config["learner"] == "adamw"
        assert config["train_neg_sample_args"]["distribution"] == "none"
        assert get_trainer(config["MODEL_TYPE"], model) is recbole_embsum.EmbSumTrainer
    assert (config["context_codes"], config["context_code_dim"], config["score_type"]) == (32, 200, "weighted")
    assert config["category_bias"] and config["disagreement_weight"] == 1.0


@pytest.mark.parametrize("model", MODELS)
def test_shapes_padding_caching_and_predict_equals_full_sort(model, plm_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, net, (train, valid, _) = _build(model, plm_data)
    assert net.tokenizer.cls_token == "<s>" and int(net.item_tokens[5, 0]) == net.tokenizer.cls_token_id
    batch = next(iter(train))
    loss = net.calculate_loss(batch)
    total = sum(loss) if isinstance(loss, tuple) else loss
    assert total.dim() == 0 and torch.isfinite(total)
    total.backward()
    assert net.plm.get_input_embeddings().weight.grad.abs().sum() > 0  # the PLM is fine-tuned
    if model == "MINER":
        nce, spread = (part.item() for part in loss.logged)
        assert -1.0 <= spread <= 1.0 and loss[1].item() == pytest.approx(spread)  # disagreement_weight 1

    rows = next(iter(valid))[0]
    with torch.no_grad():
        net.eval()
        scores, cache = net.predict(rows), net._item_cache.vectors
        assert scores.shape == (len(rows),) and torch.isfinite(scores).all() and cache.shape[0] == net.n_items
        torch.testing.assert_close(net.predict(rows), scores)
        assert net._item_cache.vectors is cache  # every item through the PLM once per evaluation pass
        # padded history slots are masked: any vectors there (here: other items') change no score
        history, mask = net._history(rows[:6])  # [6, L]
        clicks, candidates = cache[history], cache[rows[net.ITEM_ID][:6]][:, None]
        padded = torch.cat([clicks, cache[1:8][None].expand(6, -1, -1)], dim=1)  # 7 more slots, real vectors
        padded_mask = torch.cat([mask, torch.zeros(6, 7, dtype=torch.bool)], dim=1)
        torch.testing.assert_close(net.score_candidates(padded, padded_mask, candidates),
                                   net.score_candidates(clicks, mask, candidates))
        torch.testing.assert_close(net.score_candidates(clicks, mask, candidates)[:, 0], scores[:6])
        full = net.full_sort_predict(rows[:4])
        assert full.shape == (4, net.n_items)
        torch.testing.assert_close(full[torch.arange(4), rows[net.ITEM_ID][:4]], scores[:4], rtol=1e-4, atol=1e-5)
        # a history scored alone scores the same as inside its batch (no candidate or other user leaks in)
        torch.testing.assert_close(net.predict(rows[5:6]), scores[5:6], rtol=1e-5, atol=1e-5)
    net.train()
    assert net._item_cache.vectors is None


@pytest.mark.parametrize("model", MODELS)
def test_checkpoint_round_trip_gives_the_same_scores(model, plm_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, net, (train, valid, _) = _build(model, plm_data)
    assert_checkpoint_round_trip(config, net, train, valid, tmp_path / f"{model}.pth")


@pytest.mark.slow  # trains each model for several epochs: ~50 s each on a loaded 2-core CPU
@pytest.mark.parametrize("model", MODELS)
def test_model_learns_planted_topic_interests(model, plm_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    specs = [compare.RunSpec(model, model, {**TINY_PLM, "epochs": 3}), compare.RunSpec("Pop", "Pop", {"epochs": 1})]
    results = compare.compare(specs, plm_data[1], plm_data[0], str(tmp_path / "out"),
                              overrides={"show_progress": False, "state": "ERROR", "MAX_ITEM_LIST_LENGTH": 20},
                              seed=2020)
    assert [result.status for result in results] == ["ok", "ok"], [result.error for result in results]
    model_auc, pop_auc = (result.test_result["imp_auc"] for result in results)
    print(f"{model}: imp_auc {model_auc:.4f}, Pop {pop_auc:.4f}")
    assert model_auc > max(pop_auc, 0.5) + 0.1, (model_auc, pop_auc)


def test_a_plm_that_is_neither_local_nor_cached_stops_the_run_in_one_line(plm_data, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = Config(model="MINER", dataset="mind", config_file_list=[MIND_YAML],
                    config_dict={"data_path": plm_data[0], "plm": "no-such-org/no-such-roberta"})
    with pytest.raises(preflight.PreflightError, match=r"^plm 'no-such-org/no-such-roberta' is not in the Hugging "
                                                       r"Face cache .* or plm_init=scratch") as error:
        preflight.check_run(config)
    assert "\n" not in str(error.value)


def test_miner_without_category_bias_scores_every_candidate_with_the_same_interests(plm_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, net, (_, valid, _) = _build("MINER", plm_data, category_bias=False, score_type="max")
    assert net.category_embedding is None and net.target_attention is None
    net.eval()
    rows = next(iter(valid))[0]
    with torch.no_grad():
        items = net.all_item_vectors()
        assert items.shape == (net.n_items, 32)  # news vectors only
        history, mask = net._history(rows[:1])
        clicks = items[history]
        interests = net.interests(net.history_logits(clicks), clicks, mask, items[None, :3])
        assert interests.shape == (1, 1, 4, 32)  # one set of K interests for all candidates
        expected = (interests[0, 0] @ items[:3].T).max(dim=0).values  # max over the K matching scores
        torch.testing.assert_close(net.score_candidates(clicks, mask, items[None, :3])[0], expected)


@pytest.mark.slow
def test_run_recbole_trains_namlplm_on_goodreads_and_reloads_its_best_checkpoint(goodreads_dataset, tmp_path):
    data_path = str(tmp_path / "data")
    shutil.copytree(os.path.join(goodreads_dataset[0], "goodreads"), os.path.join(data_path, "goodreads"))
    sizes = [f"--{key}={value}" for key, value in TINY_PLM.items()]
    run = subprocess.run([sys.executable, "-m", "recbole_embsum", "--model=NAMLPLM",
                          "--dataset=goodreads", f"--data_path={data_path}", "--epochs=1", *sizes,
                          f"--checkpoint_dir={tmp_path}/saved"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    (saved,) = (tmp_path / "saved").glob("NAMLPLM-*.pth")
    assert f"Loading model structure and parameters from {saved}" in output
    assert "test result" in output and "imp_auc" in output


def test_a_local_checkpoint_loads_and_a_tokenizer_without_padding_is_refused_in_one_line(plm_data, tmp_path):
    from recbole_embsum.text.backbone import load_plm

    plm, tokenizer = load_plm({**TINY_PLM, "plm": "roberta-base", "data_path": os.path.join(plm_data[0], "mind"),
                               "dataset": "mind", "gradient_checkpointing": False},
                              lambda: iter(["storms hit the coast", "markets rally"] * 20))
    plm.save_pretrained(tmp_path / "my-roberta")
    tokenizer.save_pretrained(tmp_path / "my-roberta")
    _, net, _ = _build("NAMLPLM", plm_data, plm_init="pretrained", plm=str(tmp_path / "my-roberta"))
    assert net.tokenizer.get_vocab() == tokenizer.get_vocab()
    torch.testing.assert_close(net.plm.get_input_embeddings().weight, plm.get_input_embeddings().weight)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path / "no-padding")
    plm.save_pretrained(tmp_path / "no-padding")
    with pytest.raises(ValueError, match=r"NAMLPLM: the tokenizer of plm='.*no-padding' has no pad_token; use an "):
        _build("NAMLPLM", plm_data, plm_init="pretrained", plm=str(tmp_path / "no-padding"))
