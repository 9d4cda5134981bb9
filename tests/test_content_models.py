"""The content baselines as RecBole models: registration, shapes, padding that changes nothing, evaluation caching,
and learning planted topic interests on synthetic MIND data (per-impression AUC clearly above popularity)."""
import csv
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (registers the models)
from recbole_embsum.evaluation import compare
from recbole_embsum.model.content import ContentRecommender

from conftest import GOODREADS_YAML, MIND_YAML, TINY_CONTENT

SMALL_MODELS_YAML = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                                 "small_models.yaml")
MODELS = ["NRMS", "NAML", "Fastformer", "CAUM", "MINS"]


def _private_copy(dataset, tmp_path):
    """The shared converted data copied (the word tokenizer is cached beside the data)."""
    shared_path, name = dataset
    data_path = str(tmp_path / "data")
    shutil.copytree(os.path.join(shared_path, name), os.path.join(data_path, name))
    return data_path, name


def _build(model, dataset, yaml, tmp_path, **overrides):
    data_path, name = _private_copy(dataset, tmp_path)
    config = Config(model=model, dataset=name, config_file_list=[yaml],
                    config_dict={"data_path": data_path, **TINY_CONTENT, "state": "ERROR",
                                 "checkpoint_dir": str(tmp_path / "ckpt"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    net = get_model(model)(config, train._dataset)
    return config, net, (train, valid, test)


@pytest.mark.parametrize("model", MODELS)
def test_model_is_registered_with_packaged_defaults_and_no_recbole_sampling(model, mind_dataset, tmp_path):
    config, net, _ = _build(model, mind_dataset, MIND_YAML, tmp_path)
    assert isinstance(net, ContentRecommender) and net.training_negatives == "impression"
    assert config["train_neg_sample_args"]["distribution"] == "none"  # the yaml's ~: RecBole samples nothing
    assert config["word_vocab_size"] == 100000 and config["title_max_words"] == 30  # ContentRecommender.yaml
    assert net.history_len == config["MAX_ITEM_LIST_LENGTH"] == 60  # the paper's 60 latest clicks, as EmbSum
    assert get_trainer(config["MODEL_TYPE"], model) is recbole_embsum.EmbSumTrainer


@pytest.mark.parametrize("model", MODELS)
def test_loss_predict_and_full_sort_shapes_and_history_padding(model, mind_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, net, (train, valid, _) = _build(model, mind_dataset, MIND_YAML, tmp_path)
    batch = next(iter(train))
    loss = net.calculate_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert net.encode_items(torch.tensor([1, 2])).grad_fn is not None

    net.eval()
    rows = next(iter(valid))[0]
    with torch.no_grad():
        scores = net.predict(rows)
        assert scores.shape == (len(rows),) and torch.isfinite(scores).all()
        cache = net._item_cache.vectors
        # the same rows with extra history padding columns score the same
        seq = rows[net.ITEM_SEQ]
        rows.interaction[net.ITEM_SEQ] = torch.cat([seq, torch.zeros_like(seq[:, :7])], dim=1)
        assert torch.allclose(net.predict(rows), scores, atol=1e-5)
        assert net._item_cache.vectors is cache  # item vectors computed once per evaluation
        full = net.full_sort_predict(rows[:3])
        assert full.shape == (3, net.n_items)
        # full-ranking and labeled scores agree
        assert torch.allclose(full[torch.arange(3), rows[net.ITEM_ID][:3]], scores[:3], atol=1e-4)
        net.train(False)  # a new pass whose item vectors are computed under bf16 autocast, then read without it
        with torch.autocast("cpu", dtype=torch.bfloat16):
            net.predict(rows)
        assert net._item_cache.vectors.dtype == torch.bfloat16
        assert net.predict(rows).dtype == torch.float32 and net.full_sort_predict(rows[:3]).shape == (3, net.n_items)
    net.train()
    assert net._item_cache.vectors is None


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_model_learns_planted_topic_interests(model, mind_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    data_path, name = _private_copy(mind_dataset, tmp_path)
    specs = [compare.RunSpec(model, model, {**TINY_CONTENT, "epochs": 5}), compare.RunSpec("Pop", "Pop", {"epochs": 1})]
    results = compare.compare(specs, name, data_path, str(tmp_path / "out"),
                              overrides={"show_progress": False, "state": "ERROR"}, seed=2020)
    assert [result.status for result in results] == ["ok", "ok"], [result.error for result in results]
    model_auc, pop_auc = (result.test_result["imp_auc"] for result in results)
    assert model_auc > max(pop_auc, 0.5) + 0.1, (model_auc, pop_auc)


@pytest.mark.parametrize("model", MODELS)
def test_model_trains_and_scores_on_goodreads(model, goodreads_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, net, (train, valid, _) = _build(model, goodreads_dataset, GOODREADS_YAML, tmp_path)
    assert config["train_neg_num"] == 2
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    trainer.optimizer.zero_grad()
    net.calculate_loss(next(iter(train))).backward()
    trainer.optimizer.step()
    result = trainer.evaluate(valid, load_best_model=False, show_progress=False)
    assert 0.0 <= result["imp_auc"] <= 1.0


def test_caum_reads_title_entities_and_their_vectors_and_runs_without_them(mind_dataset, tmp_path, monkeypatch,
                                                                           caplog):
    monkeypatch.chdir(tmp_path)
    _, without, _ = _build("CAUM", mind_dataset, MIND_YAML, tmp_path / "plain")
    assert without.entity_encoder is None

    data_path, name = _private_copy(mind_dataset, tmp_path / "entities")
    text_path = os.path.join(data_path, name, f"{name}.text.jsonl")
    records = [json.loads(line) for line in open(text_path, encoding="utf-8")]
    for i, record in enumerate(records):  # entities named after the category: planted, like the words
        record["title_entities"] = [f"Q{record['category']}", f"Q{i % 3}"]
    with open(text_path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    with open(os.path.join(data_path, name, f"{name}.entity_embedding.vec"), "w", encoding="utf-8") as handle:
        handle.write("Q1\t0.5\t-1\t2\t3\t\nQunrelated\t1\t1\t1\t1\t\n")
    config = Config(model="CAUM", dataset=name, config_file_list=[MIND_YAML],
                    config_dict={"data_path": data_path, **TINY_CONTENT, "state": "ERROR",
                                 "entity_embedding_size": 4})
    train, valid, _ = data_preparation(config, create_dataset(config))
    with caplog.at_level(logging.INFO, logger="recbole_embsum.text.features"):
        net = get_model("CAUM")(config, train._dataset)
    assert "entities: 1 of" in caplog.text
    entity_ids = net.features.entity_ids
    vectors = net.entity_encoder.embedding.weight
    assert torch.equal(vectors[entity_ids.index("Q1")], torch.tensor([0.5, -1.0, 2.0, 3.0]))
    assert net.item_title_entities.shape == (net.n_items, 5) and int(net.item_title_entities[0].sum()) == 0
    loss = net.calculate_loss(next(iter(train)))
    loss.backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0  # the entity branch is trained


@pytest.mark.slow
def test_compare_cli_runs_embsum_the_five_baselines_sasrec_and_pop(mind_dataset, tmp_path, monkeypatch, capsys):
    """The README's comparison command on synthetic data with benchmarks/small_models.yaml, one epoch each: every
    model trains and is tabulated with its negatives. That each baseline learns the planted interests (beats Pop) is
    test_model_learns_planted_topic_interests, five epochs each."""
    from recbole_embsum.cli import main

    monkeypatch.chdir(tmp_path)
    data_path, name = _private_copy(mind_dataset, tmp_path)
    models = ["EmbSum", "NAML", "NRMS", "Fastformer", "CAUM", "MINS", "SASRec", "Pop"]
    code = main(["compare", "--dataset", name, "--data-path", data_path, "--models", ",".join(models),
                 "--config-files", SMALL_MODELS_YAML, "--output", str(tmp_path / "out"), "--state=ERROR",
                 "--epochs=1"])
    table = capsys.readouterr().out
    assert code == 0, table
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert list(rows) == models and {row["status"] for row in rows.values()} == {"ok"}
    assert all(0.0 <= float(row["imp_auc"]) <= 1.0 for row in rows.values())
    for model in ["NAML", "NRMS", "Fastformer", "CAUM", "MINS"]:
        assert rows[model]["train_negatives"].startswith("impression negatives (4 per click"), model
        assert f"| {model} | ok |" in table, model


@pytest.mark.slow
def test_run_recbole_console_script_trains_a_baseline_and_reloads_its_best_checkpoint(goodreads_dataset, tmp_path):
    data_path, name = _private_copy(goodreads_dataset, tmp_path)
    sizes = [f"--{key}={value}" for key, value in TINY_CONTENT.items() if not isinstance(value, list)]
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "run_recbole"), "--model=NAML",
                          f"--dataset={name}", f"--data_path={data_path}", "--epochs=1", *sizes,
                          f"--checkpoint_dir={tmp_path}/saved"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    (checkpoint,) = (tmp_path / "saved").glob("NAML-*.pth")
    assert f"Loading model structure and parameters from {checkpoint}" in output
    assert "test result" in output and "imp_auc" in output


def test_two_tower_and_candidate_aware_models_share_one_abstract_base():
    from recbole_embsum.model.content import TwoTowerRecommender
    from recbole_embsum.registry import MODELS as REGISTERED

    classes = {name: getattr(REGISTERED[name], name) for name in MODELS}
    assert {name for name, cls in classes.items() if issubclass(cls, TwoTowerRecommender)} == {
        "NAML", "NRMS", "Fastformer", "MINS"}
    assert issubclass(classes["CAUM"], ContentRecommender) and classes["CAUM"].candidate_aware

    class NoItemEncoder(TwoTowerRecommender):
        def encode_user(self, history, mask):
            return history.mean(dim=1)

    with pytest.raises(TypeError, match="abstract .*encode_items"):
        NoItemEncoder(None, None)
