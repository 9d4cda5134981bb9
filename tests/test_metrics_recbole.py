"""The imp_* metrics inside a real RecBole labeled evaluation (Trainer.evaluate), beside RecBole's AUC and LogLoss."""
import csv
import logging

import numpy as np
import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import Pop
from recbole.model.sequential_recommender import GRU4Rec
from recbole.utils import get_trainer, init_seed
from sklearn.metrics import roc_auc_score

from recbole_embsum.evaluation.collector import ImpressionCollector
from recbole_embsum.evaluation.metrics import IMPRESSION_KEY, register_metrics

COLUMNS = [
    "impression_id:token", "user_id:token", "item_id:token", "label:float", "timestamp:float",
    "item_id_list:token_seq", "neg_items:token_seq",
]
METRICS = ["AUC", "LogLoss", "imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"]


def write_inter(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def tiny_impressions(tmp_path_factory):
    """A converted dataset in the design's layout: packed train clicks, labeled valid/test candidates.

    Test impression 't0' has no click, 't1' a single candidate, so both exclusions happen in a real run.
    """
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data")
    folder = root / "tiny"
    folder.mkdir()
    items = [f"n{i}" for i in range(20)]
    # Popularity skew so that Pop is better than chance: low ids are clicked more.
    popularity = np.linspace(2.0, 0.1, len(items))
    popularity /= popularity.sum()
    train, splits = [], {"valid": [], "test": []}
    for u in range(30):
        history = list(rng.choice(items, size=3, replace=False))
        for n in range(4):
            clicked, *negatives = rng.choice(items, size=5, replace=False, p=popularity)
            train.append([f"r{u}_{n}", f"u{u}", clicked, 1.0, 1000 + n, " ".join(history), " ".join(negatives)])
        for split, time in (("valid", 2000), ("test", 3000)):
            candidates = rng.choice(items, size=6, replace=False)
            clicks = rng.random(6) < popularity[[items.index(c) for c in candidates]] * 8
            clicks[0], clicks[-1] = True, False  # every impression has a click and a non-click ...
            if split == "test" and u == 0:
                clicks[:] = False  # ... except these two
            if split == "test" and u == 1:
                candidates, clicks = candidates[:1], [True]
            for item, click in zip(candidates, clicks):
                splits[split].append([f"{split[0]}{u}", f"u{u}", item, float(click), time, " ".join(history), ""])
    write_inter(folder / "tiny.train.inter", train)
    for split, rows in splits.items():
        write_inter(folder / f"tiny.{split}.inter", rows)
    return root


def build(model_cls, data_path, tmp_path):
    register_metrics()
    config = Config(
        model=model_cls,
        dataset="tiny",
        config_dict={
            "data_path": str(data_path),
            "checkpoint_dir": str(tmp_path),
            "benchmark_filename": ["train", "valid", "test"],
            "alias_of_item_id": ["item_id_list", "neg_items"],
            "load_col": {"inter": [c.split(":")[0] for c in COLUMNS]},
            "eval_args": {"order": "TO", "mode": "labeled"},
            "train_neg_sample_args": None,
            "metrics": METRICS,
            "valid_metric": "imp_auc",
            "epochs": 1,
            "train_batch_size": 64,
            "eval_batch_size": 16,  # several batches per evaluation: the collector must join them
            "embedding_size": 8,
            "hidden_size": 8,
            "seed": 3,
            "state": "ERROR",
            "show_progress": False,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = model_cls(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector = ImpressionCollector(config)
    return config, trainer, train_data, valid_data, test_data


def reference_result(model, test_data):
    """sklearn per impression over the model's own scores of the test rows."""
    imps, scores, labels = [], [], []
    with torch.no_grad():
        for interaction, *_ in test_data:
            scores.append(model.predict(interaction).numpy())
            labels.append(interaction["label"].numpy())
            imps.append(interaction["impression_id"].numpy())
    imp, score, label = np.concatenate(imps), np.concatenate(scores), np.concatenate(labels)
    auc, mrr = [], []
    for i in np.unique(imp):
        y, s = label[imp == i], score[imp == i]
        if 0 < y.sum() < len(y):
            auc.append(roc_auc_score(y, s))
        if y.sum() > 0:
            mrr.append(np.mean([np.mean(1 / np.arange((s > v).sum() + 1, (s >= v).sum() + 1)) for v in s[y == 1]]))
    return {"auc": roc_auc_score(label, score), "imp_auc": np.mean(auc), "imp_mrr": np.mean(mrr)}


@pytest.mark.parametrize("model_cls", [Pop, GRU4Rec])
def test_labeled_evaluation_reports_every_metric(model_cls, tiny_impressions, tmp_path, caplog):
    config, trainer, train_data, valid_data, test_data = build(model_cls, tiny_impressions, tmp_path)
    best_valid, best_result = trainer.fit(train_data, valid_data, saved=False)
    assert best_valid == best_result["imp_auc"]  # valid_metric: imp_auc selects the model
    with caplog.at_level(logging.INFO, logger="recbole_embsum.evaluation.metrics"):
        result = trainer.evaluate(test_data, load_best_model=False)
    assert list(result) == [m.lower() for m in METRICS]
    expected = reference_result(trainer.model, test_data)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-4)
    assert "30 impressions (" in caplog.text
    assert "1 without a click are excluded" in caplog.text
    assert "1 without a non-clicked candidate" in caplog.text


def test_collector_resets_between_evaluations(tiny_impressions, tmp_path):
    config, trainer, train_data, valid_data, test_data = build(Pop, tiny_impressions, tmp_path)
    trainer.fit(train_data, valid_data, saved=False)
    first = trainer.evaluate(test_data, load_best_model=False)
    assert IMPRESSION_KEY not in trainer.eval_collector.data_struct
    assert "rec.score" not in trainer.eval_collector.data_struct
    second = trainer.evaluate(test_data, load_best_model=False)
    assert second == first


def test_collected_chunks_become_one_tensor_equal_to_torch_cat_and_are_released():
    import weakref

    from recbole_embsum.evaluation.collector import ChunkedDataStruct

    struct = ChunkedDataStruct()
    batches = [torch.tensor([0.5, 0.25], dtype=torch.float32), torch.tensor([1.5], dtype=torch.float64),
               torch.tensor([2.0, 3.0, 4.0], dtype=torch.float32)]
    for batch in batches:
        struct.update_tensor("rec.score", batch)
        struct.update_tensor("rec.items", torch.arange(len(batch) * 2).reshape(len(batch), 2))  # [B, 2]
    held = [weakref.ref(chunk) for chunk in struct._chunks["rec.score"]]
    struct.consolidate()
    score = struct.get("rec.score")
    assert score.dtype == torch.float64 and torch.equal(score, torch.cat(batches))
    assert torch.equal(struct.get("rec.items"), torch.cat([torch.arange(n * 2).reshape(n, 2) for n in (2, 1, 3)]))
    assert all(ref() is None for ref in held)  # the collected copies are gone: the rows are held once
