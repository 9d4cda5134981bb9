"""Checkpoints that load without running code, and that resume a run exactly.

RecBole's ``Trainer._save_checkpoint`` pickles its whole ``Config`` object into the ``.pth`` file, so reading one back
takes the full unpickler, which runs whatever a crafted file asks for. Our checkpoints hold plain data only, so every
file a user hands us is read with ``torch.load(weights_only=True)``:

* ``format`` / ``version``: this module's marker (``FORMAT``);
* ``config``: the run's final config values that are plain data (for people and tools: ``config["model"]``, ...);
* ``settings``: what rebuilds the ``Config``: the user's own yaml / config_dict / command-line values
  (``external_config_dict``) plus ``model`` and ``dataset`` (see :func:`rebuild_config`);
* RecBole's fields: ``epoch``, ``cur_step``, ``best_valid_score``, ``state_dict``, ``optimizer`` and
  ``other_parameter`` (numpy, scipy sparse and submodule entries stored as tensors and tags, see :func:`storable`);
* ``rng``: the random-number states a resumed run needs to continue exactly as the uninterrupted run would have:
  Python's ``random``, numpy's global generator (RecBole's negative samplers draw from it), torch's CPU and CUDA
  generators (dropout, EmbSum's negative sampling), the training dataloader's own ``torch.Generator`` (RecBole
  shuffles with it) and the compact history store's numpy Generator (each batch's negatives), one set per rank
  under DDP;
* trainer extras (``EmbSumTrainer``: ``scheduler``, ``scaler``, ``global_step``).

Checkpoints are written at the end of an epoch (RecBole's rule: after validation when it improves, or every epoch
without validation), so the position in the epoch order is "the start of epoch ``epoch + 1``"; the dataloader's
generator state decides that epoch's order.
"""
import contextlib
import logging
import os
import pickle
import random
import sys
import warnings
import zipfile

import numpy as np
import torch
import torch.distributed as dist

from dataset_converters.atomic import AtomicFile
from recbole_embsum import distributed
from recbole_embsum.outputs import naming

FORMAT = "recbole-embsum-checkpoint"
VERSION = 1
REFUSED = "not a recbole-embsum checkpoint, or one that needs code to load"
# Values of the user's config that describe the process that trained, not the model: never replayed on load.
RUNTIME_KEYS = ("model", "dataset", "config_files", "resume", "local_rank", "world_size", "nproc", "ip", "port",
                "offset", "group_offset", "queue", "single_spec")
# Replayed as these values whatever the checkpoint says: RecBole reads dataset_save_path / dataloaders_save_path
# with pickle.load (code from a file named inside the checkpoint), and a loading tool must not start a W&B run.
FORCED_ON_LOAD = {"save_dataset": False, "dataset_save_path": None, "save_dataloaders": False,
                  "dataloaders_save_path": None, "log_wandb": False}

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, foreign or needs code to load; the message is one line."""


# --------------------------------------------------------------------------------------------------- plain data
_LEAVES = (type(None), bool, int, float, str)


def _plain(value):
    """``(True, value as dicts/lists/scalars)`` when ``value`` is plain data, else ``(False, None)``."""
    if isinstance(value, _LEAVES):
        return True, value
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        return all(ok for ok, _ in items), [item for _, item in items]
    if isinstance(value, dict):
        items = {key: _plain(item) for key, item in value.items()}
        ok = all(isinstance(key, str) for key in value) and all(ok for ok, _ in items.values())
        return ok, {key: item for key, (_, item) in items.items()}
    return False, None


def plain_values(values, what):
    """The entries of ``values`` (a dict) that are plain data; the others are logged and left out."""
    kept, dropped = {}, []
    for key, value in values.items():
        ok, plain = _plain(value)
        if ok:
            kept[key] = plain
        else:
            dropped.append(key)
    if dropped:
        logger.debug("%s: left out values that are not plain data: %s", what, ", ".join(sorted(dropped)))
    return kept


def config_settings(config):
    """What :func:`rebuild_config` needs: model and dataset names and the user's own config values, plain."""
    settings = plain_values({k: v for k, v in config.external_config_dict.items() if k not in RUNTIME_KEYS},
                            "checkpoint settings")
    data_path = config["data_path"]  # RecBole's final data_path is <data_path>/<dataset>
    if data_path:  # absolute, so that a tool run from another folder finds the same data
        settings["data_path"] = os.path.dirname(os.path.abspath(os.path.normpath(data_path)))
    return {"model": config["model"], "dataset": config["dataset"], "values": settings}


@contextlib.contextmanager
def _without_command_line():
    """RecBole's Config reads every ``--key=value`` of ``sys.argv``; a tool's own flags must not become config."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


def rebuild_config(checkpoint, path="checkpoint"):
    """The RecBole ``Config`` of the run that wrote ``checkpoint`` (a dict from :func:`load`)."""
    from recbole.config import Config

    settings = checkpoint.get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("values"), dict):
        raise CheckpointError(f"{path}: {REFUSED} (it carries no config settings)")
    values = {**settings["values"], **FORCED_ON_LOAD}
    with _without_command_line():
        return Config(model=settings["model"], dataset=settings["dataset"], config_dict=values)


# ----------------------------------------------------------------------------------- models' other parameters
# RecBole models keep some state outside state_dict (``other_parameter_name``): numpy arrays (EASE, SLIMElastic),
# scipy sparse matrices (ItemKNN, EASE), tensors (Pop, LightGCN) or submodules (FDSA, DIN). They are stored as
# tensors and plain data, tagged so that they come back as the same types; submodules are already in state_dict.
_TAG = "__recbole_embsum__"


_DESCEND = object()  # a converter's answer for "not mine: walk into this dict / list / tuple"


def _walk(value, convert):
    """``value`` with ``convert`` applied throughout: ``convert(value)`` gives the replacement, or ``_DESCEND`` to rebuild
    a dict / list / tuple from its walked items (other values are kept as they are)."""
    replacement = convert(value)
    if replacement is not _DESCEND:
        return replacement
    if isinstance(value, dict):
        return {key: _walk(item, convert) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(item, convert) for item in value)
    return value


def _to_storable(value):
    """One of a model's other parameters (or a part of one) as tensors, tags and plain data."""
    import scipy.sparse

    if isinstance(value, torch.nn.Module):
        return {_TAG: "module"}
    if isinstance(value, np.ndarray) and value.dtype != object:
        kind = "numpy.matrix" if isinstance(value, np.matrix) else "numpy"
        return {_TAG: kind, "array": torch.from_numpy(np.ascontiguousarray(np.asarray(value)))}
    if isinstance(value, np.generic):
        return value.item()
    if scipy.sparse.issparse(value):
        csr = value.tocsr()
        return {_TAG: "sparse", "format": value.format, "shape": list(csr.shape), "data": storable(csr.data),
                "indices": storable(csr.indices), "indptr": storable(csr.indptr)}
    return _DESCEND


def _from_storable(value):
    """The inverse of :func:`_to_storable` for a tagged entry; a submodule entry becomes ``None``."""
    import scipy.sparse

    if not (isinstance(value, dict) and _TAG in value):
        return _DESCEND
    kind = value[_TAG]
    if kind in ("numpy", "numpy.matrix"):
        array = value["array"].numpy()
        if kind == "numpy":
            return array
        with warnings.catch_warnings():  # numpy discourages np.matrix; the model (EASE) holds one all the same
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(array)
    if kind == "sparse":
        matrix = scipy.sparse.csr_matrix((restored(value["data"]), restored(value["indices"]),
                                          restored(value["indptr"])), shape=tuple(value["shape"]))
        return matrix.asformat(value["format"])
    return None


def storable(value):
    """``value`` (a model's other parameters: dicts / lists of arrays, matrices, submodules) as tensors and plain
    data."""
    return _walk(value, _to_storable)


def restored(value):
    """The inverse of :func:`storable`; a submodule entry becomes ``None`` (keep the model's own)."""
    return _walk(value, _from_storable)


def _other_parameters(checkpoint):
    """The model's other parameters of ``checkpoint``, restored, without submodule entries (or None)."""
    stored = checkpoint.get("other_parameter")
    if stored is None:
        return None
    return {key: value for key, value in restored(stored).items()
            if not (isinstance(stored[key], dict) and stored[key].get(_TAG) == "module")}


# ---------------------------------------------------------------------------------------------- random states
def rng_state(loader=None):
    """This process's random-number states (plain data and tensors); ``loader``: the training dataloader."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator):
        state["train_loader"] = generator.get_state()
    store_rng = _history_store_rng(loader)
    if store_rng is not None:
        state["history_store"] = store_rng.bit_generator.state  # a dict of ints and strings
    return state


def _history_store_rng(loader):
    """The numpy Generator with which the compact history store draws each batch's negatives, if the training
    data reads one (``compact_store.StoreView.rng``)."""
    from recbole_embsum import compact_store

    view = getattr(getattr(loader, "_dataset", None), compact_store.STORE_ATTR, None)
    return getattr(view, "rng", None)


def set_rng_state(state, loader=None):
    """Restore what :func:`rng_state` returned (the dataloader's generator only when ``loader`` has one)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(loader, "generator", None)
    if isinstance(generator, torch.Generator) and "train_loader" in state:
        generator.set_state(state["train_loader"])
    store_rng = _history_store_rng(loader)
    if store_rng is not None and "history_store" in state:
        store_rng.bit_generator.state = state["history_store"]


def _distributed(config):
    return not config["single_spec"] and dist.is_available() and dist.is_initialized()


def rng_states_of_all_ranks(config, loader=None):
    """``[rank 0's rng_state, rank 1's, ...]``; a collective under DDP (every rank must call it)."""
    state = rng_state(loader)
    if not _distributed(config):
        return [state]
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def restore_rng_of_this_rank(states, config, loader=None):
    """Restore this rank's entry of ``states``; a run resumed on another number of ranks gets a warning."""
    rank = dist.get_rank() if _distributed(config) else 0
    world = dist.get_world_size() if _distributed(config) else 1
    if len(states) != world:
        logger.warning("the checkpoint holds random states of %d processes, this run has %d: the resumed run will "
                       "not repeat the original one exactly", len(states), world)
    set_rng_state(states[rank % len(states)], loader)


# ------------------------------------------------------------------------------------------------ read / write
def _scratch_tokenizer(model):
    """The record of the scratch tokenizer ``model`` was built with (plain data, see
    ``text.backbone.scratch_tokenizer_record``), or None (a pretrained tokenizer, or a model without one)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return None
    from recbole_embsum.text.backbone import scratch_tokenizer_record

    return scratch_tokenizer_record(tokenizer)


def model_checkpoint(model, config):
    """A checkpoint of ``model`` built with ``config`` (RecBole Config) that :func:`load_data_and_model` reads;
    ``tokenizer`` carries a scratch tokenizer itself, so the model reloads with it whatever the data's text is then."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": plain_values(dict(config.final_config_dict), "checkpoint config"),
        "settings": config_settings(config),
        "state_dict": model.state_dict(),
        "other_parameter": storable(model.other_parameter()),
        "tokenizer": _scratch_tokenizer(model),
    }


def _restore_tokenizer(checkpoint, config, path):
    """Put ``checkpoint``'s scratch tokenizer into the dataset's tokenizer cache; returns its folder name (None when
    the checkpoint has none)."""
    record = checkpoint.get("tokenizer")
    if not record:
        return None
    from recbole_embsum.text.backbone import restore_scratch_tokenizer

    try:
        return restore_scratch_tokenizer(config["data_path"], config["dataset"], record)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def trainer_state(trainer, epoch, loader=None):
    """The checkpoint of ``trainer`` (a RecBole Trainer) at the end of ``epoch``; ``loader``: its training data."""
    return {
        **model_checkpoint(trainer.model, trainer.config),
        "epoch": epoch,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "optimizer": trainer.optimizer.state_dict(),
        "rng": rng_states_of_all_ranks(trainer.config, loader),
    }


def save(state, path):
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path`` (atomic; the file gets
    the umask's permissions, as RecBole's own checkpoints do)."""
    with naming(path), AtomicFile(path, binary=True) as handle:
        torch.save(state, handle)  # pickle protocol 2, torch's default: what weights_only readers expect


def _starts_like_zip(path):
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def load(path, device="cpu"):
    """Read a checkpoint of ours with ``torch.load(weights_only=True)``: no code runs, whatever the file holds.

    Raises `CheckpointError` (one line) for a missing, truncated or foreign file, or one that needs code to load.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} does not exist or is not a file; pass a checkpoint written by training "
                              f"(saved/<Model>-<date>.pth)")
    try:
        if _starts_like_zip(path):
            with zipfile.ZipFile(path):  # torch's format; a cut-off file has lost its central directory
                pass
        with warnings.catch_warnings():  # weights_only readers warn about protocol-4 pickles before refusing them
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # torch raises it for anything the weights-only reader will not build
        raise CheckpointError(f"{path}: {REFUSED}; it was not read") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot be read, truncated or corrupt ({reason}); copy it again or pass "
                              f"another checkpoint") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: {REFUSED}")
    if checkpoint.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer recbole-embsum (checkpoint version "
                              f"{checkpoint['version']}, this one reads {VERSION}); upgrade recbole-embsum")
    return checkpoint


def load_weights(model, checkpoint, path="checkpoint"):
    """Load ``checkpoint``'s ``state_dict`` and ``other_parameter`` into ``model``; a mismatch is one line."""
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit {type(model).__name__} ({first}); was it trained "
                              f"with other options?") from None
    model.load_other_parameter(_other_parameters(checkpoint))


def load_data_and_model(model_file):
    """RecBole's ``load_data_and_model`` for our checkpoints, without the full unpickler.

    The ``Config`` is rebuilt from the stored settings and the dataset is read again from ``data_path`` (as RecBole
    does), so the data must still be where training found it. Returns ``(config, model, dataset, train_data,
    valid_data, test_data)``.
    """
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_logger, init_seed

    model_file = os.fspath(model_file)
    checkpoint = load(model_file)
    config = rebuild_config(checkpoint, model_file)
    tokenizer = _restore_tokenizer(checkpoint, config, model_file)
    if tokenizer:  # the tokenizer the weights were trained with, even if the dataset's text has changed since
        config["scratch_tokenizer"] = tokenizer
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logging.getLogger().info(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    load_weights(model, checkpoint, model_file)
    return config, model, dataset, train_data, valid_data, test_data


# ------------------------------------------------------------------------------------------- trainer bookkeeping
def saved_message(path):
    from recbole.utils import set_color

    return set_color("Saving current", "blue") + f": {path}"


def loaded_message(path):
    return f"Loading model structure and parameters from {path}"  # RecBole's wording


def _settings_changes(old, new):
    """``"key (old -> new)"`` for each user setting that differs between a checkpoint and the resuming run."""
    keys = sorted(set(old) | set(new))
    return [f"{key} ({old.get(key)!r} -> {new.get(key)!r})" for key in keys
            if old.get(key) != new.get(key) and key not in ("checkpoint_dir",)]


def resume(trainer, path):
    """Restore RecBole's part of ``trainer`` (model, optimizer, epoch, early-stopping state) from ``path``; the
    random states wait for the start of ``fit`` (:func:`prepare_fit`). Returns the checkpoint dict."""
    path = os.fspath(path)
    state = load(path, trainer.device)
    settings = state.get("settings") or {}
    if str(settings.get("model", "")).lower() != str(trainer.config["model"]).lower():
        raise CheckpointError(f"{path} was trained as {settings.get('model')}, this run is "
                              f"{trainer.config['model']}; pass a checkpoint of the same model")
    built = _scratch_tokenizer(trainer.model)
    recorded = state.get("tokenizer")
    if recorded and built and recorded.get("name") != built["name"]:
        name = _restore_tokenizer(state, trainer.config, path)
        raise CheckpointError(f"{path} was trained with the scratch tokenizer {name} and this run built {built['name']} "
                              f"from the dataset's current text; run again with --scratch_tokenizer={name} (now in the "
                              f"dataset's tokenizer cache) to resume with the checkpoint's tokenizer")
    changes = _settings_changes(settings.get("values", {}), config_settings(trainer.config)["values"])
    if changes:
        trainer.logger.warning("resuming %s with other settings: %s", path, ", ".join(changes))
    trainer.saved_model_file = path  # as in RecBole, later checkpoints of this run go to the resumed file
    trainer.start_epoch = state["epoch"] + 1
    trainer.cur_step = state["cur_step"]
    trainer.best_valid_score = state["best_valid_score"]
    load_weights(trainer.model, state, path)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.pending_rng = state.get("rng")
    trainer.resumed_from = path
    trainer.logger.info(f"Checkpoint loaded. Resume training from epoch {trainer.start_epoch}")
    return state


def prepare_fit(trainer, train_data):
    """At the start of ``fit``: resume from the ``resume`` option (once), then restore the resumed random states
    (after every dataloader and model exists, so nothing drawn while building them shifts the sequence)."""
    trainer.train_loader = train_data
    resume_file = trainer.config["resume"]
    if resume_file and getattr(trainer, "resumed_from", None) is None:
        trainer.resume_checkpoint(resume_file)
    states = getattr(trainer, "pending_rng", None)
    if states:
        restore_rng_of_this_rank(states, trainer.config, train_data)
        trainer.pending_rng = None


def save_trainer(trainer, epoch, verbose=True, **kwargs):
    """``Trainer._save_checkpoint`` for RecBole's own trainers: our format, atomic, rank 0 writes."""
    saved_model_file = kwargs.pop("saved_model_file", trainer.saved_model_file)
    state = trainer_state(trainer, epoch, getattr(trainer, "train_loader", None))
    if trainer.config["single_spec"] or trainer.config["local_rank"] == 0:
        save(state, saved_model_file)
        if verbose:
            trainer.logger.info(saved_message(saved_model_file))


def load_best(trainer, model_file=None):
    """Load the run's best checkpoint (or ``model_file``) into ``trainer.model`` with the safe reader. Under DDP
    only rank 0 reads the file and sends the weights to the others (ranks on other machines need not see it)."""
    checkpoint_file = model_file or trainer.saved_model_file
    other_parameter = None
    if distributed.is_main_process(trainer.config):
        state = load(checkpoint_file, trainer.device)
        load_weights(trainer.model, state, checkpoint_file)
        other_parameter = _other_parameters(state)
        trainer.logger.info(loaded_message(checkpoint_file))
    distributed.broadcast_module(trainer.model, trainer.config)
    trainer.model.load_other_parameter(distributed.broadcast_object(other_parameter, trainer.config))
