"""The compact history store of a converted dataset (format 2): histories and training negatives stored once per
group of rows that share them, as memory-mappable int32 arrays, beside `.inter` files that keep only scalar columns.

A folder `<name>.store/` next to the `.inter` files holds:

    manifest.json            {"format_version": 2, "splits": {split: {"rows": R, "groups": [first, end]}}, ...}
    items.txt                the item tokens, one per line; the arrays below hold 0-based line numbers
    group_rows.npy           int32 [G]: how many consecutive `.inter` rows each group covers
    history_offsets.npy      int64 [G+1]; history.npy int32 [H]: group g's history is
                             history[history_offsets[g]:history_offsets[g+1]] (chronological, oldest first)
    negative_offsets.npy     int64 [G+1]; negatives.npy int32 [N]: group g's non-clicked items (train groups only)

Groups of all splits are concatenated in the order train, valid, test, predict; split `s` owns groups
`splits[s]["groups"][0] <= g < splits[s]["groups"][1]`, and its `.inter` file's rows are those groups' rows, in order
(row i of the file belongs to the group whose cumulative `group_rows` first exceeds i). A group is one impression in
MIND (its clicks or candidates share one history and one list of negatives); in Goodreads' train split each click
has its own growing history, hence its own group.

Every file is written to a temporary folder and the whole folder is renamed into place when the conversion ends, so a
reader never sees half a store. `format_version` changes whenever this layout does; `open_store` refuses a version it
does not know, with a message saying what to do.
"""
import json
import os
import shutil
import tempfile
from array import array

import numpy as np

FORMAT_VERSION = 2
STORE_SUFFIX = ".store"
MANIFEST = "manifest.json"
ITEMS = "items.txt"
SPLIT_ORDER = ("train", "valid", "test", "predict")
_ARRAYS = ("group_rows", "history_offsets", "history", "negative_offsets", "negatives")
_FLUSH_VALUES = 1 << 20  # values buffered in memory per split before they go to the temporary file


def store_path(folder, name):
    """`<folder>/<name>.store`: the store folder of a converted dataset."""
    return os.path.join(os.fspath(folder), name + STORE_SUFFIX)


class StoreFormatError(ValueError):
    """A store that this version cannot read (unknown format version, missing or inconsistent files)."""


def _write_npy(path, dtype, count, raw_paths):
    """Writes a 1-D `.npy` of `count` values whose raw bytes are the concatenation of `raw_paths`."""
    with open(path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                   "shape": (count,)})
        for raw in raw_paths:
            with open(raw, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)


class _SplitArrays:
    """One split's groups while converting: offsets and row counts in memory (one number per group), the history and
    negative values streamed to raw int32 files in the temporary store folder."""

    def __init__(self, folder, split):
        self.rows = array("i")
        self.history_ends = array("q")
        self.negative_ends = array("q")
        self._buffers = {"history": array("i"), "negatives": array("i")}
        self._counts = {"history": 0, "negatives": 0}
        self.paths = {kind: os.path.join(folder, f"{split}.{kind}.raw") for kind in self._buffers}
        self._handles = {kind: open(path, "wb") for kind, path in self.paths.items()}

    def add(self, history, negatives, rows):
        for kind, values in (("history", history), ("negatives", negatives)):
            buffer = self._buffers[kind]
            buffer.extend(values)
            self._counts[kind] += len(values)
            if len(buffer) >= _FLUSH_VALUES:
                buffer.tofile(self._handles[kind])
                del buffer[:]
        self.rows.append(rows)
        self.history_ends.append(self._counts["history"])
        self.negative_ends.append(self._counts["negatives"])

    def close(self):
        for kind, handle in self._handles.items():
            self._buffers[kind].tofile(handle)
            handle.close()

    def count(self, kind):
        return self._counts[kind]


class StoreWriter:
    """Writes `<folder>/<name>.store/` while a converter streams its impressions; use as a context manager.

    `group(split, history, negatives, rows)` records `rows` consecutive rows of `split`'s `.inter` file that share
    `history` and `negatives` (sequences of item tokens). The store appears, replacing any earlier one, when the block
    ends without an exception; otherwise nothing is left behind.
    """

    def __init__(self, folder, name):
        self.path = store_path(folder, name)
        self._tmp = tempfile.mkdtemp(dir=os.fspath(folder), prefix=f".{name}{STORE_SUFFIX}.", suffix=".tmp")
        self._items = {}
        self._splits = {}

    def __enter__(self):
        return self

    def _index(self, token):
        index = self._items.get(token)
        if index is None:
            index = self._items[token] = len(self._items)
        return index

    def group(self, split, history, negatives, rows):
        if split not in SPLIT_ORDER:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_ORDER}")
        arrays = self._splits.get(split)
        if arrays is None:
            arrays = self._splits[split] = _SplitArrays(self._tmp, split)
        arrays.add([self._index(t) for t in history], [self._index(t) for t in negatives], rows)

    def __exit__(self, exc_type, exc, tb):
        for arrays in self._splits.values():
            arrays.close()
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return False
        try:
            self._finish()
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        return False

    def _finish(self):
        order = [s for s in SPLIT_ORDER if s in self._splits]
        manifest = {"format_version": FORMAT_VERSION, "items": len(self._items), "splits": {}}
        first = 0
        for split in order:
            groups = len(self._splits[split].rows)
            manifest["splits"][split] = {"rows": int(sum(self._splits[split].rows)), "groups": [first, first + groups]}
            first += groups
        self._write_arrays(order)
        with open(os.path.join(self._tmp, ITEMS), "w", encoding="utf-8", newline="\n") as handle:
            for token in self._items:  # dicts keep insertion order: line number = index
                handle.write(token + "\n")
        with open(os.path.join(self._tmp, MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
        for name in os.listdir(self._tmp):
            os.chmod(os.path.join(self._tmp, name), 0o644)
        os.chmod(self._tmp, 0o755)
        old = None
        if os.path.exists(self.path):
            old = self.path + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def _write_arrays(self, order):
        splits = [self._splits[s] for s in order]
        rows = np.concatenate([np.frombuffer(s.rows, dtype=np.int32) for s in splits] or [np.zeros(0, np.int32)])
        np.save(os.path.join(self._tmp, "group_rows.npy"), rows)
        for kind, ends_name in (("history", "history_ends"), ("negatives", "negative_ends")):
            offsets, base = [np.zeros(1, np.int64)], 0
            for s in splits:
                offsets.append(np.frombuffer(getattr(s, ends_name), dtype=np.int64) + base)
                base += s.count(kind)
            offsets_name = "history_offsets" if kind == "history" else "negative_offsets"
            np.save(os.path.join(self._tmp, offsets_name + ".npy"), np.concatenate(offsets))
            _write_npy(os.path.join(self._tmp, kind + ".npy"), np.int32, base, [s.paths[kind] for s in splits])
            for s in splits:
                os.unlink(s.paths[kind])


class Store:
    """A store opened for reading: arrays memory-mapped read-only (shared by every process that maps them), the item
    tokens in memory. `split_groups(split)` gives a split's group range; `groups_of_rows(split)` maps its rows."""

    def __init__(self, path):
        self.path = os.fspath(path)
        manifest_path = os.path.join(self.path, MANIFEST)
        try:
            with open(manifest_path, "r", encoding="utf-8") as handle:
                self.manifest = json.load(handle)
        except (OSError, ValueError) as error:
            raise StoreFormatError(f"{manifest_path}: cannot read the store manifest ({error}); convert the dataset "
                                   f"again with `recbole-embsum convert ... --overwrite`") from None
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreFormatError(
                f"{manifest_path}: format_version {version!r}, but this recbole-embsum reads format {FORMAT_VERSION}; "
                f"convert the raw data again with this version (`recbole-embsum convert ... --overwrite`), or install "
                f"the recbole-embsum that wrote it")
        self.splits = self.manifest["splits"]
        arrays = {}
        for name in _ARRAYS:
            file = os.path.join(self.path, name + ".npy")
            try:
                arrays[name] = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as error:
                raise StoreFormatError(f"{file}: cannot map the store array ({error}); convert the dataset again "
                                       f"with `recbole-embsum convert ... --overwrite`") from None
        self.group_rows = arrays["group_rows"]
        self.history_offsets = arrays["history_offsets"]
        self.history = arrays["history"]
        self.negative_offsets = arrays["negative_offsets"]
        self.negatives = arrays["negatives"]
        with open(os.path.join(self.path, ITEMS), "r", encoding="utf-8", newline="\n") as handle:
            self.items = np.array(handle.read().split("\n")[:-1], dtype=object)
        groups = len(self.group_rows)
        if (len(self.history_offsets) != groups + 1 or len(self.negative_offsets) != groups + 1
                or len(self.items) != self.manifest.get("items")):
            raise StoreFormatError(f"{self.path}: the store's arrays disagree with its manifest (an interrupted copy?); "
                                   f"convert the dataset again with `recbole-embsum convert ... --overwrite`")

    def __reduce__(self):
        return Store, (self.path,)  # pickled by path: unpickling maps the arrays again instead of copying them

    def split_groups(self, split):
        if split not in self.splits:
            raise StoreFormatError(f"{self.path}: the store has no split {split!r} (it has {sorted(self.splits)})")
        first, end = self.splits[split]["groups"]
        return int(first), int(end)

    def groups_of_rows(self, split):
        """int32 [R]: the global group index of each row of `split`'s `.inter` file, in file order."""
        first, end = self.split_groups(split)
        return np.repeat(np.arange(first, end, dtype=np.int32), self.group_rows[first:end])

    def history_tokens(self, group):
        """The raw item tokens of one group's history (chronological)."""
        return self.items[self.history[self.history_offsets[group]:self.history_offsets[group + 1]]]

    def row_histories(self, split):
        """Yields each row's history of `split` as a space-separated token string, in `.inter` file order."""
        first, end = self.split_groups(split)
        for group in range(first, end):
            cell = " ".join(self.history_tokens(group))
            for _ in range(int(self.group_rows[group])):
                yield cell


def open_store(folder, name):
    """The dataset's store, or None when `<folder>/<name>.store/` does not exist (a folder in the inline format 1,
    whose `.inter` files carry `item_id_list` and `neg_items` themselves)."""
    path = store_path(folder, name)
    if not os.path.isdir(path):
        return None
    return Store(path)
