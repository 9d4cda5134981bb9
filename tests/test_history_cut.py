"""Every model reads the most recent MAX_ITEM_LIST_LENGTH items of the stored history (compat section 8)."""
import os

import pytest
from conftest import TINY_EMBSUM
from recbole.config import Config
from recbole.data import create_dataset
from test_pop import read_inter

from recbole_embsum import compat
from recbole_embsum.evaluation import compare

KEEP = 20


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, synth_mind_raw):
    """The same synthetic MIND converted at history width 60 (no empty histories) in both layouts."""
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind

    folders = {}
    for layout in ("inline", "store"):
        folders[layout] = str(tmp_path_factory.mktemp(f"mind_{layout}"))
        convert_mind(synth_mind_raw, folders[layout], ConvertOptions(name="mind", empty_history="drop", layout=layout))
    return folders


def stored_histories(folder):
    """Every row's stored history (oldest first) read from the inline layout's .inter files."""
    histories = []
    for split in ("train", "valid", "test"):
        histories += [row["item_id_list"].split() for row in read_inter(os.path.join(folder, "mind",
                                                                                     f"mind.{split}.inter"))]
    return histories


def _dataset(model, data_path, **extra):
    config = Config(model=model, dataset="mind", config_dict={"data_path": data_path, "MAX_ITEM_LIST_LENGTH": KEEP,
                                                              "state": "ERROR", **extra})
    return create_dataset(config)


def test_recbole_seq_len_keeps_the_oldest_items(layouts):
    # Needed while RecBole's _load_feat cuts token sequences to seq[:seq_len].
    dataset = _dataset("BPR", layouts["inline"])
    path = os.path.join(layouts["inline"], "mind", "mind.test.inter")
    dataset.config.final_config_dict["seq_len"] = {"item_id_list": KEEP}
    frame = compat._recbole_load_feat(dataset, path, "inter")
    stored = [row["item_id_list"].split() for row in read_inter(path)]
    assert [list(h) for h in frame["item_id_list"]] == [history[:KEEP] for history in stored]


@pytest.mark.parametrize("layout", ["inline", "store"])
@pytest.mark.parametrize("model", ["SASRec", "EmbSum", "BPR"])
def test_every_model_reads_the_most_recent_items(layouts, model, layout):
    stored = stored_histories(layouts["inline"])
    assert max(map(len, stored)) > KEEP  # converted at width 60: some histories are longer than the cut
    dataset = _dataset(model, layouts[layout])
    assert dataset.field2seqlen["item_id_list"] == KEEP
    tokens = dataset.field2id_token["item_id"]
    read = []
    for split in dataset.build():  # train, valid, test, rows in file order
        batch = split.join(split.inter_feat)  # the fields a model receives (the store attaches histories here)
        read += [[tokens[i] for i in history if i] for history in batch["item_id_list"].tolist()]
        if "item_length" in batch:
            assert batch["item_length"].tolist() == [min(len(h), KEEP) for h in stored[len(read) - len(batch):
                                                                                         len(read)]]
    assert read == [history[-KEEP:] for history in stored]


@pytest.mark.slow
def test_sasrec_and_embsum_compare_at_a_shorter_history(layouts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data_path, name = layouts["store"], "mind"
    specs = [compare.RunSpec("SASRec", "SASRec", {"hidden_size": 8, "inner_size": 16, "n_layers": 1, "n_heads": 1}),
             compare.RunSpec("EmbSum", "EmbSum", {**TINY_EMBSUM, "eval_global_vector": "start",
                                                  "summary_max_tokens": 16})]
    results = compare.compare(specs, name, data_path, str(tmp_path / "out"),
                              overrides={"epochs": 1, "MAX_ITEM_LIST_LENGTH": KEEP, "state": "ERROR",
                                         "show_progress": False, "train_batch_size": 64, "eval_batch_size": 512})
    assert [(r.spec.label, r.status, r.error) for r in results] == [("SASRec", "ok", ""), ("EmbSum", "ok", "")]
    assert all(0 <= r.test_result["imp_auc"] <= 1 for r in results)


def test_compare_refuses_models_reading_different_history_lengths(tmp_path):
    specs = [compare.RunSpec("SASRec", "SASRec", {"MAX_ITEM_LIST_LENGTH": 12}), compare.RunSpec("GRU4Rec", "GRU4Rec"),
             compare.RunSpec("Pop", "Pop", {"MAX_ITEM_LIST_LENGTH": 5})]  # Pop reads no history: not compared
    with pytest.raises(ValueError) as error:
        compare.compare(specs, "mind", str(tmp_path), str(tmp_path / "out"))
    assert str(error.value) == (
        "MAX_ITEM_LIST_LENGTH differs between models (SASRec 12, GRU4Rec 60); every model of a table must read the "
        "same history: set it once for all, e.g. --MAX_ITEM_LIST_LENGTH=12")
    assert not (tmp_path / "out").exists()
