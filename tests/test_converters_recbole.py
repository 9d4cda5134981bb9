"""The converted synthetic datasets load in RecBole with the packaged dataset yaml, for a baseline and SASRec."""
import pytest
import torch

from conftest import GOODREADS_YAML, MIND_YAML
from dataset_converters.store import open_store


def _load(model, data, yaml_path):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    from recbole_embsum.evaluation.metrics import register_metrics

    register_metrics()  # the dataset yaml names the per-impression metrics
    data_path, name = data
    config = Config(model=model, dataset=name, config_file_list=[yaml_path],
                    config_dict={"data_path": data_path, "show_progress": False})
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def _count_rows(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


@pytest.mark.parametrize("model, data_fixture, yaml_path", [
    ("Pop", "mind_dataset", MIND_YAML),
    ("BPR", "mind_dataset", MIND_YAML),
    ("SASRec", "mind_dataset_no_empty", MIND_YAML),
    ("Pop", "goodreads_dataset", GOODREADS_YAML),
    ("SASRec", "goodreads_dataset_no_empty", GOODREADS_YAML),
])
def test_converted_data_loads_with_packaged_yaml(request, model, data_fixture, yaml_path):
    data = request.getfixturevalue(data_fixture)
    config, dataset, (train, valid, test) = _load(model, data, yaml_path)
    data_path, name = data
    for split, loader in (("train", train), ("valid", valid), ("test", test)):
        assert len(loader.dataset) == _count_rows(f"{data_path}/{name}/{name}.{split}.inter")
    assert config["eval_args"]["mode"] == {"valid": "labeled", "test": "labeled"}
    assert dataset.field2seqlen["item_id_list"] <= config["MAX_ITEM_LIST_LENGTH"]
    batch = next(iter(train)).interaction
    assert set(batch) >= {"impression_id", "user_id", "item_id", "label", "item_id_list", "neg_items", "category"}
    assert train.dataset.inter_feat["label"].eq(1).all()  # train rows are clicks only
    # One item vocabulary: history and negative ids decode to the same raw ids as item_id.
    vocab = dataset.field2id_token["item_id"]
    for field in ("item_id_list", "neg_items"):
        assert dataset.field2id_token[field] is vocab or (dataset.field2id_token[field] == vocab).all()
    # The first train row decodes to its raw item, its history and (up to train_neg_num of) its negatives.
    store = open_store(f"{data_path}/{name}", name)
    cells = open(f"{data_path}/{name}/{name}.train.inter", encoding="utf-8").read().splitlines()[1].split("\t")
    group = store.groups_of_rows("train")[0]
    first = dataset[torch.tensor([0])]
    assert vocab[first["item_id"].item()] == cells[2]
    assert [vocab[i] for i in first["item_id_list"][0].tolist() if i] == list(store.history_tokens(group))
    negatives = store.items[store.negatives[store.negative_offsets[group]:store.negative_offsets[group + 1]]]
    picked = [vocab[i] for i in first["neg_items"][0].tolist() if i]
    assert len(picked) == min(config["train_neg_num"], len(negatives)) and set(picked) <= set(negatives)


def test_empty_history_rows_are_gone_when_dropped(mind_dataset, mind_dataset_no_empty):
    _, dataset, _ = _load("SASRec", mind_dataset_no_empty, MIND_YAML)
    assert dataset.inter_feat["item_length"].min().item() >= 1
    _, kept, _ = _load("Pop", mind_dataset, MIND_YAML)
    assert (kept[:]["item_id_list"] != 0).sum(dim=1).min().item() == 0


def test_any_dataset_name_trains_with_the_yaml_written_beside_the_files(tmp_path, synth_mind_raw):
    """`convert mind --name mind_large`: no packaged mind_large.yaml, yet RecBole finds the files and settings."""
    import recbole_embsum  # noqa: F401  (registers the converted-dataset yaml with RecBole's Config)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind

    convert_mind(synth_mind_raw, tmp_path, ConvertOptions(name="mind_large", history_len=25))
    config = Config(model="EmbSum", dataset="mind_large",
                    config_dict={"data_path": str(tmp_path), "show_progress": False, "train_neg_num": 7})
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["load_col"]["inter"][-2:] == ["item_id_list", "neg_items"]
    assert config["valid_metric"] == "imp_auc" and config["title_max_tokens"] == 32
    assert config["seq_len"] == {"item_id_list": 25} and config["MAX_ITEM_LIST_LENGTH"] == 25
    assert config["train_neg_num"] == 7  # config_dict still wins over the converted yaml
    assert "benchmark_filename" in config.parameters["Dataset"]
    config = Config(model="Pop", dataset="mind_large", config_dict={"data_path": str(tmp_path),
                                                                     "show_progress": False})
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    assert len(train.dataset) == _count_rows(tmp_path / "mind_large" / "mind_large.train.inter")
    assert len(test.dataset) == _count_rows(tmp_path / "mind_large" / "mind_large.test.inter")
