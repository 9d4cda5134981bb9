"""A training file with non-clicks stops models that take every training row for a click (compat section 10)."""
import shutil

import pytest
from recbole.config import Config
from recbole.data import create_dataset
from test_compare import DATASET_SETTINGS
from test_metrics_recbole import tiny_impressions  # noqa: F401  (the tiny converted dataset fixture)


@pytest.fixture
def with_non_click(tiny_impressions, tmp_path):  # noqa: F811
    folder = tmp_path / "data"
    shutil.copytree(tiny_impressions, folder)
    train = folder / "tiny" / "tiny.train.inter"
    lines = train.read_text(encoding="utf-8").splitlines()
    cells = lines[1].split("\t")
    cells[3] = "0.0"  # the first training row: shown, not clicked
    train.write_text("\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n", encoding="utf-8")
    return str(folder)


def _load(model, data_path, **extra):
    config = Config(model=model, dataset="tiny", config_dict={**DATASET_SETTINGS, "data_path": data_path, **extra})
    return create_dataset(config)


@pytest.mark.parametrize("model", ["BPR", "SASRec", "GRU4Rec"])
def test_models_that_ignore_the_label_refuse_non_clicks_in_training(with_non_click, model):
    with pytest.raises(ValueError) as error:
        _load(model, with_non_click)
    assert str(error.value) == (
        f"1 rows of tiny.train.inter have label != 1, but {model} takes every training row for a click (it never "
        f"reads the label); keep only clicks in the training file, as recbole-embsum convert does")


def test_pop_reads_the_label_unless_sampling_overwrites_it(with_non_click, tiny_impressions):  # noqa: F811
    assert len(_load("Pop", with_non_click).inter_feat) == len(_load("Pop", str(tiny_impressions)).inter_feat)
    sampling = {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}
    with pytest.raises(ValueError, match="Pop takes every training row for a click"):
        _load("Pop", with_non_click, train_neg_sample_args=sampling)  # RecBole relabels sampled batches' rows as 1
    _load("BPR", str(tiny_impressions))  # clicks only: fine
