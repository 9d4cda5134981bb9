"""Pop ranks by the exact number of training clicks (compat.ClickCountingPop's methods on RecBole's own Pop)."""
import collections
import csv
import os

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.model.general_recommender import Pop  # RecBole's own class, imported before recbole_embsum
from recbole.utils import get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (installs compat.Pop)
from recbole_embsum import compat


def read_inter(path):
    """Rows of an atomic .inter file as dicts (plain csv; field names without their :type)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = [cell.split(":")[0] for cell in next(reader)]
        return [dict(zip(header, row)) for row in reader]


def train_clicks(data_path, name):
    """item token -> number of label-1 rows in <name>.train.inter."""
    rows = read_inter(os.path.join(data_path, name, f"{name}.train.inter"))
    return collections.Counter(row["item_id"] for row in rows if float(row["label"]) == 1)


class _Dataset:
    """The two attributes RecBole's GeneralRecommender reads from a dataset."""

    def __init__(self, n_items):
        self.n_items, self.n_users = n_items, 3

    def num(self, field):
        return self.n_items if field == "item_id" else self.n_users


@pytest.fixture
def pop_config(tmp_path):
    return Config(model="Pop", dataset="mind", config_dict={"data_path": str(tmp_path)})


def _batch():
    # item 2 three times (two clicks, one label-0 row: a sampled or shown-not-clicked negative), item 3 once (label 0)
    return Interaction({
        "user_id": torch.tensor([1, 1, 2, 2]),
        "item_id": torch.tensor([2, 2, 2, 3]),
        "label": torch.tensor([1.0, 1.0, 0.0, 0.0]),
    })


def test_recbole_pop_counts_negatives_and_a_batch_duplicate_once(pop_config):
    # Needed while RecBole's Pop ignores the label and updates item_cnt by fancy-indexed assignment.
    pop = Pop(pop_config, _Dataset(5))
    compat.RECBOLE_POP_METHODS["calculate_loss"](pop, _batch())
    assert pop.item_cnt[:, 0].tolist() == [0, 0, 1, 1, 0]  # true clicks: item 2 twice, item 3 never


def test_our_pop_counts_clicks_exactly_and_scores_by_count(pop_config):
    assert get_model("Pop") is Pop and Pop.calculate_loss is compat.ClickCountingPop.calculate_loss
    assert pop_config["train_neg_sample_args"]["distribution"] == "none"  # no sampled negatives by default
    pop = Pop(pop_config, _Dataset(5))
    pop.calculate_loss(_batch())
    pop.calculate_loss(Interaction({"user_id": torch.tensor([1]), "item_id": torch.tensor([4]),
                                    "label": torch.tensor([1.0])}))
    assert pop.item_cnt[:, 0].tolist() == [0, 0, 2, 0, 1]
    scores = pop.predict(Interaction({"user_id": torch.tensor([1, 1, 1]), "item_id": torch.tensor([2, 3, 4])}))
    assert scores.tolist() == [2.0, 0.0, 1.0]
    grid = pop.full_sort_predict(Interaction({"user_id": torch.tensor([1, 2])})).view(2, 5)
    assert grid.tolist() == [[0.0, 0.0, 2.0, 0.0, 1.0]] * 2


@pytest.mark.parametrize("sampling", [None, {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                             "dynamic": False, "candidate_num": 0}])
def test_pop_trained_on_converted_data_scores_every_item_by_its_train_clicks(mind_dataset, tmp_path, sampling):
    data_path, name = mind_dataset
    overrides = {"data_path": data_path, "checkpoint_dir": str(tmp_path), "train_batch_size": 7, "state": "ERROR",
                 "show_progress": False}
    if sampling is not None:  # RecBole's default sampling, asked for explicitly: the sampled rows must not count
        overrides["train_neg_sample_args"] = sampling
    config = Config(model="Pop", dataset=name, config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = get_model("Pop")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)

    expected = train_clicks(data_path, name)
    assert max(expected.values()) > 1  # the check covers items clicked several times (in one batch of 7, too)
    tokens = train_data._dataset.field2id_token["item_id"]
    items = torch.arange(1, len(tokens))
    scores = model.predict(Interaction({"user_id": torch.ones_like(items), "item_id": items}))
    assert {tokens[i]: float(s) for i, s in zip(items.tolist(), scores)} == {
        token: float(expected.get(token, 0)) for token in tokens[1:]
    }
