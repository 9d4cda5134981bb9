"""Each RecBole workaround in recbole_embsum.compat: still needed (upstream behaviour) and still working (ours)."""
import logging
import os
import pickle
import types

import pytest
import recbole.config.configurator
import recbole.quick_start
import recbole.quick_start.quick_start
import recbole.trainer.trainer
import recbole.utils
import recbole.utils.utils
import torch
from recbole.config import Config
import recbole.data
import recbole.data.dataloader.abstract_dataloader
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (installs the workarounds)
from recbole_embsum import compat
from recbole_embsum.compact_store import history_lengths


# --- unknown model names ---------------------------------------------------------------------------------------------
def test_recbole_alone_reports_a_missing_lightgbm_for_an_unknown_model():
    # Needed: upstream get_model falls through to exlib_recommender, whose import needs lightgbm.
    with pytest.raises(ModuleNotFoundError, match="lightgbm|xgboost"):
        compat._recbole_get_model("NoSuchModel")


@pytest.mark.parametrize("typo, suggestion", [("SASRek", "SASRec"), ("sasrec", "SASRec"), ("Embsum", "EmbSum"),
                                             ("BRP", "BPR"), ("pop", "Pop")])
def test_unknown_model_error_is_one_line_with_close_class_names(typo, suggestion):
    with pytest.raises(compat.UnknownModelError) as error:
        recbole.utils.get_model(typo)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"Unknown model '{typo}': did you mean ")
    assert suggestion in message.split("did you mean ")[1].split("?")[0].replace(",", " ").split()


def test_recbole_alone_fails_on_a_wrong_case_name_with_an_attribute_error():
    # Needed: the module sasrec.py is found for "sasrec", then getattr(module, "sasrec") fails.
    with pytest.raises(AttributeError):
        compat._recbole_get_model("sasrec")


def test_known_model_names_are_class_names_of_recbole_and_ours():
    names = compat.known_model_names()
    assert {"SASRec", "GRU4Rec", "BPR", "Pop", "EmbSum", "DeepFM", "LightGBM"} <= set(names)
    assert "sasrec" not in names


def test_every_binding_of_get_model_is_patched_and_known_models_still_resolve():
    for module in compat.GET_MODEL_BINDINGS:
        assert module.get_model is compat.get_model, module.__name__
    assert recbole.utils.get_model("SASRec").__name__ == "SASRec"
    assert recbole.utils.get_model("BPR").__name__ == "BPR"
    with pytest.raises(ValueError, match="Unknown model 'Nope'"):
        Config(model="Nope", dataset="ml-100k")


# --- RecBole checkpoints need the full unpickler ---------------------------------------------------------------------
class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))

    def other_parameter(self):
        return {}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # RecBole saves with protocol 4
def test_recbole_own_checkpoints_need_the_full_unpickler(tmp_path):
    # Needed: RecBole's own _save_checkpoint pickles its Config, which torch.load(weights_only=True) refuses.
    config = Config(model="BPR", dataset="ml-100k", config_dict={"data_path": str(tmp_path)})
    model = _Tiny()
    trainer = types.SimpleNamespace(config=config, cur_step=0, best_valid_score=0.0, model=model,
                                    optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                    saved_model_file=str(tmp_path / "BPR-recbole.pth"), logger=logging.getLogger())
    compat._recbole_trainer["_save_checkpoint"](trainer, 0, verbose=False)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(trainer.saved_model_file, weights_only=True)


def test_recbole_trainer_writes_and_reloads_plain_checkpoints(mind_dataset, tmp_path, monkeypatch):
    # Works: BPR under RecBole's plain Trainer saves plain data, evaluate() reloads it weights-only, and the
    # environment switch that would allow the full unpickler is never set.
    monkeypatch.chdir(tmp_path)
    data_path, name = mind_dataset
    config = Config(model="BPR", dataset=name, config_dict={
        "data_path": data_path, "checkpoint_dir": str(tmp_path / "saved"), "epochs": 1, "show_progress": False,
        "metrics": ["AUC"], "valid_metric": "AUC"})
    init_seed(0, True)
    train, valid, test = data_preparation(config, create_dataset(config))
    model = get_model("BPR")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "BPR")(config, model)
    assert type(trainer) is recbole.trainer.trainer.Trainer
    trainer.fit(train, valid, saved=True)
    saved = torch.load(trainer.saved_model_file, weights_only=True)
    assert saved["config"]["model"] == "BPR" and saved["settings"]["dataset"] == name
    trained = trainer.evaluate(test, load_best_model=False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    assert trainer.evaluate(test, load_best_model=True) == trained
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") is None
    assert recbole.quick_start.load_data_and_model is recbole.quick_start.quick_start.load_data_and_model


def test_patches_are_idempotent():
    evaluate = recbole.trainer.trainer.Trainer.evaluate
    compat.apply()
    recbole_embsum.register()
    assert recbole.trainer.trainer.Trainer.evaluate is evaluate


# --- default negative sampling for sequential CE models ---------------------------------------------------------------
def test_recbole_alone_refuses_sasrec_with_its_own_default_sampling(tmp_path, monkeypatch):
    # Needed: without the default, Config raises for SASRec (CE loss) on any dataset that keeps overall.yaml's sampling.
    monkeypatch.setattr(compat, "default_negative_sampling", lambda config: None)
    with pytest.raises(ValueError, match="should be None when the loss_type is CE"):
        Config(model="SASRec", dataset="mind", config_dict={"data_path": str(tmp_path)})


def test_sampling_default_fits_each_model_and_never_overrides_the_user(tmp_path):
    def sampling(model, **extra):
        config = Config(model=model, dataset="mind", config_dict={"data_path": str(tmp_path), **extra})
        return config["train_neg_sample_args"]["distribution"]

    assert sampling("SASRec") == "none"  # CE over all items
    assert sampling("BPR") == "uniform"  # pairwise: one sampled negative per click
    assert sampling("EmbSum") == "none"  # the impression's own negatives (EmbSum.yaml)
    assert sampling("SASRec", loss_type="BPR") == "uniform"
    user_choice = {"distribution": "popularity", "sample_num": 2, "alpha": 1.0, "dynamic": False, "candidate_num": 0}
    assert sampling("BPR", train_neg_sample_args=user_choice) == "popularity"


# --- empty histories --------------------------------------------------------------------------------------------------
def _load(model, mind_dataset, **extra):
    from recbole.data import create_dataset

    data_path, name = mind_dataset
    return create_dataset(Config(model=model, dataset=name, config_dict={"data_path": data_path, **extra}))


def test_sequential_baseline_with_empty_histories_stops_with_a_clear_error(mind_dataset):
    with pytest.raises(ValueError, match=r"rows of dataset 'mind' .* empty item_id_list; SASRec cannot score them"):
        _load("SASRec", mind_dataset)


def test_drop_empty_history_leaves_the_same_rows_for_every_model(mind_dataset):
    kept = _load("EmbSum", mind_dataset)  # EmbSum reads empty histories: nothing dropped by default
    empty = int((history_lengths(kept) == 0).sum())
    assert empty > 0, "the synthetic dataset should contain users without history"
    sizes = {}
    for model in ("SASRec", "BPR", "EmbSum"):
        dataset = _load(model, mind_dataset, drop_empty_history=True)
        assert int((history_lengths(dataset) == 0).sum()) == 0
        sizes[model] = dataset.file_size_list
    assert sizes["SASRec"] == sizes["BPR"] == sizes["EmbSum"]
    assert sum(sizes["EmbSum"]) == len(kept.inter_feat) - empty
    # RecBole alone crashes on them inside the model; needed while SASRec reads position item_length - 1.
    from recbole.model.sequential_recommender.sasrec import SASRec

    assert "item_seq_len - 1" in __import__("inspect").getsource(SASRec.forward)


# --- anomaly detection ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_importing_recbole_models_switches_on_anomaly_detection_and_apply_switches_it_off():
    code = (
        "import torch, recbole.model.sequential_recommender; a = torch.is_anomaly_enabled(); "
        "import recbole_embsum; print(a, torch.is_anomaly_enabled())"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["True", "False"], result.stderr[-2000:]


@pytest.mark.slow
def test_ray_import_warning_is_needed_and_silenced():
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-c", "import recbole.quick_start"], capture_output=True, text=True,
                           timeout=300)
    assert "pkg_resources is deprecated" in plain.stderr  # needed while ray 2.6.3 imports pkg_resources
    ours = subprocess.run([sys.executable, "-c", "import recbole_embsum"], capture_output=True, text=True, timeout=300)
    assert ours.returncode == 0 and "pkg_resources is deprecated" not in ours.stderr


# --- ensure_dir race --------------------------------------------------------------------------------------------------
def test_recbole_ensure_dir_races_and_ours_does_not(tmp_path, monkeypatch):
    import importlib

    target = tmp_path / "log"
    # Needed: RecBole checks, then creates; a directory appearing in between (another rank) raises.
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda path: False if str(path) == str(target) else real_exists(path))
    target.mkdir()
    with pytest.raises(FileExistsError):
        compat._recbole_ensure_dir(str(target))
    compat.ensure_dir(str(target))  # exists already: fine
    for module_name in compat.ENSURE_DIR_BINDINGS:
        assert importlib.import_module(module_name).ensure_dir is compat.ensure_dir, module_name


# --- RecBole unpickles cached datasets / dataloaders it finds in checkpoint_dir ------------------------------------------
@pytest.fixture
def planted_caches(mind_dataset, tmp_path):
    """A BPR config whose checkpoint_dir holds a dataset cache and a dataloader cache that are crafted pickles."""
    from test_checkpoint import Payload

    data_path, name = mind_dataset
    saved = tmp_path / "saved"
    saved.mkdir()
    marker = tmp_path / "MARKER"
    for file in (f"{name}-Dataset.pth", f"{name}-for-BPR-dataloader.pth"):
        (saved / file).write_bytes(pickle.dumps(Payload(marker), protocol=2))
    config = Config(model="BPR", dataset=name, config_dict={"data_path": data_path, "checkpoint_dir": str(saved)})
    return config, marker


def test_recbole_alone_unpickles_a_dataset_cache_it_finds(planted_caches):
    # Needed: RecBole's create_dataset runs whatever the cache file names, without being asked to use caches.
    config, marker = planted_caches
    with pytest.raises(AttributeError):  # the payload ran, then RecBole found no Dataset in it
        compat._recbole_create_dataset(config)
    assert marker.exists()


def test_caches_are_ignored_unless_the_run_opts_into_them(planted_caches, caplog):
    config, marker = planted_caches
    with caplog.at_level(logging.WARNING):
        dataset = recbole.data.create_dataset(config)
        train, _, _ = data_preparation(config, dataset)
    assert not marker.exists() and len(train) > 0
    assert "RecBole's dataset cache is a pickle, read only with save_dataset=True" in caplog.text
    assert "RecBole's dataloader cache is a pickle, read only with save_dataloaders=True" in caplog.text
    assert config["dataset_save_path"] is None
    assert recbole.quick_start.quick_start.create_dataset is compat._create_dataset


@pytest.mark.parametrize("model_name, attribute", [("EASE", "item_similarity"), ("ItemKNN", "w")])
def test_models_with_numpy_and_sparse_state_reload_from_plain_checkpoints(mind_dataset, tmp_path, monkeypatch,
                                                                          model_name, attribute):
    import numpy as np
    import scipy.sparse

    monkeypatch.chdir(tmp_path)
    data_path, name = mind_dataset
    config = Config(model=model_name, dataset=name, config_dict={
        "data_path": data_path, "checkpoint_dir": str(tmp_path / "saved"), "epochs": 1, "show_progress": False,
        "metrics": ["AUC"], "valid_metric": "AUC"})
    init_seed(0, True)
    train, valid, test = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.fit(train, valid, saved=True)
    torch.load(trainer.saved_model_file, weights_only=True)
    trained = trainer.evaluate(test, load_best_model=False)
    original = getattr(model, attribute)
    setattr(model, attribute, original * 0)
    assert trainer.evaluate(test, load_best_model=True) == trained
    reloaded = getattr(model, attribute)
    assert type(reloaded) is type(original)
    if scipy.sparse.issparse(original):
        assert (reloaded != original).nnz == 0
    else:
        np.testing.assert_array_equal(reloaded, original)


def test_activation_checkpointing_uses_the_current_transformers_name_without_its_deprecation_warning():
    import warnings

    from transformers import T5Config, T5ForConditionalGeneration

    def tiny():
        return T5ForConditionalGeneration(T5Config(vocab_size=20, d_model=8, d_ff=16, d_kv=4, num_heads=2,
                                                   num_layers=1))

    # Needed: this transformers warns on the old name (the test fails once the old name stops warning or goes).
    with pytest.warns(FutureWarning, match="gradient_checkpointing_enable"):
        tiny().gradient_checkpointing_enable()
    model = tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.enable_activation_checkpointing(model)
    assert model.encoder.gradient_checkpointing and model.decoder.gradient_checkpointing


# --- warnings from code that is not ours ------------------------------------------------------------------------------
def test_each_known_warning_is_still_emitted_upstream_and_silenced_only_for_its_source():
    import inspect
    import warnings

    import numpy as np
    import pandas as pd
    import recbole.data.dataset.dataset
    import recbole.utils.logger

    # Needed: the upstream code is still there and still warns.
    assert "amp.GradScaler(" in inspect.getsource(recbole.trainer.trainer.Trainer._train_epoch)
    assert "inplace=True" in inspect.getsource(recbole.data.dataset.dataset.Dataset._fill_nan)
    assert "basicConfig" in inspect.getsource(recbole.utils.logger.init_logger)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.amp.GradScaler(enabled=False)
        getattr(np, "bool8")
        frame = pd.DataFrame({"a": [1.0, None]})
        frame["a"].fillna(0, inplace=True)
    import re

    sources = {"ray.tune.logger.tensorboardx", "recbole.trainer.trainer", "recbole.data.dataset.dataset"}
    upstream = {}  # source module -> (the upstream warning, its filter)
    for spec in compat.KNOWN_WARNINGS[:3]:
        (warning,) = [w for w in caught if re.match(spec["message"], str(w.message))]
        assert issubclass(warning.category, spec["category"])
        upstream[spec["module"].replace("\\", "")] = (str(warning.message), spec)
    assert set(upstream) == sources
    # Working: under -W error, each message raised from its source module is ignored; from elsewhere it still fails.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.quiet_known_warnings()
        for module, (message, spec) in upstream.items():
            warnings.warn_explicit(message, spec["category"], "x.py", 1, module=module)
            with pytest.raises(spec["category"]):
                warnings.warn_explicit(message, spec["category"], "x.py", 1, module="recbole_embsum.anything")
        warnings.warn_explicit("unclosed file <_io.TextIOWrapper name='log/EmbSum/run.log' mode='a' encoding='UTF-8'>",
                               ResourceWarning, "x.py", 1, module="logging")


# --- one dataset per machine under DDP; row indices; vocabulary keys (section 11) -----------------------------------
def test_recbole_dataloaders_list_their_row_indices_and_ours_hold_a_range(mind_dataset, monkeypatch):
    data_path, name = mind_dataset
    config = Config(model="EmbSum", dataset=name, config_dict={"data_path": data_path, "seed": 0})

    def batches(loaders):  # eval loaders yield (interaction, ...) tuples
        return [[{k: v.clone() for k, v in (batch[0] if isinstance(batch, tuple) else batch).interaction.items()}
                 for batch in loader] for loader in loaders]

    ours = data_preparation(config, create_dataset(config))
    assert all(type(loader.sampler.data_source) is range for loader in ours)
    # Needed: RecBole's own __init__ hands torch a list of every row index (~36 bytes a row).
    monkeypatch.setattr(recbole.data.dataloader.abstract_dataloader.AbstractDataLoader, "__init__",
                        compat._recbole_dataloader_init)
    theirs = data_preparation(config, create_dataset(config))
    assert all(type(loader.sampler.data_source) is list for loader in theirs)
    init_seed(0, True)
    ours_batches = batches(ours)
    init_seed(0, True)
    theirs_batches = batches(theirs)
    assert len(ours_batches[0]) > 1
    for mine, upstream in zip(ours_batches, theirs_batches):  # same order, same rows (shuffled train included)
        assert len(mine) == len(upstream)
        for a, b in zip(mine, upstream):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_vocabulary_keys_are_plain_strings_shared_by_aliases_and_look_up_alike(mind_dataset):
    dataset = _load("EmbSum", mind_dataset)
    token_id = dataset.field2token_id
    assert all(type(token) is str for mapping in token_id.values() for token in mapping)
    assert token_id["item_id"] is token_id["item_id_list"] is token_id["neg_items"]
    tokens = dataset.field2id_token["item_id"][1:6]  # numpy str_ tokens, as RecBole's own code passes them
    assert list(dataset.token2id("item_id", tokens)) == [1, 2, 3, 4, 5]
    assert dataset.token2id("user_id", str(dataset.field2id_token["user_id"][3])) == 3
    # Needed: RecBole builds the dicts from a numpy unicode array, so its keys are numpy.str_ scalars.
    import numpy as np

    upstream = {t: i for i, t in enumerate(np.array(["[PAD]", "N1"]))}
    assert all(type(token) is np.str_ for token in upstream)


def test_a_pickled_store_maps_its_files_again_instead_of_carrying_them(mind_dataset):
    from dataset_converters.store import open_store

    data_path, name = mind_dataset
    store = open_store(os.path.join(data_path, name), name)
    blob = pickle.dumps(store)
    assert len(blob) < 1000 < store.history.nbytes
    copy = pickle.loads(blob)
    assert copy.path == store.path and isinstance(copy.history, __import__("numpy").memmap)
    assert (copy.history == store.history).all() and (copy.items == store.items).all()
