"""What each user engaged with, read from a converted dataset folder (docs/design.md) with the csv module.

**Training summaries are written from the history before the user's first training impression**
(:func:`training_engagements`, recorded as ``source: "history-before-first-train-impression"`` in the summaries
file): the ``item_id_list`` of the user's earliest training row (smallest ``timestamp``; the earlier row in the file
wins a tie), de-duplicated, chronological (oldest first). A training row's summary is the decoder's target and the
source of the global user vector while that row's click is scored, so it must not be written from that click or any
later one: every item it is written from precedes every training impression of the user. For MIND this is the
behaviors.tsv ``History`` column; for Goodreads it is the user's history-only books (the earliest train-window
positives, which the converter writes into histories but not as training rows); a user whose first training row has
an empty history (a Goodreads user with a single train-window positive) gets no summary and trains "wo L_sum".
Training clicks, valid and test rows are never read for it.

For the summary-quality evaluation (paper Table 3), :func:`evaluation_histories` gives the test users who are not in
the training split their test-time history instead (``recbole-embsum summarize --split test``, recorded as
``source: "history-of-latest-test-impression"``): the history of their latest test row, never its candidates or labels.
"""
import csv
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dataset_converters.store import open_store
from recbole_embsum.text.records import ITEM_TEXT_FIELDS

logger = logging.getLogger(__name__)

# Columns this module needs from a `.inter` header (the `name:type` cells of the contract).
_NEEDED_COLUMNS = ("user_id", "item_id", "label", "timestamp", "item_id_list")


class DatasetFileError(ValueError):
    """A converted dataset file that does not follow the contract; the message names file, line and field."""


@dataclass(frozen=True)
class ItemText:
    """An item as the prompt shows it: one record of ``<dataset>.text.jsonl`` (Goodreads: description in
    ``abstract``, genre in ``category``)."""

    item_id: str
    title: str
    abstract: str
    category: str
    subcategory: str

    @classmethod
    def from_record(cls, record):
        """From a record of :func:`recbole_embsum.text.records.load_item_texts`."""
        return cls(*(record[field] for field in ITEM_TEXT_FIELDS))


def dataset_file(data_path, dataset, suffix):
    """``<data_path>/<dataset>/<dataset><suffix>``, e.g. suffix ``.train.inter``."""
    return Path(data_path) / dataset / f"{dataset}{suffix}"


def _column_positions(header, path):
    names = [cell.split(":", 1)[0] for cell in header]
    missing = [name for name in _NEEDED_COLUMNS if name not in names]
    if missing:
        raise DatasetFileError(f"{path}, line 1: header lacks column(s) {missing}; got {header}")
    return {name: names.index(name) for name in _NEEDED_COLUMNS}


def _store_history_cells(path, header):
    """The ``item_id_list`` cell of each row of ``path`` (``<name>.<split>.inter``), or None when the file carries
    it as a column; a file of the store layout (no such column) reads it from ``<name>.store/``."""
    if any(cell.split(":", 1)[0] == "item_id_list" for cell in header):
        return None
    name, _, split = path.name[: -len(".inter")].rpartition(".")
    store = open_store(path.parent, name)
    if store is None:
        raise DatasetFileError(f"{path}, line 1: no item_id_list column and no {name}.store/ beside it; convert the "
                               f"dataset again with `recbole-embsum convert ... --overwrite`")
    return store.row_histories(split)


def _float(cell, path, lineno, field):
    try:
        return float(cell)
    except ValueError:
        raise DatasetFileError(f"{path}, line {lineno}, field '{field}': not a number: {cell!r}") from None


def _history_cells(path, pick):
    """Stream a ``.inter`` file: ``{user: history cell}`` of each user's earliest row (``pick="first"``: smallest
    ``(timestamp, row)``) or latest row (``pick="last"``: largest ``(timestamp, row)``, so a later row wins a tie).
    Users appear in the order of their first row. Candidates and labels are read only to validate the row."""
    path = Path(path)
    chosen = {}
    csv.field_size_limit(sys.maxsize)  # a token_seq cell can be long
    with open(path, "r", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise DatasetFileError(f"{path}: empty file (expected a header line)")
        histories = _store_history_cells(path, header)
        if histories is not None:
            header = header + ["item_id_list:token_seq"]
        col = _column_positions(header, path)
        width = max(col.values()) + 1
        for row in tqdm(reader, desc=f"reading {path.name}", unit=" rows", mininterval=1.0, leave=False):
            lineno = reader.line_num
            if histories is not None:
                cell = next(histories, None)
                if cell is None:
                    raise DatasetFileError(f"{path}, line {lineno}: more rows than its history store describes; "
                                           f"convert the dataset again with `recbole-embsum convert ... --overwrite`")
                row.append(cell)
            if len(row) < width:
                raise DatasetFileError(f"{path}, line {lineno}: {len(row)} columns, expected {len(header)}")
            user = row[col["user_id"]]
            if not user:
                raise DatasetFileError(f"{path}, line {lineno}, field 'user_id': empty")
            key = (_float(row[col["timestamp"]], path, lineno, "timestamp"), lineno)
            _float(row[col["label"]], path, lineno, "label")
            if user not in chosen or (key < chosen[user][0] if pick == "first" else key >= chosen[user][0]):
                chosen[user] = (key, row[col["item_id_list"]])
    return {user: cell for user, (_, cell) in chosen.items()}


def training_engagements(train_path):
    """Stream ``<dataset>.train.inter`` and return ``{user_id: [item_id, ...]}``: the history of each user's earliest
    training row, de-duplicated, chronological (oldest first); ``[]`` for a user whose first training row has an empty
    history. Every training user is a key, in the order of their first training row. See the module docstring."""
    engagements = {user: list(dict.fromkeys(cell.split())) for user, cell in _history_cells(train_path, "first").items()}
    empty = sum(1 for items in engagements.values() if not items)
    logger.info("%s: %d training users, %d with an empty history before their first training impression",
                train_path, len(engagements), empty)
    return engagements


def evaluation_histories(inter_path, training_users):
    """Histories of the users of an evaluation file (``<dataset>.test.inter``) who are not in ``training_users``
    (the paper's Table 3 users): ``{user_id: [item_id, ...]}``, the ``item_id_list`` of the user's latest row in
    that file, de-duplicated, chronological. Only the history is read, never the row's candidates or labels, so a
    summary of it sees what the model sees when it scores that row. Users with an empty history are included (with
    ``[]``)."""
    training_users = set(training_users)
    histories = {user: list(dict.fromkeys(cell.split())) for user, cell in _history_cells(inter_path, "last").items()
                 if user not in training_users}
    logger.info("%s: %d users not in training", inter_path, len(histories))
    return histories
