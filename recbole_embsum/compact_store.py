"""RecBole's Dataset on a compact history store (format 2, ``dataset_converters/store.py``), behind RecBole's hooks.

A converted folder in the store layout has ``.inter`` files with the scalar columns only; each row's history
(``item_id_list``) and training negatives (``neg_items``) live once per group of rows in memory-mapped int32 arrays.
Installed by ``compat.apply()``, the hooks below make every RecBole dataset class (``Dataset`` for BPR/Pop,
``SequentialDataset`` for SASRec/GRU4Rec/BERT4Rec/EmbSum, ...) read such a folder so that each model receives the
same batches as from the inline layout (format 1):

* loading: the scalar ``.inter`` columns are read with pandas' C parser; ``item_id_list`` / ``neg_items`` are
  declared as TOKEN_SEQ fields of the widths RecBole would compute, and each row keeps only the index of its group;
* remapping: the store's item tokens join RecBole's one ``item_id`` vocabulary in the order RecBole's own
  ``pd.factorize`` would give them (first appearance: ``.inter`` item ids, ``.item``, histories, negatives), and a
  small store-index -> RecBole-id table is kept;
* ``item_length`` (SequentialDataset) is a per-row column as before;
* ``Dataset.join``, which RecBole calls on every batch it builds, materialises ``item_id_list`` [B, W] (0-padded,
  RecBole ids, the most recent ``recent_history_length`` items) and ``neg_items`` [B, K]: up to ``train_neg_num`` of the row's
  negatives, drawn without replacement by a generator seeded with ``seed`` (all of them, in stored order, when the
  row has at most K, or when ``train_neg_num`` is not set and K is the widest row).

The big arrays stay memory-mapped, so DDP ranks on one machine share one copy through the page cache; the per-row
columns are built once per machine and mapped by every rank there too (``shared_dataset.py``).
"""
import logging

import numpy as np
import pandas as pd
import torch
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from dataset_converters.store import StoreFormatError, open_store

logger = logging.getLogger(__name__)

STORE_ATTR = "_history_store"  # attribute of a RecBole Dataset holding its StoreView
ROW_FIELD = "_store_group"  # hidden inter_feat column: each row's group index; dropped from batches by join
NEG_ITEMS_FIELD = "neg_items"
_CHUNK_GROUPS = 1 << 16  # groups gathered at once when scanning the store


def ragged_indices(starts, lengths):
    """Flat int64 positions of the ranges ``[starts[i], starts[i] + lengths[i])``, concatenated."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


def padded_indices(starts, lengths, width):
    """[B, width] positions of each range's first ``width`` entries, and the [B, width] mask of real ones."""
    steps = np.arange(width, dtype=np.int64)[None, :]
    mask = steps < np.asarray(lengths, dtype=np.int64)[:, None]
    return np.where(mask, np.asarray(starts, dtype=np.int64)[:, None] + steps, 0), mask


class StoreView:
    """One loaded dataset's view of the store: which group each row reads, widths, and the id table."""

    def __init__(self, store, row_groups, history_field, negative_field, history_cut, negative_width, seed):
        self.store = store
        self.row_groups = row_groups  # int32 [rows]
        self.history_field = history_field  # None when not loaded
        self.negative_field = negative_field
        self.history_cut = history_cut  # most recent items kept (recent_history_length), or None
        self.negative_width = negative_width
        self.history_width = 0
        self.lookup = {}  # field -> int64 [store items]: store index -> RecBole id (set when RecBole remaps the field)
        self.rng = np.random.default_rng(seed)

    @property
    def fields(self):
        return [f for f in (self.history_field, self.negative_field) if f is not None]

    # -- per-group facts ---------------------------------------------------------------------------------------
    def _history_ranges(self, groups):
        ends = self.store.history_offsets[groups + 1]
        lengths = ends - self.store.history_offsets[groups]
        if self.history_cut is not None:
            lengths = np.minimum(lengths, self.history_cut)
        return ends - lengths, lengths  # the most recent `lengths` items (histories are stored oldest first)

    def _negative_ranges(self, groups):
        starts = self.store.negative_offsets[groups]
        return starts, self.store.negative_offsets[groups + 1] - starts

    def _ranges(self, field, groups):
        return self._history_ranges(groups) if field == self.history_field else self._negative_ranges(groups)

    def row_history_lengths(self):
        """int64 [rows]: each row's history length after the cut (RecBole's ``item_length``)."""
        lengths = np.diff(self.store.history_offsets)
        if self.history_cut is not None:
            lengths = np.minimum(lengths, self.history_cut)
        return lengths[self.row_groups]

    def keep_rows(self, keep):
        self.row_groups = self.row_groups[keep]

    def _ordered_groups(self):
        """The distinct groups of the rows, in row order (each group's rows are consecutive)."""
        groups = self.row_groups
        if len(groups) == 0:
            return groups
        return groups[np.r_[True, groups[1:] != groups[:-1]]]

    def _scan(self, field):
        """Yields the store item indices of ``field`` for every row's group, in row order, chunk by chunk."""
        array = self.store.history if field == self.history_field else self.store.negatives
        groups = self._ordered_groups()
        for first in range(0, len(groups), _CHUNK_GROUPS):
            starts, lengths = self._ranges(field, groups[first:first + _CHUNK_GROUPS])
            yield np.asarray(array[ragged_indices(starts, lengths)])

    def used_items(self, field):
        """bool [store items]: items that occur in ``field`` of some row."""
        used = np.zeros(len(self.store.items), dtype=bool)
        for values in self._scan(field):
            used[values] = True
        return used

    def first_appearance(self, field, candidates):
        """Store indices of the ``candidates`` (bool mask) in order of their first occurrence in ``field``."""
        first = np.full(len(self.store.items), np.iinfo(np.int64).max, dtype=np.int64)
        position = 0
        for values in self._scan(field):
            unique, index = np.unique(values, return_index=True)
            first[unique] = np.minimum(first[unique], index + position)
            position += len(values)
        found = np.flatnonzero(candidates & (first != np.iinfo(np.int64).max))
        return found[np.argsort(first[found], kind="stable")]

    # -- per-batch materialisation ------------------------------------------------------------------------------
    def histories(self, groups):
        """int64 [B, W]: RecBole ids of each group's history (its most recent items), 0-padded at the end."""
        starts, lengths = self._history_ranges(groups)
        index, mask = padded_indices(starts, lengths, self.history_width)
        return np.where(mask, self.lookup[self.history_field][self.store.history[index]], 0)

    def negatives(self, groups):
        """int64 [B, K]: up to K of each group's negatives (RecBole ids, stored order), 0-padded."""
        starts, counts = self._negative_ranges(groups)
        width = self.negative_width
        widest = int(counts.max()) if len(counts) else 0
        if widest > width:  # rows with more than K negatives: a uniform K-subset (Gumbel-free: random keys)
            keys = self.rng.random((len(groups), widest))
            keys[np.arange(widest)[None, :] >= counts[:, None]] = np.inf
            chosen = np.sort(np.argpartition(keys, width - 1, axis=1)[:, :width], axis=1)  # [B, K]
            taken = np.minimum(counts, width)
            mask = np.arange(width)[None, :] < taken[:, None]
            # rows with fewer than K keep theirs in order (their random keys sort the real ones first)
            index = np.where(mask, starts[:, None] + chosen, 0)
        else:
            index, mask = padded_indices(starts, counts, width)
        return np.where(mask, self.lookup[self.negative_field][self.store.negatives[index]], 0)

    def join(self, interaction):
        """Replace the hidden group column of a batch by ``item_id_list`` / ``neg_items`` (in place)."""
        if ROW_FIELD not in interaction:
            return interaction
        groups = interaction[ROW_FIELD].numpy().astype(np.int64)
        del interaction[ROW_FIELD]
        single = groups.ndim == 0  # dataset[i] with an int: one row, fields without the batch dimension
        groups = np.atleast_1d(groups)
        for field, build in ((self.history_field, self.histories), (self.negative_field, self.negatives)):
            if field is not None:
                values = torch.from_numpy(build(groups))
                interaction[field] = values[0] if single else values
        return interaction


# -- loading --------------------------------------------------------------------------------------------------------
def _read_scalar_inter(dataset, path):
    """One ``.inter`` file of the store layout as RecBole's ``_load_feat`` would read it (same field properties,
    same dtypes), with pandas' C parser; token_seq columns are refused (they belong in the store)."""
    load_col, unload_col = dataset._get_load_and_unload_col(FeatureSource.INTERACTION)
    separator, encoding = dataset.config["field_separator"], dataset.config["encoding"]
    with open(path, "r", encoding=encoding) as handle:
        header = handle.readline().rstrip("\n")
    columns, usecols, dtype = [], [], {}
    for cell in header.split(separator):
        field, _, ftype = cell.partition(":")
        try:
            ftype = FeatureType(ftype)
        except ValueError:
            raise ValueError(f"{path}: type {ftype!r} of field {field!r} is not supported") from None
        if ftype.value.endswith("seq"):
            raise StoreFormatError(f"{path}: column {cell!r} in a dataset with a history store (format 2), whose "
                                   f".inter files hold scalar columns only; convert the dataset again "
                                   f"(`recbole-embsum convert ... --overwrite`)")
        if (load_col is not None and field not in load_col) or (unload_col is not None and field in unload_col):
            continue
        dataset.field2source[field] = FeatureSource.INTERACTION
        dataset.field2type[field] = ftype
        dataset.field2seqlen[field] = 1
        if ftype == FeatureType.FLOAT:
            dataset.field2bucketnum[field] = 2
        columns.append(field)
        usecols.append(cell)
        dtype[cell] = np.float64 if ftype == FeatureType.FLOAT else str
    frame = pd.read_csv(path, delimiter=separator, usecols=usecols, dtype=dtype, encoding=encoding, engine="c")
    frame.columns = columns
    return frame


def recent_history_length(config):
    """How many of the most recent history items every row keeps, in both layouts: min(seq_len of item_id_list,
    MAX_ITEM_LIST_LENGTH), None when neither is set (compat.py, section 9, does the same for the inline layout)."""
    history_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    limits = [(config["seq_len"] or {}).get(history_field), config["MAX_ITEM_LIST_LENGTH"]]
    limits = [int(limit) for limit in limits if limit is not None]
    return min(limits) if limits else None


def load_inter_feat(dataset, token, dataset_path, store):
    """RecBole's ``_load_inter_feat`` for a folder with a store: scalar columns, file sizes and the StoreView."""
    if dataset.benchmark_filename_list is None:
        raise ValueError(f"{dataset_path}: a converted dataset with a history store is read through "
                         f"benchmark_filename (e.g. [train, valid, test]); set it in the dataset yaml")
    frames, sizes, groups = [], [], []
    for split in dataset.benchmark_filename_list:
        path = f"{dataset_path}/{token}.{split}.inter"
        frame = _read_scalar_inter(dataset, path)
        split_groups = store.groups_of_rows(split)
        if len(split_groups) != len(frame):
            raise StoreFormatError(f"{path}: {len(frame)} rows, but {store.path} describes {len(split_groups)}; the "
                                   f"two were not written together; convert the dataset again (--overwrite)")
        frames.append(frame)
        sizes.append(len(frame))
        groups.append(split_groups)
    dataset.inter_feat = pd.concat(frames, ignore_index=True)
    dataset.file_size_list = sizes
    row_groups = np.concatenate(groups)
    del frames, groups

    config = dataset.config
    load_col, unload_col = dataset._get_load_and_unload_col(FeatureSource.INTERACTION)

    def wanted(field):
        return (load_col is None or field in load_col) and (unload_col is None or field not in unload_col)

    history_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    history_field = history_field if wanted(history_field) else None
    negative_field = NEG_ITEMS_FIELD if wanted(NEG_ITEMS_FIELD) else None
    distinct = np.unique(row_groups).astype(np.int64)
    negative_counts = np.diff(store.negative_offsets)[distinct] if len(distinct) else np.zeros(0, np.int64)
    widest_negatives = int(negative_counts.max()) if len(negative_counts) else 0
    negative_width = config["train_neg_num"] if config["train_neg_num"] else widest_negatives
    view = StoreView(store, row_groups, history_field, negative_field, recent_history_length(config),
                     int(negative_width), config["seed"])
    if history_field is not None:
        lengths = np.diff(store.history_offsets)[distinct] if len(distinct) else np.zeros(0, np.int64)
        widest = int(lengths.max()) if len(lengths) else 0
        view.history_width = min(widest, view.history_cut) if view.history_cut is not None else widest
        dataset.set_field_property(history_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION,
                                   view.history_width)
    if negative_field is not None:
        dataset.set_field_property(negative_field, FeatureType.TOKEN_SEQ, FeatureSource.INTERACTION,
                                   view.negative_width)
    setattr(dataset, STORE_ATTR, view)
    logger.info(f"{dataset_path}: {len(row_groups)} rows over {len(distinct)} history groups from {store.path}")


def history_lengths(dataset):
    """int64 [rows] lengths of ``item_id_list`` of the loaded (not yet built) dataset, either layout."""
    view = getattr(dataset, STORE_ATTR, None)
    if view is not None:
        return view.row_history_lengths()
    history_field = dataset.config["ITEM_ID_FIELD"] + dataset.config["LIST_SUFFIX"]
    return dataset.inter_feat[history_field].map(len).to_numpy()


def keep_rows(dataset, keep):
    """Keep the rows of the loaded ``inter_feat`` (DataFrame) where ``keep`` is True, in both layouts."""
    dataset.inter_feat = dataset.inter_feat[keep].reset_index(drop=True)
    view = getattr(dataset, STORE_ATTR, None)
    if view is not None:
        view.keep_rows(keep)


# -- hooks ----------------------------------------------------------------------------------------------------------
def remap(dataset, remap_list, recbole_remap):
    """RecBole's ``Dataset._remap`` when the list holds store fields: same vocabulary, without expanding the store.

    RecBole factorizes the concatenation of every field's tokens, so ids follow first appearance. The store's
    tokens come after the real fields in ``remap_list`` order; they add to the vocabulary only the items no real
    field has, in the order of their first occurrence in the rows' histories, then negatives.
    """
    view = getattr(dataset, STORE_ATTR, None)
    if view is None or not any(field in view.fields for _, field, _ in remap_list):
        return recbole_remap(dataset, remap_list)
    is_store = [field in view.fields for _, field, _ in remap_list]
    real = [entry for entry, stored in zip(remap_list, is_store) if not stored]
    order = [entry for entry, stored in zip(remap_list, is_store) if stored]
    if is_store != sorted(is_store):  # a store field before a real one
        raise ValueError("alias_of_item_id must list the item id field before item_id_list / neg_items for a "
                         "dataset with a history store")
    if real:
        tokens, split_point = dataset._concat_remaped_tokens(real)
        new_ids, uniques = pd.factorize(tokens)
        new_ids = np.split(new_ids + 1, split_point)
    else:
        new_ids, uniques = [], np.array([], dtype=object)
    known = pd.Index(uniques).get_indexer(view.store.items) >= 0  # store items RecBole already has
    extra = []
    for _, field, _ in order:
        unknown = view.used_items(field) & ~known
        if unknown.any():
            found = view.first_appearance(field, unknown)
            extra.append(view.store.items[found])
            known[found] = True
    mp = np.array(["[PAD]"] + list(uniques) + [t for chunk in extra for t in chunk])
    token_id = {t: i for i, t in enumerate(mp)}
    for (feat, field, ftype), ids in zip(real, new_ids):
        if field not in dataset.field2id_token:
            dataset.field2id_token[field] = mp
            dataset.field2token_id[field] = token_id
        feat[field] = ids
    for _, field, _ in order:
        if field not in dataset.field2id_token:
            dataset.field2id_token[field] = mp
            dataset.field2token_id[field] = token_id
    lookup = np.array([token_id.get(t, 0) for t in view.store.items], dtype=np.int64)
    for _, field, _ in order:  # one table per field: a field outside alias_of_item_id has a vocabulary of its own
        view.lookup[field] = lookup


def benchmark_presets(dataset, recbole_presets):
    """SequentialDataset's ``_benchmark_presets``: ``item_id_list_field`` and ``item_length`` from the store."""
    view = getattr(dataset, STORE_ATTR, None)
    if view is None:
        return recbole_presets(dataset)
    if view.history_field is None:
        raise ValueError(f"sequential models read {dataset.config['ITEM_ID_FIELD']}{dataset.config['LIST_SUFFIX']}; "
                         f"add it to load_col (inter)")
    dataset.item_id_list_field = view.history_field
    dataset.set_field_property(dataset.item_list_length_field, FeatureType.TOKEN, FeatureSource.INTERACTION, 1)
    dataset.inter_feat[dataset.item_list_length_field] = view.row_history_lengths()


def attach_rows(dataset):
    """After ``_change_feat_format``: give ``inter_feat`` (now an Interaction) its hidden group column."""
    view = getattr(dataset, STORE_ATTR, None)
    if view is None or not isinstance(dataset.inter_feat, Interaction) or ROW_FIELD in dataset.inter_feat:
        return
    if len(view.row_groups) != len(dataset.inter_feat):
        raise RuntimeError(f"{len(dataset.inter_feat)} rows but {len(view.row_groups)} history groups: rows were "
                           f"added or removed between loading and building the dataset")
    dataset.inter_feat[ROW_FIELD] = torch.from_numpy(view.row_groups)


def join(dataset, interaction):
    view = getattr(dataset, STORE_ATTR, None)
    return interaction if view is None else view.join(interaction)


__all__ = ["STORE_ATTR", "ROW_FIELD", "StoreView", "load_inter_feat", "history_lengths", "keep_rows", "remap",
           "benchmark_presets", "attach_rows", "join", "open_store"]
