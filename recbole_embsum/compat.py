"""Every workaround of a RecBole 1.2.1 / torch behaviour lives here, each named and tested (tests/test_compat.py).

RecBole 1.2.1 is no longer released; these patches change only the behaviour each comment names, and each test fails
when the workaround stops being needed (upstream fixed) or stops working (upstream moved the code).

The torch.distributed overrides (gloo on CPU, evaluation gathered across ranks, rank-0 checkpoints) live beside the
DDP helpers they use, in ``distributed.py``, with the same rule: each names the RecBole behaviour it replaces.

Not patched on purpose: numpy 2 and pandas 3 breakages (``np.float_`` in ``Config``, copy-on-write ``fillna(inplace)``,
``agg(len)``) are avoided by the pins in setup.py rather than by rewriting RecBole's data pipeline.
"""
import difflib
import functools
import importlib.util
import os
import warnings

import torch

# --- 0. ray 2.6.3 warns on import ------------------------------------------------------------------------------------
# recbole.quick_start imports ray, whose ray/_private/parameter.py imports pkg_resources; setuptools (< 81, pinned for
# that very import) then prints a deprecation UserWarning on every run and every `recbole-embsum --help`. Silenced for
# that one message; this module must be imported before recbole.quick_start (recbole_embsum/__init__.py does so).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API", category=UserWarning)


# --- 0b. Other warnings from code that is not ours, seen on every demo / compare run ---------------------------------
# Each is silenced for its one message from its one module; anything else still shows.
KNOWN_WARNINGS = (
    # ray/tune/logger/tensorboardx.py (imported by recbole.quick_start) reads np.bool8 at import (numpy 1.24+).
    dict(message=r"`np\.bool8` is a deprecated alias", category=DeprecationWarning,
         module=r"ray\.tune\.logger\.tensorboardx"),
    # recbole/trainer/trainer.py Trainer._train_epoch builds torch.cuda.amp.GradScaler, deprecated in torch 2.4 (our
    # EmbSumTrainer uses torch.amp.GradScaler; this is every RecBole baseline's epoch).
    dict(message=r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", category=FutureWarning,
         module=r"recbole\.trainer\.trainer"),
    # recbole/data/dataset/dataset.py Dataset._fill_nan calls feat[field].fillna(..., inplace=True): pandas 2.2 warns
    # that this chained assignment stops working under copy-on-write (pandas 3, excluded by setup.py's pin).
    dict(message=r"A value is trying to be set on a copy of a DataFrame or Series through chained assignment",
         category=FutureWarning, module=r"recbole\.data\.dataset\.dataset"),
    # recbole/utils/logger.py init_logger opens a log FileHandler and passes it to logging.basicConfig, which ignores
    # it once the root logger has handlers (every run after the first in one process): the file is never closed.
    dict(message=r"unclosed file <_io\.TextIOWrapper name='[^']*\.log' mode='a'", category=ResourceWarning),
)


def quiet_known_warnings():
    """Install the filters of :data:`KNOWN_WARNINGS` (in front of any others, e.g. ``-W error``)."""
    for spec in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", **spec)


quiet_known_warnings()

import recbole.config.configurator  # noqa: E402
import recbole.data.dataset.dataset  # noqa: E402
import recbole.data.dataset.sequential_dataset  # noqa: E402
import recbole.quick_start  # noqa: E402
import recbole.quick_start.quick_start  # noqa: E402
import recbole.trainer.trainer  # noqa: E402
import recbole.utils  # noqa: E402
import recbole.utils.utils  # noqa: E402
from recbole.data.interaction import Interaction  # noqa: E402
from recbole.utils import FeatureType  # noqa: E402

from recbole_embsum import compact_store, shared_dataset  # noqa: E402

# The packages RecBole's get_model searches, in its own order (recbole/utils/utils.py:get_model).
MODEL_SUBMODULES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)
# Models in exlib_recommender, whose package imports lightgbm and xgboost at import time.
EXLIB_MODELS = ("lightgbm", "xgboost")


# --- 1. Unknown model names ------------------------------------------------------------------------------------------
# RecBole's get_model tries `recbole.model.<submodule>.<name>` for each submodule; for a name it does not know it
# reaches `exlib_recommender`, whose __init__ imports lightgbm/xgboost, so a typo surfaces as
# "ModuleNotFoundError: No module named 'lightgbm'"; a name in the wrong case ("sasrec") finds the module, then fails
# with AttributeError. Ours raises UnknownModelError with the closest class names (difflib over RecBole's models and
# registered ones such as EmbSum). get_model is bound by name in four modules, all rebound here.
GET_MODEL_BINDINGS = (
    recbole.utils,
    recbole.utils.utils,
    recbole.config.configurator,
    recbole.quick_start.quick_start,
)
_recbole_get_model = recbole.utils.utils.get_model


def _model_search_paths(model_name):
    return [f"recbole.model.{submodule}.{model_name.lower()}" for submodule in MODEL_SUBMODULES]


class UnknownModelError(ValueError):
    """A model name RecBole cannot find; the message is one line with the closest known names."""


def known_model_names():
    """Class names RecBole's get_model can return: RecBole's models and registered ones (EmbSum), sorted."""
    import inspect
    import pkgutil
    import sys

    names = {"LightGBM", "XGBoost"}  # exlib_recommender, whose package needs lightgbm / xgboost to import
    for submodule in MODEL_SUBMODULES[:-1]:
        prefix = f"recbole.model.{submodule}."
        package = importlib.import_module(prefix[:-1])
        modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
        modules.update(key[len(prefix):] for key in sys.modules if key.startswith(prefix))
        for module_name in modules:
            try:
                module = importlib.import_module(prefix + module_name)
            except ImportError:  # a model whose optional dependency is missing is still not a suggestion
                continue
            names.update(attr for attr, value in vars(module).items()
                         if attr.lower() == module_name and inspect.isclass(value))
    return sorted(names)


def unknown_model_message(model_name):
    """One line: the name is unknown, and the closest known model names (case-insensitive match)."""
    known = known_model_names()
    by_lower = {name.lower(): name for name in known}
    close = [by_lower[name] for name in difflib.get_close_matches(model_name.lower(), list(by_lower), n=3)]
    if close:
        hint = "did you mean " + (close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}") + "?"
    else:
        hint = f"not one of the {len(known)} models RecBole knows here (its own and EmbSum)"
    return f"Unknown model '{model_name}': {hint} (model names are case-sensitive)"


def check_model_name(model_name):
    """Raise UnknownModelError unless RecBole's get_model finds a class of exactly this name."""
    import inspect

    if model_name.lower() in EXLIB_MODELS:
        return
    for path in _model_search_paths(model_name)[:-1]:
        if importlib.util.find_spec(path) is not None:
            if inspect.isclass(getattr(importlib.import_module(path), model_name, None)):
                return
            break  # RecBole's get_model stops at the first module found, then needs the exact class name
    raise UnknownModelError(unknown_model_message(model_name))


@functools.wraps(_recbole_get_model)
def get_model(model_name):
    """RecBole's get_model, with a one-line error and close matches for a name it cannot find."""
    check_model_name(model_name)
    return _recbole_get_model(model_name)


def install_model_lookup():
    for module in GET_MODEL_BINDINGS:
        module.get_model = get_model


# --- 2. RecBole checkpoints need the full unpickler ------------------------------------------------------------------
# RecBole's Trainer._save_checkpoint pickles its whole Config (enums, torch.device, protocol-4 FRAME opcodes) into
# every checkpoint, so reading one back (Trainer.evaluate(load_best_model=True), Trainer.resume_checkpoint,
# quick_start.load_data_and_model) takes torch.load(weights_only=False): torch >= 2.6 refuses such files by default,
# and allowing them would run whatever code a crafted checkpoint names. Instead every RecBole trainer writes the
# plain-data format of checkpoint.py (config as plain values, random states for an exact resume), and those readers
# use torch.load(weights_only=True) through checkpoint.load; fit() also resumes from the `resume` option.
_recbole_trainer = {name: getattr(recbole.trainer.trainer.Trainer, name)
                    for name in ("_save_checkpoint", "resume_checkpoint", "evaluate", "fit")}


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    from recbole_embsum import checkpoint

    checkpoint.save_trainer(self, epoch, verbose=verbose, **kwargs)


def _resume_checkpoint(self, resume_file):
    from recbole_embsum import checkpoint

    checkpoint.resume(self, resume_file)


@functools.wraps(_recbole_trainer["evaluate"])
def _evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
    from recbole_embsum import checkpoint

    if eval_data and load_best_model:
        checkpoint.load_best(self, model_file)
    return _recbole_trainer["evaluate"](self, eval_data, load_best_model=False, show_progress=show_progress)


@functools.wraps(_recbole_trainer["fit"])
def _fit(self, train_data, *args, **kwargs):
    from recbole_embsum import checkpoint

    checkpoint.prepare_fit(self, train_data)
    return _recbole_trainer["fit"](self, train_data, *args, **kwargs)


def _load_data_and_model(model_file):
    from recbole_embsum import checkpoint

    return checkpoint.load_data_and_model(model_file)


for _patch in (_save_checkpoint, _resume_checkpoint, _evaluate, _fit):
    _patch._embsum_checkpoints = True  # functools.wraps carries it through later wrappers (distributed.py)


# RecBole also unpickles (full unpickler) a cached Dataset or split dataloaders whenever it finds one:
# create_dataset reads dataset_save_path or <checkpoint_dir>/<dataset>-<DatasetClass>.pth, data_preparation reads
# dataloaders_save_path or <checkpoint_dir>/<dataset>-for-<model>-dataloader.pth, on every run, whether or not the
# user asked for caches. They are Python objects, not plain data, so they stay pickles; they are read only when the
# run opts into RecBole's caches (save_dataset / save_dataloaders: True, i.e. caches the user writes); otherwise
# a file found there is ignored with a warning.
import recbole.data  # noqa: E402
import recbole.data.utils  # noqa: E402

_recbole_create_dataset = recbole.data.utils.create_dataset
_recbole_load_split_dataloaders = recbole.data.utils.load_split_dataloaders
CREATE_DATASET_BINDINGS = (recbole.data, recbole.data.utils, recbole.quick_start.quick_start)


@functools.wraps(_recbole_create_dataset)
def _create_dataset(config):
    if config["save_dataset"]:
        return _recbole_create_dataset(config)
    import glob

    found = glob.glob(os.path.join(glob.escape(config["checkpoint_dir"]), f'{glob.escape(config["dataset"])}-*.pth'))
    named = config["dataset_save_path"]
    for path in ([named] if named and os.path.exists(named) else []) + [p for p in found if "-for-" not in p]:
        _logger().warning(f"ignoring {path}: RecBole's dataset cache is a pickle, read only with save_dataset=True")
    saved = named
    config["dataset_save_path"] = os.path.join(config["checkpoint_dir"], f".no-cache-{os.getpid()}-{id(config)}")
    try:
        # finds no file there: builds the dataset from the atomic files (once per machine under DDP, section 11)
        return shared_dataset.create_dataset(config, _recbole_create_dataset)
    finally:
        config["dataset_save_path"] = saved


@functools.wraps(_recbole_load_split_dataloaders)
def _load_split_dataloaders(config):
    if config["save_dataloaders"]:
        return _recbole_load_split_dataloaders(config)
    default = os.path.join(config["checkpoint_dir"], f'{config["dataset"]}-for-{config["model"]}-dataloader.pth')
    path = config["dataloaders_save_path"] or default
    if os.path.exists(path):
        _logger().warning(f"ignoring {path}: RecBole's dataloader cache is a pickle, read only with "
                          f"save_dataloaders=True")
    return None


def _logger():
    import logging

    return logging.getLogger()


def install_cache_guard():
    for module in CREATE_DATASET_BINDINGS:
        module.create_dataset = _create_dataset
    recbole.data.utils.load_split_dataloaders = _load_split_dataloaders  # data_preparation looks it up by name


def install_checkpoint_loading():
    install_cache_guard()
    trainer_cls = recbole.trainer.trainer.Trainer
    if getattr(trainer_cls.fit, "_embsum_checkpoints", False):
        return
    trainer_cls._save_checkpoint = _save_checkpoint
    trainer_cls.resume_checkpoint = _resume_checkpoint
    trainer_cls.evaluate = _evaluate
    trainer_cls.fit = _fit
    recbole.quick_start.quick_start.load_data_and_model = _load_data_and_model
    recbole.quick_start.load_data_and_model = _load_data_and_model


# --- 3. Sequential CE models refuse RecBole's own default negative sampling --------------------------------------------
# overall.yaml samples one uniform negative per training row (what BPR and other pairwise models need), but Config
# raises "train_neg_sample_args [...] should be None when the loss_type is CE" for a sequential model trained with
# CE (SASRec, GRU4Rec, BERT4Rec ... by default), so `run_recbole --model=SASRec` fails unless the user turns sampling
# off by hand. Called at the end of Config._load_internal_config_dict (registry.py), it turns the *default* off for
# exactly those models, for models that declare `trains_on_negatives = False` (our Pop), and for models that draw their
# own negatives from the impression (`training_negatives = "impression"`: EmbSum and the content baselines, whose
# batches must be the clicks alone); a value the user set (yaml, config_dict, command line) is never touched.
def default_negative_sampling(config):
    """Set internal ``train_neg_sample_args`` to None for a sequential CE model the user left at RecBole's default."""
    from recbole.utils import ModelType

    if "train_neg_sample_args" in config.external_config_dict:
        return
    if getattr(config.model_class, "trains_on_negatives", True) is False:  # e.g. our Pop (section 7)
        config.internal_config_dict["train_neg_sample_args"] = None
        return
    if getattr(config.model_class, "training_negatives", None) == "impression":  # K drawn from neg_items per click
        config.internal_config_dict["train_neg_sample_args"] = None
        return
    if getattr(config.model_class, "type", None) != ModelType.SEQUENTIAL or hasattr(config.model_class, "input_type"):
        return
    loss_type = config.external_config_dict.get("loss_type", config.internal_config_dict.get("loss_type"))
    if loss_type == "CE":
        config.internal_config_dict["train_neg_sample_args"] = None


# --- 4. Sequential models crash on an empty history -------------------------------------------------------------------
# SASRec, GRU4Rec, ... read the last history position with gather_indexes(output, item_length - 1), so a row whose
# item_id_list is empty (a MIND user with no history) fails deep inside the model with "index -1 is out of bounds"
# (a device assert on GPU). After RecBole loads the benchmark files, `drop_empty_history: True` removes those rows
# for every model alike (so all are scored on the same rows); left False, a model that cannot read them stops at
# once with a clear error instead. Models that accept empty histories say so with `accepts_empty_history = True`.
_recbole_load_inter_feat = recbole.data.dataset.dataset.Dataset._load_inter_feat


def _drop_empty_history_rows(dataset, has_history):
    """Remove rows of ``dataset.inter_feat`` with an empty history, keeping ``file_size_list`` consistent."""
    if dataset.file_size_list is not None:
        bounds = [0]
        for size in dataset.file_size_list:
            bounds.append(bounds[-1] + size)
        dataset.file_size_list = [int(has_history[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]
    compact_store.keep_rows(dataset, has_history)
    return int((~has_history).sum())


@functools.wraps(_recbole_load_inter_feat)
def _load_inter_feat(dataset, token, dataset_path):
    store = compact_store.open_store(dataset_path, token)  # section 8: the compact history store (format 2)
    if store is not None:
        compact_store.load_inter_feat(dataset, token, dataset_path, store)
    else:
        _recbole_load_inter_feat(dataset, token, dataset_path)
        _check_inline_history(dataset, token, dataset_path)
    history_field = dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]
    if dataset.field2type.get(history_field) != FeatureType.TOKEN_SEQ:
        return
    has_history = compact_store.history_lengths(dataset) > 0
    if dataset.config["drop_empty_history"]:
        dropped = _drop_empty_history_rows(dataset, has_history)
        dataset.logger.info(f"drop_empty_history: left out {dropped} rows whose {history_field} is empty")
        return
    from recbole.utils import ModelType

    model_class = dataset.config.model_class  # the class Config resolved (also for a class passed directly)
    if model_class.type != ModelType.SEQUENTIAL or getattr(model_class, "accepts_empty_history", False):
        return
    empty = int((~has_history).sum())
    if empty:
        raise ValueError(
            f"{empty} rows of dataset '{token}' ({dataset_path}) have an empty {history_field}; "
            f"{dataset.config['model']} cannot score them (RecBole reads history position item_length - 1). "
            f"Set drop_empty_history=True to leave them out for every model (comparable numbers), or convert "
            f"with --empty-history drop."
        )


def install_empty_history_handling():
    recbole.data.dataset.dataset.Dataset._load_inter_feat = _load_inter_feat


# --- 5. RecBole turns on autograd anomaly detection for the whole process ---------------------------------------------
# recbole/model/sequential_recommender/sine.py runs torch.autograd.set_detect_anomaly(True) at import, and importing
# any sequential model imports it: every backward pass of every model then checks for NaNs (about 40% of an EmbSum
# step on CPU). Anomaly detection is a debugging switch; turn it back off (a user may still turn it on explicitly).
def disable_anomaly_detection():
    import recbole.model.sequential_recommender  # noqa: F401  (the import that switches it on)
    import torch

    torch.autograd.set_detect_anomaly(False)


# --- 6. ensure_dir races between DDP ranks ---------------------------------------------------------------------------
# recbole.utils.ensure_dir does `if not os.path.exists(d): os.makedirs(d)`; two ranks starting together both see no
# ./log (or checkpoint_dir) and the slower one dies with FileExistsError. Rebound in every module that imported it.
ENSURE_DIR_BINDINGS = ("recbole.utils", "recbole.utils.utils", "recbole.utils.logger", "recbole.trainer.trainer",
                       "recbole.data.dataset.dataset", "recbole.data.utils")
_recbole_ensure_dir = recbole.utils.utils.ensure_dir


def ensure_dir(dir_path):
    """Create ``dir_path`` (and parents) unless it exists; safe when several processes do it at once."""
    os.makedirs(dir_path, exist_ok=True)


def install_race_free_ensure_dir():
    for module_name in ENSURE_DIR_BINDINGS:
        importlib.import_module(module_name).ensure_dir = ensure_dir


# --- 7. Pop counts what was not clicked, and counts a batch's duplicates once ------------------------------------------
# RecBole's Pop (recbole/model/general_recommender/pop.py) does `item_cnt[item, :] = item_cnt[item, :] + 1` for every
# training row: (a) it ignores the label, so under RecBole's default train_neg_sample_args (uniform, 1 negative per
# row, which the pointwise TrainDataLoader appends as label-0 rows) every sampled negative is counted as a click;
# (b) the update is a fancy-indexed assignment, so an item appearing several times in one batch gains only 1.
# The methods below replace those of RecBole's own Pop class, in place (so `model: Pop`, get_model("Pop") and a
# `from recbole.model.general_recommender import Pop` made before or after this import all get the fixed class):
# label-1 rows are counted with bincount, so every item's score is exactly its number of training clicks, and Pop asks
# for no sampled negatives (`trains_on_negatives = False`, read by default_negative_sampling above).
from recbole.model.general_recommender.pop import Pop  # noqa: E402

RECBOLE_POP_METHODS = Pop.__dict__.get("_recbole_methods") or {
    name: Pop.__dict__[name] for name in ("__init__", "calculate_loss", "predict", "full_sort_predict")
}


class ClickCountingPop:
    """The methods installed on RecBole's Pop: rank every item by its number of training clicks (rows labelled 1),
    duplicates included. ``predict`` and ``full_sort_predict`` return that count itself (RecBole's divide by the
    maximum count, which changes no ranking); rows without a label field all count as clicks."""

    trains_on_negatives = False  # no sampled negatives: they would only be skipped (label 0)

    def __init__(self, config, dataset):
        RECBOLE_POP_METHODS["__init__"](self, config, dataset)
        self.LABEL = config["LABEL_FIELD"]

    def calculate_loss(self, interaction):
        items = interaction[self.ITEM_ID]  # [B]
        if self.LABEL in interaction:
            items = items[interaction[self.LABEL] > 0.5]  # clicks only
        counts = torch.bincount(items, minlength=self.n_items).to(self.item_cnt)  # [n_items], duplicates counted
        self.item_cnt += counts[:, None]  # item_cnt: [n_items, 1]
        self.max_cnt = torch.max(self.item_cnt, dim=0)[0]
        return torch.nn.Parameter(torch.zeros(1, device=self.device))

    def predict(self, interaction):
        return self.item_cnt[interaction[self.ITEM_ID], 0].to(torch.float64)  # [B] training clicks

    def full_sort_predict(self, interaction):
        batch_user_num = interaction[self.USER_ID].shape[0]
        return self.item_cnt[:, 0].to(torch.float64).repeat(batch_user_num)  # [B * n_items]


def install_click_counting_pop():
    """Replace RecBole's Pop methods by ClickCountingPop's (idempotent)."""
    Pop._recbole_methods = RECBOLE_POP_METHODS
    for name in (*RECBOLE_POP_METHODS, "trains_on_negatives"):
        setattr(Pop, name, ClickCountingPop.__dict__[name])
    Pop.__doc__ = ClickCountingPop.__doc__


# --- 9. RecBole's seq_len keeps the oldest history items; SASRec needs the width <= MAX_ITEM_LIST_LENGTH --------------
# Dataset._load_feat cuts a token_seq field to `seq[:seq_len]`, the *oldest* items of our chronological histories, and
# otherwise pads item_id_list to the widest stored history; SASRec's position embedding has MAX_ITEM_LIST_LENGTH rows,
# so files converted at width 60 read with MAX_ITEM_LIST_LENGTH 20 fail with "IndexError: index out of range in self".
# Here the history field is cut from the right instead: every model reads the most recent
# min(seq_len[item_id_list], MAX_ITEM_LIST_LENGTH) items of each stored history, and the padded width is that many.
# This is the inline layout (format 1); compact_store.StoreView applies the same recent_history_length (format 2).
_recbole_load_feat = recbole.data.dataset.dataset.Dataset._load_feat


@functools.wraps(_recbole_load_feat)
def _load_feat_recent_history(dataset, filepath, source):
    config = dataset.config
    history_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    keep = compact_store.recent_history_length(config)
    seq_len = config["seq_len"]
    if seq_len and history_field in seq_len:  # RecBole must not cut it from the left first
        config.final_config_dict["seq_len"] = {field: n for field, n in seq_len.items() if field != history_field}
    try:
        frame = _recbole_load_feat(dataset, filepath, source)
    finally:
        config.final_config_dict["seq_len"] = seq_len
    if frame is None or history_field not in frame or keep is None:
        return frame
    if dataset.field2seqlen[history_field] > keep:
        frame[history_field] = [history[-keep:] if len(history) > keep else history
                                for history in frame[history_field].values]
        dataset.logger.info(f"{os.path.basename(filepath)}: {history_field} keeps the most recent {keep} items "
                            f"(seq_len / MAX_ITEM_LIST_LENGTH) of histories up to {dataset.field2seqlen[history_field]}")
        dataset.field2seqlen[history_field] = keep
    return frame


def install_recent_history_cut():
    recbole.data.dataset.dataset.Dataset._load_feat = _load_feat_recent_history


# --- 8. Loading a compact history store (format 2) through RecBole's own Dataset ----------------------------------
# RecBole reads `item_id_list` / `neg_items` as token_seq columns of every `.inter` row: a MIND-small-sized dataset
# then takes 6 KiB of memory per candidate row (each row's copy of the history, padded int64, via pandas object
# columns). A folder converted with a `<name>.store/` keeps them once per impression; these hooks make RecBole's
# Dataset (and so every model's dataset class) load it and attach both fields to each batch in `join`, where RecBole
# already attaches user and item features (recbole_embsum/compact_store.py). Without a store, nothing changes.
_recbole_remap = recbole.data.dataset.dataset.Dataset._remap
_recbole_join = recbole.data.dataset.dataset.Dataset.join
_recbole_benchmark_presets = recbole.data.dataset.sequential_dataset.SequentialDataset._benchmark_presets


def _check_inline_history(dataset, token, dataset_path):
    """A folder without a store must carry ``item_id_list`` in its ``.inter`` files if the config loads it."""
    history_field = dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]
    load_col, _ = dataset._get_load_and_unload_col("inter")
    if dataset.benchmark_filename_list is None or (load_col is not None and history_field not in load_col):
        return
    if history_field not in dataset.inter_feat:
        raise ValueError(
            f"{dataset_path}: the .inter files have no {history_field} column and there is no {token}.store/ "
            f"folder beside them (an incomplete copy, or files written by another version); convert the raw data "
            f"again with `recbole-embsum convert ... --overwrite`")
    dataset.logger.info(f"{dataset_path}: inline layout (item_id_list in every .inter row); converting it again "
                        f"with this version writes the compact history store, which loads faster in less memory")


def _remap(dataset, remap_list):
    compact_store.remap(dataset, remap_list, _recbole_remap)
    plain_token_keys(dataset)  # section 11 (c)


def _change_feat_format(dataset):
    """RecBole's conversion of every DataFrame feature to an Interaction, leaving features that already are one (a
    dataset shared between DDP ranks arrives converted, ``shared_dataset``); then the store's hidden row column."""
    for feat_name in dataset.feat_name_list:
        feat = getattr(dataset, feat_name)
        if not isinstance(feat, Interaction):
            setattr(dataset, feat_name, dataset._dataframe_to_interaction(feat))
    compact_store.attach_rows(dataset)


def _join(dataset, df):
    return _recbole_join(dataset, compact_store.join(dataset, df))


def _benchmark_presets(dataset):
    return compact_store.benchmark_presets(dataset, _recbole_benchmark_presets)


def install_compact_store():
    dataset_cls = recbole.data.dataset.dataset.Dataset
    dataset_cls._remap = _remap
    dataset_cls._change_feat_format = _change_feat_format
    dataset_cls.join = _join
    recbole.data.dataset.sequential_dataset.SequentialDataset._benchmark_presets = _benchmark_presets


# --- 10. Models that take every training row for a click ----------------------------------------------------------
# BPR (pairwise), SASRec/GRU4Rec/... (CE over all items) and EmbSum never read a training row's label, and RecBole's
# pointwise TrainDataLoader overwrites it with 1 when it samples negatives: every training row is a click to them.
# Our converters write only clicks to <name>.train.inter, but a training file with label-0 rows (shown, not
# clicked) would be trained on as clicks, silently. For such models that file now stops the run with one line.
def reads_training_label(config):
    """Whether the model of ``config`` learns from the label of training rows (False: every row is a click)."""
    from recbole.utils import InputType, ModelType

    sampling = config["train_neg_sample_args"] or {}
    sampled = sampling.get("distribution", "none") != "none" and sampling.get("sample_num", "none") != "none"
    if getattr(config.model_class, "training_negatives", None) == "impression":  # EmbSum: neg_items, not labels
        return False
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and not hasattr(config.model_class, "input_type") \
            and config["loss_type"] == "CE":  # SASRec, GRU4Rec, ...: the row's item is the next-item target
        return False
    return config["MODEL_INPUT_TYPE"] == InputType.POINTWISE and not sampled


def check_training_labels(dataset, token):
    """Raise ValueError if the training split holds non-clicks and the model would take them for clicks."""
    config = dataset.config
    label_field = config["LABEL_FIELD"]
    if not dataset.benchmark_filename_list or not dataset.file_size_list or label_field not in dataset.inter_feat:
        return
    train_labels = dataset.inter_feat[label_field].to_numpy()[: dataset.file_size_list[0]]
    non_clicks = int((train_labels != 1).sum())
    if non_clicks and not reads_training_label(config):
        raise ValueError(
            f"{non_clicks} rows of {token}.{dataset.benchmark_filename_list[0]}.inter have {label_field} != 1, but "
            f"{config['model']} takes every training row for a click (it never reads the label); keep only clicks "
            f"in the training file, as recbole-embsum convert does"
        )


@functools.wraps(_recbole_load_inter_feat)
def _load_inter_feat_checking_labels(dataset, token, dataset_path):
    _load_inter_feat(dataset, token, dataset_path)  # section 4 (and the store of section 8)
    check_training_labels(dataset, token)


def install_training_label_check():
    recbole.data.dataset.dataset.Dataset._load_inter_feat = _load_inter_feat_checking_labels


# --- 11. Every DDP rank loads the dataset and every dataloader lists its row indices --------------------------------
# (a) recbole.quick_start.run spawns nproc processes that each run create_dataset: every rank parses the .inter files
# and holds its own copy of every per-row column, so 4 ranks on one machine need 4 times the memory of one. The
# create_dataset of section 2 lets each machine's first rank build a dataset with a history store once and the other
# ranks map its columns (shared_dataset.py); _change_feat_format above leaves such an already converted inter_feat.
# (b) AbstractDataLoader.__init__ hands torch's DataLoader list(range(sample_size)) as its dataset (and under DDP a
# second such list to DistributedSampler): ~36 bytes per row per list, as much as the dataset's own columns. A range
# is the same sequence (len, indexing) in constant memory; the method below is RecBole's with range for list.
# (c) Dataset._remap builds each field2token_id dict from a numpy unicode array, so its keys are numpy.str_ scalars:
# ~65 MiB instead of ~10 MiB for MIND-small's 120k item, user and impression tokens once unpickled in another rank, and
# more than plain str in any process. The keys become plain str (equal and hashing alike, so every lookup is the same);
# fields that share one dict (aliases) keep sharing it.
def plain_token_keys(dataset):
    converted = {}
    for field, token_id in dataset.field2token_id.items():
        if id(token_id) not in converted:
            plain = token_id
            if any(type(token) is not str for token in token_id):
                plain = {str(token): index for token, index in token_id.items()}
            converted[id(token_id)] = plain
        dataset.field2token_id[field] = converted[id(token_id)]


import recbole.data.dataloader.abstract_dataloader  # noqa: E402
from recbole.data.transform import construct_transform  # noqa: E402
from recbole.utils import ModelType  # noqa: E402

_recbole_dataloader_init = recbole.data.dataloader.abstract_dataloader.AbstractDataLoader.__init__


@functools.wraps(_recbole_dataloader_init)
def _dataloader_init(self, config, dataset, sampler, shuffle=False):
    self.shuffle = shuffle
    self.config = config
    self._dataset = dataset
    self._sampler = sampler
    self._batch_size = self.step = self.model = None
    self._init_batch_size_and_step()
    index_sampler = None
    self.generator = torch.Generator()
    self.generator.manual_seed(config["seed"])
    self.transform = construct_transform(config)
    self.is_sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
    if not config["single_spec"]:
        index_sampler = torch.utils.data.distributed.DistributedSampler(
            range(self.sample_size), shuffle=shuffle, drop_last=False)
        self.step = max(1, self.step // config["world_size"])
        shuffle = False
    torch.utils.data.DataLoader.__init__(
        self, dataset=range(self.sample_size), batch_size=self.step, collate_fn=self.collate_fn,
        num_workers=config["worker"], shuffle=shuffle, sampler=index_sampler, generator=self.generator)


def install_range_indices():
    recbole.data.dataloader.abstract_dataloader.AbstractDataLoader.__init__ = _dataloader_init


# --- 8. transformers renamed gradient_checkpointing_enable --------------------------------------------------------------
# transformers 5.x calls it activation_checkpointing_enable and emits a FutureWarning for the old name on every run
# with gradient_checkpointing: True; the releases setup.py still allows (>= 4.40) have only the old name.
def enable_activation_checkpointing(model):
    """Hugging Face activation (gradient) checkpointing of every block of ``model``, non-reentrant."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply():
    """Install every workaround (idempotent)."""
    disable_anomaly_detection()
    install_race_free_ensure_dir()
    install_model_lookup()
    install_checkpoint_loading()
    install_empty_history_handling()
    install_click_counting_pop()
    install_compact_store()
    install_recent_history_cut()
    install_training_label_check()
    install_range_indices()
