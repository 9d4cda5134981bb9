"""`recbole-embsum compare`: same splits for every model, failures reported, files written atomically."""
import csv

import pytest
from test_metrics_recbole import COLUMNS, tiny_impressions  # noqa: F401  (the tiny converted dataset fixture)

from recbole_embsum.cli import main
from recbole_embsum.evaluation import compare
from recbole_embsum.evaluation.cli import parse_overrides

METRICS = ["AUC", "LogLoss", "imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"]
# What properties/dataset/<name>.yaml gives a real dataset; the tiny one gets it as --key=value overrides.
DATASET_SETTINGS = {
    "benchmark_filename": ["train", "valid", "test"],
    "alias_of_item_id": ["item_id_list", "neg_items"],
    "load_col": {"inter": [c.split(":")[0] for c in COLUMNS]},
    "eval_args": {"order": "TO", "mode": "labeled"},
    "metrics": METRICS,
    "valid_metric": "imp_auc",
    "epochs": 2,
    "embedding_size": 8,
    "state": "ERROR",
    "show_progress": False,
}


def test_pop_bpr_and_a_failing_model(tiny_impressions, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    output = tmp_path / "out"
    specs = compare.model_specs(["Pop", "BPR", "NoSuchModel"])
    results = compare.compare(specs, "tiny", str(tiny_impressions), str(output), overrides=DATASET_SETTINGS, seed=7)

    assert [(r.spec.label, r.status) for r in results] == [("Pop", "ok"), ("BPR", "ok"), ("NoSuchModel", "failed")]
    assert "Unknown model 'NoSuchModel'" in results[2].error
    pop, bpr = results[0], results[1]
    assert list(pop.test_result) == [m.lower() for m in METRICS]
    assert pop.parameters == 1  # Pop's only parameter is its placeholder loss
    assert bpr.parameters == bpr.trainable_parameters > 0
    assert pop.test_seconds > 0 and bpr.train_seconds > 0

    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["Pop", "BPR", "NoSuchModel"]
    assert float(rows[1]["imp_auc"]) == pytest.approx(bpr.test_result["imp_auc"])
    assert rows[2]["imp_auc"] == "" and "Unknown model" in rows[2]["error"]
    assert {row["seed"] for row in rows} == {"7"}
    markdown = (output / "results.md").read_text()
    assert "seed 7" in markdown and "| NoSuchModel | failed |" in markdown
    assert (output / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in output.iterdir()) == ["checkpoints", "results.csv", "results.md", "results.png"]

    # Same seed, same splits: a second run reproduces the numbers; existing results are never replaced unasked.
    with pytest.raises(FileExistsError, match="--overwrite"):
        compare.compare(specs[:1], "tiny", str(tiny_impressions), str(output), overrides=DATASET_SETTINGS, seed=7)
    again = compare.compare(specs[1:2], "tiny", str(tiny_impressions), str(output), overrides=DATASET_SETTINGS,
                            seed=7, overwrite=True)
    assert again[0].test_result == bpr.test_result


def test_cli_prints_the_table_and_fails_when_a_model_fails(tiny_impressions, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "--dataset", "tiny", "--data_path", str(tiny_impressions), "--models", "Pop,Nope",
            "--output", str(tmp_path / "out")]
    argv += [f"--{key}={value!r}" for key, value in DATASET_SETTINGS.items()]
    assert main(argv) == 1
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| model | status | auc | logloss | imp_auc |")
    assert "| Pop | ok |" in table and "| Nope | failed |" in table
    assert main(argv) == 2  # results exist: refused
    assert "already holds results.csv, results.md, results.png" in capsys.readouterr().err


def test_overrides_and_model_lists():
    assert parse_overrides(["--epochs=3", "--learning_rate=1e-3", "--plm=t5-small", "--eval_args={'mode': 'labeled'}"]) \
        == {"epochs": 3, "learning_rate": 0.001, "plm": "t5-small", "eval_args": {"mode": "labeled"}}
    with pytest.raises(ValueError, match="--key=value"):
        parse_overrides(["--epochs"])
    specs = compare.model_specs(["SASRec"], ablations=True)
    assert [(s.label, s.model, s.config) for s in specs] == [
        ("SASRec", "SASRec", {}),
        ("EmbSum", "EmbSum", {}),
        ("EmbSum wo CPE", "EmbSum", {"use_cpe": False}),
        ("EmbSum wo grouping", "EmbSum", {"session_grouping": False}),
        ("EmbSum wo UPE", "EmbSum", {"upe_codes": 1}),
        ("EmbSum wo L_sum", "EmbSum", {"use_summary_loss": False}),
    ]
    with pytest.raises(ValueError, match="listed twice: EmbSum"):
        compare.model_specs(["EmbSum"], ablations=True)
    with pytest.raises(ValueError, match="no models"):
        compare.model_specs([])
