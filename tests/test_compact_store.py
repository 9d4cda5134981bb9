"""The compact history store (format 2) against the inline layout (format 1) it replaces, from the same raw data:
the converter writes the same histories and negatives, RecBole builds the same item vocabulary and the same
batches, and every compared model (Pop, BPR, SASRec, GRU4Rec, BERT4Rec, EmbSum) predicts the same scores row by
row; training negatives are at most train_neg_num of the row's own, seeded."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (registers EmbSum and installs the store hooks)
from conftest import MIND_YAML, MODEL_YAML, TINY_EMBSUM
from dataset_converters.goodreads import convert_goodreads
from dataset_converters.impressions import ConvertOptions
from dataset_converters.mind import convert_mind
from dataset_converters.store import FORMAT_VERSION, StoreFormatError, open_store
from recbole_embsum.text.backbone import tokenizer_cache_dir

LAYOUTS = ("inline", "store")
MODELS = ("Pop", "BPR", "SASRec", "GRU4Rec", "BERT4Rec", "EmbSum")
COMMON = {"show_progress": False, "drop_empty_history": True, "epochs": 1, "train_batch_size": 256,
          "eval_batch_size": 512, "seed": 7, "reproducibility": True, "state": "ERROR", "device": "cpu",
          "metrics": ["AUC"], "valid_metric": "AUC",
          # small baselines: the layouts must give the same batches and bit-identical scores at any size
          "embedding_size": 16, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1}
EMBSUM = {**TINY_EMBSUM, "use_summary_loss": False, "session_size": 2,
          "title_max_tokens": 8, "abstract_max_tokens": 8, "item_encode_batch_size": 64}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's Trainer creates log_tensorboard/ in the working directory


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, synth_mind_raw):
    """{layout: data_path} of the synthetic MIND converted both ways."""
    paths = {}
    for layout in LAYOUTS:
        paths[layout] = str(tmp_path_factory.mktemp(f"mind_{layout}"))
        convert_mind(synth_mind_raw, paths[layout], ConvertOptions(name="mind", layout=layout))
    return paths


def _inline_rows(data_path, name, split):
    with open(os.path.join(data_path, name, f"{name}.{split}.inter"), encoding="utf-8") as handle:
        header = next(handle).rstrip("\n").split("\t")
        return header, [line.rstrip("\n").split("\t") for line in handle]


# --------------------------------------------------------------------------------------------------- converter
@pytest.mark.parametrize("dataset", ["mind", "goodreads"])
def test_store_holds_every_rows_history_and_negatives(tmp_path, synth_mind_raw, synth_goodreads_raw, dataset):
    def convert(layout):
        out = str(tmp_path / layout)
        if dataset == "mind":
            convert_mind(synth_mind_raw, out, ConvertOptions(name=dataset, layout=layout))
        else:
            convert_goodreads(synth_goodreads_raw, out, ConvertOptions(name=dataset, layout=layout))
        return out

    inline, store_out = convert("inline"), convert("store")
    store = open_store(os.path.join(store_out, dataset), dataset)
    assert store.manifest["format_version"] == FORMAT_VERSION
    for split in ("train", "valid", "test"):
        header, rows = _inline_rows(inline, dataset, split)
        store_header, store_rows = _inline_rows(store_out, dataset, split)
        assert store_header == header[:5]
        assert [row[:5] for row in rows] == store_rows  # same scalar columns, same order
        groups = store.groups_of_rows(split)
        assert len(groups) == len(rows)
        for row, group in zip(rows, groups):
            assert " ".join(store.history_tokens(group)) == row[5]
            negatives = store.items[store.negatives[store.negative_offsets[group]:store.negative_offsets[group + 1]]]
            assert " ".join(negatives) == row[6]
        assert list(store.row_histories(split)) == [row[5] for row in rows]
    # one group per impression in MIND (clicks share history and negatives); far fewer values than rows x history
    if dataset == "mind":
        train_impressions = {row[0] for row in _inline_rows(inline, dataset, "train")[1]}
        assert store.split_groups("train")[1] - store.split_groups("train")[0] == len(train_impressions)


def test_reconverting_replaces_the_store_and_inline_removes_it(tmp_path, synth_mind_raw):
    convert_mind(synth_mind_raw, tmp_path, ConvertOptions(name="mind"))
    assert open_store(tmp_path / "mind", "mind") is not None
    convert_mind(synth_mind_raw, tmp_path, ConvertOptions(name="mind", layout="inline", overwrite=True))
    assert open_store(tmp_path / "mind", "mind") is None
    assert not [name for name in os.listdir(tmp_path / "mind") if name.startswith(".")]  # no temporary leftovers


# --------------------------------------------------------------------------------------------------- loading
def _prepare(model, data_path, **extra):
    files = [MODEL_YAML, MIND_YAML] if model == "EmbSum" else [MIND_YAML]
    config = Config(model=model, dataset="mind", config_file_list=files,
                    config_dict={"data_path": data_path, **COMMON, **(EMBSUM if model == "EmbSum" else {}), **extra})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return (config, dataset) + tuple(data_preparation(config, dataset))


def _eval_batches(loader):
    return [batch[0] for batch in loader]


def _assert_same_batch(new, old, skip=("neg_items",)):
    assert set(new.interaction) == set(old.interaction)
    for field in old.interaction:
        if field not in skip:
            assert torch.equal(new[field], old[field]), field


@pytest.mark.parametrize("model", MODELS)
def test_every_model_gets_the_same_batches_and_predictions(tmp_path, layouts, model):
    prepared = {}
    for layout, data_path in layouts.items():
        if model == "EmbSum":  # EmbSum caches its scratch tokenizer beside the data: private copies
            shutil.copytree(os.path.join(data_path, "mind"), tmp_path / layout / "mind")
            data_path = str(tmp_path / layout)
        prepared[layout] = _prepare(model, data_path)
    (config, old, *_), (_, new, *_) = prepared["inline"], prepared["store"]
    assert list(new.field2id_token["item_id"]) == list(old.field2id_token["item_id"])
    assert new.field2seqlen["item_id_list"] == old.field2seqlen["item_id_list"]
    assert new.file_size_list == old.file_size_list
    batches = {}
    for layout, (config, _, _, valid, test) in prepared.items():
        init_seed(config["seed"], config["reproducibility"])  # BERT4Rec's transform draws from the global RNG
        batches[layout] = _eval_batches(valid) + _eval_batches(test)
    assert len(batches["store"]) == len(batches["inline"])
    for new_batch, old_batch in zip(batches["store"], batches["inline"]):  # valid, test: row by row
        _assert_same_batch(new_batch, old_batch)

    scores = {}
    for layout, (config, dataset, train, valid, test) in prepared.items():
        if model == "EmbSum" and layout == "store":  # one scratch tokenizer (Unigram training is not bit-exact)
            shutil.copytree(tokenizer_cache_dir(prepared["inline"][0]["data_path"], "mind"),
                            tokenizer_cache_dir(config["data_path"], "mind"))
        init_seed(config["seed"], config["reproducibility"])
        network = get_model(config["model"])(config, train.dataset)
        if model != "EmbSum":  # EmbSum draws from neg_items, whose width changed: compared untrained
            trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, network)
            trainer.fit(train, saved=False, show_progress=False)
        network.eval()
        with torch.no_grad():
            scores[layout] = torch.cat([network.predict(batch) for batch in _eval_batches(test)])
    assert len(scores["store"]) == sum(1 for _ in test.dataset.inter_feat["item_id"])
    assert torch.equal(scores["store"], scores["inline"])


def test_training_negatives_are_up_to_k_of_the_rows_own_and_seeded(layouts):
    _, old, old_train, _, _ = _prepare("SASRec", layouts["inline"], train_neg_num=4)
    _, new, new_train, _, _ = _prepare("SASRec", layouts["store"], train_neg_num=4)
    drawn = []
    for new_batch, old_batch in zip(new_train, old_train):
        _assert_same_batch(new_batch, old_batch)
        assert new_batch["neg_items"].shape == (len(new_batch), 4)
        for picked, pool in zip(new_batch["neg_items"].tolist(), old_batch["neg_items"].tolist()):
            pool = [item for item in pool if item]
            chosen = [item for item in picked if item]
            assert len(chosen) == min(4, len(pool)) and set(chosen) <= set(pool)
            assert chosen == sorted(chosen, key=pool.index)  # kept in the stored order
        drawn.append(new_batch["neg_items"])
    assert max(int((row != 0).sum()) for batch in drawn for row in batch) == 4
    # the same seed draws the same negatives; another seed others
    again = torch.cat([batch["neg_items"] for batch in _prepare("SASRec", layouts["store"], train_neg_num=4)[2]])
    assert torch.equal(torch.cat(drawn), again)
    other = torch.cat([b["neg_items"] for b in _prepare("SASRec", layouts["store"], train_neg_num=4, seed=8)[2]])
    assert not torch.equal(torch.cat(drawn).sort(dim=1).values, other.sort(dim=1).values)


def test_single_row_and_whole_dataset_indexing_attach_the_history(layouts):
    _, old, *_ = _prepare("SASRec", layouts["inline"])
    _, new, *_ = _prepare("SASRec", layouts["store"])
    assert torch.equal(new[3]["item_id_list"], old[3]["item_id_list"])
    assert new[3]["item_id_list"].dim() == 1
    _assert_same_batch(new[:], old[:])


def test_empty_history_rows_without_drop_and_the_store_fields_in_field2type(layouts):
    _, new, train, _, _ = _prepare("Pop", layouts["store"], drop_empty_history=False)
    _, old, *_ = _prepare("Pop", layouts["inline"], drop_empty_history=False)
    assert new.file_size_list == old.file_size_list
    assert (new[:]["item_id_list"] != 0).sum(dim=1).min().item() == 0  # empty histories kept
    assert new.field2type == old.field2type
    assert "_store_group" not in next(iter(train)).interaction  # the hidden group column never reaches a model


# --------------------------------------------------------------------------------------------------- versioning
def _copy(layouts, tmp_path, layout="store"):
    shutil.copytree(os.path.join(layouts[layout], "mind"), tmp_path / "data" / "mind")
    return str(tmp_path / "data"), tmp_path / "data" / "mind"


def test_unknown_format_version_says_what_to_do(tmp_path, layouts):
    data_path, folder = _copy(layouts, tmp_path)
    manifest = folder / "mind.store" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(StoreFormatError, match=r"format_version 3, but this recbole-embsum reads format 2; "
                                               r"convert the raw data again"):
        _prepare("Pop", data_path)


def test_scalar_inter_files_without_their_store_say_what_to_do(tmp_path, layouts):
    data_path, folder = _copy(layouts, tmp_path)
    shutil.rmtree(folder / "mind.store")
    with pytest.raises(ValueError, match=r"no item_id_list column and there is no mind.store/ folder .*"
                                         r"`recbole-embsum convert"):
        _prepare("Pop", data_path)


def test_store_and_inter_files_of_different_conversions_are_refused(tmp_path, layouts):
    data_path, folder = _copy(layouts, tmp_path)
    lines = (folder / "mind.valid.inter").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "mind.valid.inter").write_text("".join(lines[:-1]), encoding="utf-8")
    with pytest.raises(StoreFormatError, match=r"mind.valid.inter: \d+ rows, but .* describes \d+"):
        _prepare("Pop", data_path)


def test_a_folder_in_the_inline_layout_is_read_as_before(layouts):
    _, dataset, train, _, _ = _prepare("SASRec", layouts["inline"])
    assert not hasattr(dataset, "_history_store")
    assert dataset.field2seqlen["neg_items"] == next(iter(train))["neg_items"].shape[1]


def test_summaries_read_histories_from_either_layout(layouts):
    from recbole_embsum.summaries.history import evaluation_histories, training_engagements

    def read(layout):
        folder = os.path.join(layouts[layout], "mind")
        train = training_engagements(os.path.join(folder, "mind.train.inter"))
        return train, evaluation_histories(os.path.join(folder, "mind.test.inter"), set(list(train)[::2]))

    assert read("store") == read("inline")
    assert np.mean([len(v) for v in read("store")[0].values()]) > 1


def test_a_history_outside_the_item_vocabulary_gets_its_own_as_in_recbole(layouts):
    # alias_of_item_id without item_id_list: RecBole numbers the history tokens in a vocabulary of their own
    loaded = {layout: _prepare("Pop", layouts[layout], alias_of_item_id=["neg_items"]) for layout in LAYOUTS}
    (_, old, *_), (_, new, *_) = loaded["inline"], loaded["store"]
    assert list(new.field2id_token["item_id_list"]) == list(old.field2id_token["item_id_list"])
    assert list(new.field2id_token["item_id_list"]) != list(new.field2id_token["item_id"])
    _assert_same_batch(new[:], old[:])
