"""Shared pytest fixtures: small synthetic MIND / Goodreads data in the raw formats and converted for RecBole.

* `synth_mind_raw`: a folder holding `MINDsmall_train/` and `MINDsmall_dev/` (news.tsv + behaviors.tsv), 200 users,
  300 news, planted topic interests (dataset_converters/synth.py).
* `mind_dataset`: `(data_path, "mind")` for that data converted with the defaults (empty histories kept);
  load it with `Config(model=..., dataset="mind", config_file_list=[MIND_YAML], config_dict={"data_path": data_path})`.
* `mind_dataset_no_empty`: the same converted with `--empty-history drop` (for SASRec/GRU4Rec, which crash on an
  empty history).
* `synth_goodreads_raw`, `goodreads_dataset`, `goodreads_dataset_no_empty`: the same for Goodreads.
All are session-scoped and read-only: copy them before modifying.
"""
import os

import pytest
import torch

torch.set_num_threads(1)  # the test machine is small and shared

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIND_YAML = os.path.join(REPO_ROOT, "properties", "dataset", "mind.yaml")
GOODREADS_YAML = os.path.join(REPO_ROOT, "properties", "dataset", "goodreads.yaml")
MODEL_YAML = os.path.join(REPO_ROOT, "properties", "model", "EmbSum.yaml")
# The EmbSum every test trains: a 1-layer T5 built from scratch with a tokenizer trained on the item text (offline,
# seconds per epoch). One vocabulary size for all tests: the tokenizer is cached beside the shared data.
TINY_EMBSUM = {
    "plm_init": "scratch",
    "plm_config": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16},
    "tokenizer_vocab_size": 300,
    "upe_codes": 4,
    "cpe_codes": 2,
    "grad_accum_steps": 1,  # a step per (small) test batch, not auto's effective batch of 128: fewer epochs learn
    "show_progress": False,
}


@pytest.fixture(scope="session")
def synth_mind_raw(tmp_path_factory):
    from dataset_converters.synth import synth_mind

    folder = tmp_path_factory.mktemp("synth_mind_raw")
    synth_mind(folder, users=200, items=300, seed=0)
    return str(folder)


def _convert_mind(tmp_path_factory, raw, **options):
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind

    data_path = tmp_path_factory.mktemp("mind_data")
    convert_mind(raw, data_path, ConvertOptions(name="mind", **options))
    return str(data_path), "mind"


@pytest.fixture(scope="session")
def mind_dataset(tmp_path_factory, synth_mind_raw):
    return _convert_mind(tmp_path_factory, synth_mind_raw)


@pytest.fixture(scope="session")
def mind_dataset_no_empty(tmp_path_factory, synth_mind_raw):
    return _convert_mind(tmp_path_factory, synth_mind_raw, empty_history="drop")


@pytest.fixture(scope="session")
def synth_goodreads_raw(tmp_path_factory):
    from dataset_converters.synth import synth_goodreads

    folder = tmp_path_factory.mktemp("synth_goodreads_raw")
    synth_goodreads(folder, users=200, items=300, seed=0)
    return str(folder)


def _convert_goodreads(tmp_path_factory, raw, **options):
    from dataset_converters.goodreads import convert_goodreads
    from dataset_converters.impressions import ConvertOptions

    data_path = tmp_path_factory.mktemp("goodreads_data")
    convert_goodreads(raw, data_path, ConvertOptions(name="goodreads", **options))
    return str(data_path), "goodreads"


@pytest.fixture(scope="session")
def goodreads_dataset(tmp_path_factory, synth_goodreads_raw):
    return _convert_goodreads(tmp_path_factory, synth_goodreads_raw)


@pytest.fixture(scope="session")
def goodreads_dataset_no_empty(tmp_path_factory, synth_goodreads_raw):
    return _convert_goodreads(tmp_path_factory, synth_goodreads_raw, empty_history="drop")
# The content baselines (NAML, NRMS, Fastformer, CAUM, MINS) every test trains: small widths, a high learning rate.
TINY_CONTENT = {
    "word_embedding_size": 32,
    "attention_heads": 4,
    "attention_head_size": 8,
    "query_dim": 16,
    "hidden_size": 32,  # Fastformer
    "cnn_filters": 32,  # NAML, CAUM
    "category_embedding_size": 16,
    "news_embedding_size": 32,  # CAUM
    "user_attention_heads": 4,  # CAUM
    "user_attention_hidden": [32, 16],  # CAUM
    "entity_attention_heads": 2,  # CAUM
    "entity_attention_head_size": 8,  # CAUM
    "gru_channels": 4,  # MINS
    "learning_rate": 0.01,
    "train_batch_size": 32,
    "show_progress": False,
}


def assert_checkpoint_round_trip(config, net, train, valid, path, rows=None):
    """One optimizer step on ``net``, a checkpoint written to ``path`` and loaded back (model rebuilt from its
    config): the loaded model scores the first validation batch (its first ``rows`` rows) as ``net`` does."""
    from recbole.utils import get_trainer

    from recbole_embsum import checkpoint

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.optimizer.zero_grad()
    loss = net.calculate_loss(next(iter(train)))
    (sum(loss) if isinstance(loss, tuple) else loss).backward()
    trainer.optimizer.step()
    checkpoint.save(checkpoint.model_checkpoint(net, config), path)
    _, loaded, *_ = checkpoint.load_data_and_model(path)
    batch = next(iter(valid))[0][:rows]
    net.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(batch), net.predict(batch))


def build_model(model, data_path, dataset, yaml, settings):
    """A RecBole Config of ``model`` on ``<data_path>/<dataset>`` (``yaml`` + ``settings``, state ERROR), its data
    loaders and the model, seeded as RecBole's quick start seeds them: ``(config, net, (train, valid, test))``."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_seed

    config = Config(model=model, dataset=dataset, config_file_list=[yaml],
                    config_dict={"data_path": data_path, "state": "ERROR", **settings})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(model)(config, train._dataset)
    return config, net, (train, valid, test)
