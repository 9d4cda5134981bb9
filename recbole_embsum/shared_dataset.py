"""DDP ranks on one machine share one loaded dataset: its first rank builds it, the others map its per-row columns.

RecBole's DDP path (``recbole.quick_start.run`` with ``nproc`` > 1) runs ``create_dataset`` in every process, so
each rank parses the ``.inter`` files itself and holds a private copy of every per-row column. For a dataset with a
history store (whose histories and negatives are memory-mapped already) `create_dataset` below lets the first rank of
each machine (``local_rank`` 0) build it alone. That rank turns the per-row columns into the tensors RecBole's
``build()`` would make from them (``Dataset._dataframe_to_interaction``: token fields int64, float fields float32,
plus the store's row -> group column) and writes them as ``.npy`` files, with the rest of the Dataset's state (field
properties, vocabularies, item features: a few MB) as one pickle, into a fresh private temporary folder
(``tempfile.mkdtemp``: mode 0700, under ``TMPDIR``). Every rank of the machine, the builder included, then maps those
files copy-on-write, so their pages live once in the page cache for all ranks; the folder is deleted as soon as every
rank has mapped it (the mappings keep the data until the processes end). The pickle is written and read by the same
run's processes only, in that private folder, and never outlives the loading.

Other ranks wait for the builder at a barrier bounded by ``dist_timeout``. If building fails, every rank builds for
itself (and meets the same error); a dataset that cannot be shared (inline layout, a dataset class with other
per-row features) is likewise built by every rank, as RecBole does. Without a process group nothing changes.

The shared dataset's ``inter_feat`` is already an ``Interaction`` when ``create_dataset`` returns (RecBole converts it
in ``build()``, whose conversion then leaves it as it is, ``compat`` section 8), holding exactly the tensors
``build()`` would have made, so every model receives the same batches.
"""
import ctypes
import logging
import os
import pickle
import shutil
import tempfile

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from recbole.data.interaction import Interaction

from recbole_embsum import compact_store

logger = logging.getLogger(__name__)

STATE_FILE = "dataset.pkl"  # the Dataset's attributes other than config, logger and inter_feat
_SHAREABLE_FEATURES = ("inter_feat", "user_feat", "item_feat")  # datasets with other features (KG, ...) are not shared


def _distributed(config):
    return config["local_rank"] is not None and not config["single_spec"] and dist.is_available() \
        and dist.is_initialized()


def shareable(dataset):
    """Whether ``dataset`` (just built, before ``build()``) can be shared: a history store, benchmark files, and no
    features besides the interactions, users and items."""
    return (getattr(dataset, compact_store.STORE_ATTR, None) is not None
            and dataset.benchmark_filename_list is not None
            and isinstance(dataset.inter_feat, pd.DataFrame)
            and set(dataset.feat_name_list) <= set(_SHAREABLE_FEATURES))


def publish(dataset, folder):
    """Write ``dataset``'s per-row columns (as the tensors ``build()`` would make) and its other state to ``folder``;
    returns the column names, in file order."""
    interaction = dataset._dataframe_to_interaction(dataset.inter_feat)
    dataset.inter_feat = interaction
    compact_store.attach_rows(dataset)  # the hidden row -> group column, which shares memory with the StoreView's
    columns = []
    for index, field in enumerate(interaction.columns):
        values = interaction[field]
        np.save(os.path.join(folder, f"{index}.npy"), values.numpy())
        columns.append(field)
    view = getattr(dataset, compact_store.STORE_ATTR)
    row_groups, view.row_groups = view.row_groups, None
    state = {key: value for key, value in dataset.__dict__.items() if key not in ("config", "logger", "inter_feat")}
    try:
        with open(os.path.join(folder, STATE_FILE + ".tmp"), "wb") as handle:
            pickle.dump({"class": type(dataset), "columns": columns, "state": state}, handle,
                        protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        view.row_groups = row_groups
    os.replace(os.path.join(folder, STATE_FILE + ".tmp"), os.path.join(folder, STATE_FILE))
    return columns


def _map(dataset, folder, columns):
    """Replace ``dataset.inter_feat`` by copy-on-write maps of the published columns (shared pages)."""
    mapped = {field: torch.from_numpy(np.load(os.path.join(folder, f"{index}.npy"), mmap_mode="c"))
              for index, field in enumerate(columns)}
    dataset.inter_feat = Interaction(mapped)
    getattr(dataset, compact_store.STORE_ATTR).row_groups = mapped[compact_store.ROW_FIELD].numpy()


def adopt(config, folder):
    """The dataset published in ``folder``, with this rank's ``config``."""
    with open(os.path.join(folder, STATE_FILE), "rb") as handle:
        published = pickle.load(handle)  # written by this run's first rank into its private folder (see above)
    dataset = published["class"].__new__(published["class"])
    dataset.__dict__.update(published["state"])
    dataset.config = config
    dataset.logger = logging.getLogger()
    _map(dataset, folder, published["columns"])
    return dataset


def release_freed_heap():
    """Hand the heap pages that parsing freed back to the system (glibc keeps them for reuse otherwise, so the
    builder would hold the parser's peak for the whole run); a no-op where the C library has no ``malloc_trim``."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def create_dataset(config, build):
    """``build(config)`` (RecBole's ``create_dataset``) once per machine under DDP, shared by the machine's ranks."""
    if not _distributed(config):
        return build(config)
    local_rank = int(config["local_rank"])
    builder = dist.get_rank() - local_rank  # global rank of this machine's local rank 0
    folder = tempfile.mkdtemp(prefix="recbole-embsum-dataset-") if local_rank == 0 else None
    folders = [None] * dist.get_world_size()
    dist.all_gather_object(folders, folder)
    folder = folders[builder]
    dataset, error = None, None
    if local_rank == 0:
        try:
            try:
                dataset = build(config)
                if shareable(dataset) and int(config["nproc"] or 1) > 1:
                    _map(dataset, folder, publish(dataset, folder))
                    release_freed_heap()
                    logger.info(f"the dataset's per-row columns are shared by this machine's ranks from {folder}")
            except BaseException as caught:  # the others must not wait for a dataset that never comes
                error = caught
            dist.barrier()  # 1: published (or not)
            dist.barrier()  # 2: every rank has mapped it
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if error is not None:
            raise error
        return dataset
    dist.barrier()  # 1
    published = os.path.isfile(os.path.join(folder, STATE_FILE))
    if published:
        try:
            dataset = adopt(config, folder)
        except BaseException as caught:
            error = caught
    dist.barrier()  # 2
    if error is not None:
        raise error
    return dataset if published else build(config)

