"""What each user engaged with, read from a converted dataset folder (docs/design.md) with the csv module.

**Definition of a user's engagement** (the input of the summary prompt): the ``item_id_list`` of the user's latest
training row (largest ``timestamp``; a later row in the file wins a tie), followed by the items the user clicked in
the training split (rows with ``label > 0``, in ``(timestamp, row)`` order) that are not already in that history.
Duplicates keep their first position. The result is chronological, oldest first. This covers both ways a converter
can build histories: a fixed pre-period history (MIND's ``History`` column: the training clicks are appended) and a
growing one (earlier clicks are already in the latest history, so only the latest click is appended). Valid and test
rows are never read for it, so training summaries only see what training sees.

For the summary-quality evaluation (paper Table 3), :func:`evaluation_histories` gives the test users who are not in
the training split their test-time history instead (``recbole-embsum summarize --split test``).
"""
import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

# Columns this module needs from a `.inter` header (the `name:type` cells of the contract).
_NEEDED_COLUMNS = ("user_id", "item_id", "label", "timestamp", "item_id_list")
TEXT_FIELDS = ("item_id", "title", "abstract", "category", "subcategory")


class DatasetFileError(ValueError):
    """A converted dataset file that does not follow the contract; the message names file, line and field."""


@dataclass(frozen=True)
class ItemText:
    """One line of ``<dataset>.text.jsonl`` (Goodreads: description in ``abstract``, genre in ``category``)."""

    item_id: str
    title: str
    abstract: str
    category: str
    subcategory: str


def dataset_file(data_path, dataset, suffix):
    """``<data_path>/<dataset>/<dataset><suffix>``, e.g. suffix ``.train.inter``."""
    return Path(data_path) / dataset / f"{dataset}{suffix}"


def load_item_texts(path):
    """Read ``<dataset>.text.jsonl`` into ``{item_id: ItemText}``; missing text fields read as empty strings."""
    path = Path(path)
    items = {}
    with open(path, "r", encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetFileError(f"{path}, line {lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("item_id"), str) or not row["item_id"]:
                raise DatasetFileError(f"{path}, line {lineno}, field 'item_id': missing or not a non-empty string")
            values = {}
            for field in TEXT_FIELDS[1:]:
                value = row.get(field) or ""
                if not isinstance(value, str):
                    raise DatasetFileError(
                        f"{path}, line {lineno}, field '{field}': expected a string, got {type(value).__name__}"
                    )
                values[field] = value
            items[row["item_id"]] = ItemText(item_id=row["item_id"], **values)
    return items


def _column_positions(header, path):
    names = [cell.split(":", 1)[0] for cell in header]
    missing = [name for name in _NEEDED_COLUMNS if name not in names]
    if missing:
        raise DatasetFileError(f"{path}, line 1: header lacks column(s) {missing}; got {header}")
    return {name: names.index(name) for name in _NEEDED_COLUMNS}


def _float(cell, path, lineno, field):
    try:
        return float(cell)
    except ValueError:
        raise DatasetFileError(f"{path}, line {lineno}, field '{field}': not a number: {cell!r}") from None


def _scan_rows(path):
    """Stream a ``.inter`` file: ``(latest, clicks)`` with ``latest[user] = (timestamp, row number, history cell)`` of
    the user's latest row (a later row wins a tie) and ``clicks[user] = [(timestamp, row number, item_id)]`` of
    rows with ``label > 0``. Users appear in the order of their first row."""
    path = Path(path)
    latest = {}
    clicks = {}
    csv.field_size_limit(sys.maxsize)  # a token_seq cell can be long
    with open(path, "r", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise DatasetFileError(f"{path}: empty file (expected a header line)")
        col = _column_positions(header, path)
        width = max(col.values()) + 1
        for row in tqdm(reader, desc=f"reading {path.name}", unit=" rows", mininterval=1.0, leave=False):
            lineno = reader.line_num
            if len(row) < width:
                raise DatasetFileError(f"{path}, line {lineno}: {len(row)} columns, expected {len(header)}")
            user = row[col["user_id"]]
            if not user:
                raise DatasetFileError(f"{path}, line {lineno}, field 'user_id': empty")
            stamp = _float(row[col["timestamp"]], path, lineno, "timestamp")
            key = (stamp, lineno)
            if user not in latest or key >= latest[user][:2]:
                latest[user] = (stamp, lineno, row[col["item_id_list"]])
            user_clicks = clicks.setdefault(user, [])
            if _float(row[col["label"]], path, lineno, "label") > 0:
                user_clicks.append((stamp, lineno, row[col["item_id"]]))
    return latest, clicks


def training_engagements(train_path):
    """Stream ``<dataset>.train.inter`` and return ``{user_id: [item_id, ...]}`` (chronological, oldest first).

    Users appear in the order of their first training row. See the module docstring for the exact definition.
    """
    latest, clicks = _scan_rows(train_path)
    engagements = {}
    for user, (_, _, history_cell) in latest.items():
        sequence = list(dict.fromkeys(history_cell.split()))  # order-preserving de-duplication
        seen = set(sequence)
        for _, _, item in sorted(clicks[user]):
            if item not in seen:
                seen.add(item)
                sequence.append(item)
        engagements[user] = sequence
    logger.info("%s: %d training users", train_path, len(engagements))
    return engagements


def evaluation_histories(inter_path, training_users):
    """Histories of the users of an evaluation file (``<dataset>.test.inter``) who are not in ``training_users``
    (the paper's Table 3 users): ``{user_id: [item_id, ...]}``, the ``item_id_list`` of the user's latest row in
    that file, de-duplicated, chronological. Only the history is read, never the row's candidates or labels, so a
    summary of it sees what the model sees when it scores that row. Users with an empty history are included (with
    ``[]``)."""
    training_users = set(training_users)
    latest, _ = _scan_rows(inter_path)
    histories = {user: list(dict.fromkeys(cell.split())) for user, (_, _, cell) in latest.items()
                 if user not in training_users}
    logger.info("%s: %d users not in training", inter_path, len(histories))
    return histories
