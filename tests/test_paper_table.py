"""`compare --paper-table`: the paper's numbers as transcribed, the plan of runs, the run store that makes a re-run
resume, and the whole table on synthetic MIND with the cpu-small preset."""
import logging
import math
import os
import re

import numpy as np
import pytest
from conftest import _convert_mind

from recbole_embsum.cli import main
from recbole_embsum.evaluation import compare, paper_table
from recbole_embsum.evaluation.run_store import RunStore

TABLE1_MODELS = ["NAML", "NRMS", "Fastformer", "CAUM", "MINS", "NAMLPLM", "UNBERT", "MINER", "UniTRec", "EmbSum"]
# Test-only sizes on top of the cpu-small preset: one epoch of tiny models, 8 history items (seconds per model);
# backbone sizes per family, as the preset gives them.
TINY_BACKBONES = {
    "t5": {"d_model": 16, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 8},
    "roberta": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
    "bert": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
    "bart": {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32},
}
TINY = {
    "epochs": 1, "state": "ERROR", "show_progress": False, "MAX_ITEM_LIST_LENGTH": 8, "tokenizer_vocab_size": 300,
    "plm_config": TINY_BACKBONES,
    "upe_codes": 4, "cpe_codes": 2, "title_max_tokens": 8, "abstract_max_tokens": 8,
    "summary_max_tokens": 16, "word_embedding_size": 16, "attention_heads": 2, "attention_head_size": 8,
    "query_dim": 8, "hidden_size": 16, "cnn_filters": 16, "category_embedding_size": 8, "news_embedding_size": 16,
    "user_attention_heads": 2, "user_attention_hidden": [16, 8], "entity_attention_heads": 2,
    "entity_attention_head_size": 4, "gru_channels": 2,
}


def test_the_paper_numbers_are_transcribed_with_both_tables_and_datasets():
    table = paper_table.load_table()
    assert list(table["metrics"]) == ["AUC", "MRR", "nDCG@5", "nDCG@10"]
    assert list(table["metrics"].values()) == ["imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"]
    for which in ("mind", "goodreads"):
        assert list(table["table1"][which]) == TABLE1_MODELS
        assert list(table["table2"][which]) == [label for label, _ in compare.ABLATIONS]
        assert all(len(row) == 4 for part in ("table1", "table2") for row in table[part][which].values())
        assert table["table2"][which]["EmbSum"] == table["table1"][which]["EmbSum"]  # Table 2's "Ours" row
    # Spot checks against the paper: UNBERT is the previous best AUC; EmbSum beats it by 0.22 / 0.24 (Section 4).
    assert table["table1"]["mind"]["UNBERT"] == [71.73, 38.06, 36.67, 42.92]
    assert table["table1"]["goodreads"]["CAUM"] == [55.13, 73.06, 54.97, 69.02]
    assert table["table2"]["mind"]["EmbSum wo CPE"] == [68.17, 36.49, 33.72, 40.20]
    for which, gain in (("mind", 0.22), ("goodreads", 0.24)):
        assert table["table1"][which]["EmbSum"][0] - table["table1"][which]["UNBERT"][0] == pytest.approx(gain)
    for preset in ("paper", "cpu-small"):
        assert sorted(table["presets"][preset]["models"]) == sorted(TABLE1_MODELS)


def test_plan_runs_every_registered_model_and_the_four_ablations():
    table = paper_table.load_table()
    table["table1"]["mind"]["NoSuchModel"] = [1.0, 2.0, 3.0, 4.0]
    specs, unavailable = paper_table.plan(table, "paper")
    assert "NoSuchModel" in unavailable and "NoSuchModel" not in [spec.label for spec in specs]
    labels = [spec.label for spec in specs]
    assert labels[-4:] == ["EmbSum wo CPE", "EmbSum wo grouping", "EmbSum wo UPE", "EmbSum wo L_sum"]
    assert labels.count("EmbSum") == 1  # Table 2's "Ours" is Table 1's EmbSum run
    by_label = {spec.label: spec for spec in specs}
    assert by_label["EmbSum"].defaults == {"embsum_preset": "paper"}
    assert by_label["EmbSum wo UPE"].config == {"upe_codes": 1}
    assert by_label["EmbSum wo UPE"].defaults == {"embsum_preset": "paper"}
    assert by_label["NAML"].defaults == {}  # the baselines' packaged (reference) settings
    assert all(spec.defaults["embsum_preset"] == "cpu-small" for spec in paper_table.plan(table, "cpu-small")[0])
    assert table["presets"]["cpu-small"]["models"]["MINER"] == {"warmup_ratio": 0.0, "learning_rate": 0.003}
    with pytest.raises(ValueError, match="no paper-table settings named 'gpu-huge'; choose one of paper, cpu-small"):
        paper_table.plan(table, "gpu-huge")


def test_which_paper_dataset():
    assert paper_table.paper_dataset("mind") == "mind"
    assert paper_table.paper_dataset("MIND-small") == "mind"
    assert paper_table.paper_dataset("goodreads_2019") == "goodreads"
    assert paper_table.paper_dataset("books", "goodreads") == "goodreads"
    with pytest.raises(ValueError, match="pass --paper-dataset mind or --paper-dataset goodreads"):
        paper_table.paper_dataset("books")


def test_a_model_missing_from_this_version_is_a_row_with_the_paper_numbers_only():
    table = paper_table.load_table()
    text = paper_table.tables_markdown([], table, "goodreads", ["UNBERT"])
    row = next(line for line in text.splitlines() if line.startswith("| UNBERT |"))
    assert row == "| UNBERT |  | 61.40 |  | 73.34 |  | 54.67 |  | 68.71 | not in this version |"
    assert text.rstrip().endswith(f"UNBERT: {paper_table.UNAVAILABLE}; their rows show the paper's numbers only.")
    assert "| NAML |  | 59.35 |" in text and "not run |" in text


def _result(label="NAML", seed=3):
    scores = {"impression_id": np.array(["a", "a", "b"]), "item_id": np.array(["N1", "N2", "N1"]),
              "label": np.array([1, 0, 1], dtype=np.int8), "score": np.array([0.5, 0.25, 1.0])}
    return compare.RunResult(compare.RunSpec(label, "NAML", {"x": 1}, {"embsum_preset": "cpu-small"}), seed=seed,
                             test_result={"imp_auc": 0.75, "logloss": None}, best_valid_score=0.5, parameters=10,
                             trainable_parameters=9, train_seconds=1.5, test_seconds=math.nan, negatives="n",
                             scores=scores)


def test_the_run_store_gives_back_a_run_only_for_the_same_settings(tmp_path, caplog):
    store = RunStore(str(tmp_path))
    settings = {"config": {"learning_rate": 0.001, "epochs": 2}, "data_files": {"train": [10, 5]}}
    result = _result()
    assert not store.exists() and store.load(result.spec, 3, settings) is None
    store.save(result, settings)
    assert store.exists()
    again = store.load(result.spec, 3, settings)
    assert again.spec == result.spec and again.seed == 3 and again.test_result == result.test_result
    assert (again.parameters, again.train_seconds, again.negatives) == (10, 1.5, "n") and math.isnan(again.test_seconds)
    assert all(np.array_equal(again.scores[name], result.scores[name]) for name in result.scores)
    assert store.load(result.spec, 4, settings) is None  # another seed
    changed = {**settings, "config": {"learning_rate": 0.01, "epochs": 2}}
    with caplog.at_level(logging.WARNING):
        assert store.load(result.spec, 3, changed) is None
    assert "NAML, seed 3: the stored result" in caplog.text
    assert "other settings (learning_rate (0.001 -> 0.01)); training again" in caplog.text
    failed = _result("CAUM")
    failed.status = "failed"
    store.save(failed, settings)  # failed runs are not kept: they run again
    assert not os.path.exists(os.path.join(store.folder, "CAUM"))
    files = sorted(os.listdir(os.path.join(store.folder, "NAML")))
    assert [os.path.splitext(name)[1] for name in files] == [".json", ".npz"]  # no temporary files left


@pytest.fixture(scope="module")
def small_mind(tmp_path_factory):
    """Synthetic MIND with 60 users and 80 news, converted (the shared fixture's 200 users make this test 3x slower)."""
    from dataset_converters.synth import synth_mind

    raw = tmp_path_factory.mktemp("paper_table_raw")
    synth_mind(raw, users=60, items=80, seed=0)
    return _convert_mind(tmp_path_factory, raw)


def _tables(text, number):
    """``{model: [cells]}`` of Table ``number`` in paper_tables.md."""
    section = text.split(f"## Table {number}:")[1].split("\n\n")[1]
    return {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in section.splitlines()[2:]}


@pytest.mark.slow
def test_paper_table_cpu_small_writes_both_tables_and_a_rerun_trains_nothing(small_mind, tmp_path, monkeypatch,
                                                                              capsys, caplog):
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    data_path, dataset = small_mind
    output = tmp_path / "out"
    argv = ["compare", "--paper-table", "--preset", "cpu-small", "--dataset", dataset, "--data-path", data_path,
            "--output", str(output)] + [f"--{key}={value!r}" for key, value in TINY.items()]
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    printed = capsys.readouterr()
    text = (output / paper_table.OUTPUT_FILE).read_text()
    assert printed.out.strip() == text.strip()
    assert text.startswith("# The paper's Tables 1 and 2: dataset mind (MIND-small in the paper), preset cpu-small")
    table1, table2 = _tables(text, 1), _tables(text, 2)
    names = {"NAMLPLM": "NAML-PLM", "EmbSum": "EmbSum (ours)"}
    assert list(table1) == [names.get(model, model) for model in TABLE1_MODELS]
    assert list(table2) == ["EmbSum (ours)", "wo CPE", "wo grouping", "wo UPE", "wo L_sum"]
    paper = paper_table.load_table()
    trained = [model for model in TABLE1_MODELS if paper_table.available(model)]
    assert trained == TABLE1_MODELS  # all ten are registered
    for model in TABLE1_MODELS:
        cells = table1[names.get(model, model)]
        assert [float(cells[i]) for i in (1, 3, 5, 7)] == paper["table1"]["mind"][model]  # the paper's beside ours
        assert cells[-1] == "ok |" and all(0 <= float(cells[i]) <= 100 for i in (0, 2, 4, 6))
    assert table2["EmbSum (ours)"] == table1["EmbSum (ours)"]
    assert [float(table2["wo CPE"][i]) for i in (1, 3, 5, 7)] == [68.17, 36.49, 33.72, 40.20]
    assert "### Table 1: imp_auc against the best model" in text and "### Table 2: imp_auc against" in text
    for name in ("results.csv", "results.md", "results.png"):
        assert (output / name).is_file()
    assert sum(bool(re.search(r"epoch 0 training", record.getMessage())) for record in caplog.records) \
        == len(trained) + 4

    # The same command again, after NAML's finished result is lost as if the run had been killed after its last
    # epoch: every other run is read back, NAML resumes from its checkpoint (no epoch left to train), none trains,
    # and the tables come out the same.
    stored = {path: path.stat().st_mtime_ns for path in (output / "runs").rglob("*.json")}
    assert len(stored) == len(trained) + 4
    lost = next((output / "runs" / "NAML").glob("*.json"))
    lost.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    capsys.readouterr()
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if re.search(r"epoch \d+ training", message)]
    assert sum("not trained again" in message for message in messages) == len(trained) + 3
    assert sum(message.startswith("NAML, seed 2020: resuming the unfinished run from") for message in messages) == 1
    assert {path: path.stat().st_mtime_ns for path in (output / "runs").rglob("*.json") if path != lost} == \
        {path: mtime for path, mtime in stored.items() if path != lost}
    assert lost.is_file()
    assert (output / paper_table.OUTPUT_FILE).read_text() == text
