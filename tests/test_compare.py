"""`recbole-embsum compare`: same splits for every model, failures reported, files written atomically."""
import csv
import logging
import statistics

import numpy as np
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
    broken = compare.RunSpec("BPR broken", "BPR", {"embedding_size": -1})  # fails when the model is built
    specs = compare.model_specs(["Pop", "BPR"]) + [broken]
    results = compare.compare(specs, "tiny", str(tiny_impressions), str(output), overrides=DATASET_SETTINGS, seed=7)

    assert [(r.spec.label, r.status) for r in results] == [("Pop", "ok"), ("BPR", "ok"), ("BPR broken", "failed")]
    assert "RuntimeError" in results[2].error
    pop, bpr = results[0], results[1]
    assert list(pop.test_result) == [m.lower() for m in METRICS]
    assert pop.test_result["logloss"] is None and bpr.test_result["logloss"] is None  # ranking scores
    assert pop.parameters == 1  # Pop's only parameter is its placeholder loss
    assert bpr.parameters == bpr.trainable_parameters > 0
    assert pop.test_seconds > 0 and bpr.train_seconds > 0
    assert (pop.negatives, bpr.negatives) == ("none (counts clicks)", "uniform sampled (1 per click)")

    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["Pop", "BPR", "BPR broken"]
    assert float(rows[1]["imp_auc"]) == pytest.approx(bpr.test_result["imp_auc"])
    assert rows[0]["logloss"] == rows[1]["logloss"] == ""
    assert rows[2]["imp_auc"] == "" and "RuntimeError" in rows[2]["error"]
    assert {row["seed"] for row in rows} == {"7"}
    assert rows[1]["train_negatives"] == "uniform sampled (1 per click)"
    markdown = (output / "results.md").read_text()
    assert "seed 7" in markdown and "| BPR broken | failed |" in markdown
    assert "logloss is blank for Pop, BPR: it reads scores as click probabilities" in markdown
    pop_row = next(line for line in markdown.splitlines() if line.startswith("| Pop | ok |"))
    assert pop_row.split(" | ")[3] == "" and "none (counts clicks)" in pop_row  # auc, (blank) logloss, ...
    assert (output / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in output.iterdir()) == ["checkpoints", "results.csv", "results.md", "results.png",
                                                         "scores"]
    assert sorted(p.name for p in (output / "scores").iterdir()) == ["BPR.npz", "Pop.npz"]

    # Same seed, same splits: a second run reproduces the numbers; existing results are never replaced unasked.
    with pytest.raises(FileExistsError, match="--overwrite"):
        compare.compare(specs[:1], "tiny", str(tiny_impressions), str(output), overrides=DATASET_SETTINGS, seed=7)
    again = compare.compare(specs[1:2], "tiny", str(tiny_impressions), str(output), overrides=DATASET_SETTINGS,
                            seed=7, overwrite=True)
    assert again[0].test_result == bpr.test_result
    assert sorted(p.name for p in (output / "scores").iterdir()) == ["BPR.npz"]  # the earlier Pop scores went


def test_seeds_give_one_csv_row_per_run_and_mean_and_std_in_the_table(tiny_impressions, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    results = compare.compare(compare.model_specs(["BPR", "Pop"]), "tiny", str(tiny_impressions), str(output),
                              overrides=DATASET_SETTINGS, seed=7, seeds=3)
    assert [(r.spec.label, r.seed) for r in results] == [("BPR", 7), ("BPR", 8), ("BPR", 9), ("Pop", 7), ("Pop", 8),
                                                         ("Pop", 9)]
    with open(output / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    bpr = [float(row["imp_auc"]) for row in rows if row["model"] == "BPR"]
    assert [row["seed"] for row in rows] == ["7", "8", "9"] * 2 and len(set(bpr)) > 1  # seeds change BPR's start
    markdown = (output / "results.md").read_text()
    assert "seeds 7, 8, 9 (mean ± std)" in markdown
    bpr_row = next(line for line in markdown.splitlines() if line.startswith("| BPR | ok |"))
    assert f"{statistics.mean(bpr):.4f} ± {statistics.stdev(bpr):.4f}" in bpr_row
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["seed7", "seed8", "seed9"]
    with np.load(output / "scores" / "BPR.npz") as scores:
        assert sorted(set(scores["seed"].tolist())) == [7, 8, 9]
        assert len(scores["score"]) == 3 * len(results[0].scores["score"])


def test_cli_prints_the_table_and_fails_when_a_model_fails(tiny_impressions, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "--dataset", "tiny", "--data-path", str(tiny_impressions), "--models", "Pop,BPR",
            "--output", str(tmp_path / "out"), "--embedding_size=-1"]  # BPR cannot be built with it; Pop has none
    argv += [f"--{key}={value!r}" for key, value in DATASET_SETTINGS.items() if key != "embedding_size"]
    assert main(argv) == 1
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "# Comparison: dataset tiny, seed 2020, test split of " + str(tiny_impressions)
    assert table.splitlines()[2].startswith("| model | status | auc | logloss | imp_auc |")
    assert "| Pop | ok |" in table and "| BPR | failed |" in table
    assert main(argv) == 2  # results exist: refused
    assert "already holds results.csv, results.md, results.png" in capsys.readouterr().err


def test_a_dataset_that_was_not_converted_stops_before_anything_trains(tiny_impressions, tmp_path, capsys):  # noqa: F811
    argv = ["compare", "--dataset", "TINY", "--data-path", str(tiny_impressions), "--models", "Pop,BPR",
            "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"no converted dataset 'TINY' under {tiny_impressions}/ (found: tiny)" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_memory_estimate_of_the_shared_data_is_logged_once(tiny_impressions, caplog):  # noqa: F811
    specs = compare.model_specs(["Pop", "BPR"]) + [compare.RunSpec("BPR 16", "BPR", {"embedding_size": 16})]
    config_dict = {**DATASET_SETTINGS, "data_path": str(tiny_impressions), "seed": 7}
    with caplog.at_level(logging.INFO):
        compare.check_plan(specs, "tiny", None, config_dict)
    estimates = [record.getMessage() for record in caplog.records if "memory estimate" in record.getMessage()]
    assert len(estimates) == 1 and "loaded data" in estimates[0], estimates


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


def test_identical_models_are_not_significantly_different_and_a_clear_gap_is():
    from recbole_embsum.evaluation.significance import paired_comparison

    same = paired_comparison({"a": 0.5, "b": 0.7}, {"a": 0.5, "b": 0.7})
    assert (same.impressions, same.difference, same.low, same.high, same.p_value, same.significant) == (
        2, 0.0, 0.0, 0.0, 1.0, False)
    rng = np.random.default_rng(0)
    base = {i: float(v) for i, v in enumerate(rng.random(200))}
    better = {i: v + 0.1 + 0.01 * rng.standard_normal() for i, v in base.items()}
    gap = paired_comparison(better, base)
    assert gap.significant and gap.low < 0.1 < gap.high and gap.difference == pytest.approx(0.1, abs=0.01)


def test_the_chart_shows_models_in_the_given_order_with_value_labels_and_a_title_naming_the_data(tmp_path,
                                                                                                 monkeypatch):
    import matplotlib.figure
    from matplotlib.container import BarContainer

    figures = []
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda figure, *args, **kwargs: (figures.append(figure), savefig(figure, *args, **kwargs)))
    scores = {  # per model, per seed: imp_auc, imp_mrr (given order, not alphabetical)
        "SASRec": [(0.61, 0.30), (0.63, 0.32)],
        "EmbSum": [(0.70, 0.41), (0.72, 0.43)],
        "Pop": [(0.50, 0.20), (0.50, 0.20)],
    }
    results = [compare.RunResult(spec, seed=seed, test_result={"imp_auc": auc, "logloss": 0.7, "imp_mrr": mrr})
               for spec in compare.model_specs(list(scores)) for seed, (auc, mrr) in zip((7, 8), scores[spec.label])]
    results.append(compare.RunResult(compare.RunSpec("BPR", "BPR"), status="failed"))
    compare.write_results(results, "mind", "data", str(tmp_path), seed=7, seeds=2, title="synthetic MIND")

    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (figure,) = figures
    (axes,) = figure.axes
    assert axes.get_title() == "synthetic MIND (mind): test split, seeds 7, 8 (mean ± std)"
    assert [label.get_text() for label in axes.get_xticklabels()] == ["imp_auc", "imp_mrr"]  # logloss: another scale
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["SASRec", "EmbSum", "Pop"]
    assert [text.get_text() for text in figure.texts] == ["failed: BPR"]
    labels = {(round(text.xy[0], 6), text.get_text()) for text in axes.texts}  # bar_label: one text per bar top
    for metric in range(2):  # within each metric's group, the bars go left to right in the given order
        bars = [container.patches[metric] for container in axes.containers if isinstance(container, BarContainer)]
        assert [bar.get_x() for bar in bars] == sorted(bar.get_x() for bar in bars)
        means = [statistics.fmean(run[metric] for run in runs) for runs in scores.values()]
        assert [bar.get_height() for bar in bars] == pytest.approx(means)
        for bar, mean in zip(bars, means):
            assert (round(bar.get_x() + bar.get_width() / 2, 6), f"{mean:.3f}") in labels
    assert len(axes.texts) == 6
