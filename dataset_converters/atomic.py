"""The one writer for RecBole atomic files and the JSON side files of a converted dataset.

Atomic files (`.inter`, `.item`) have a header of `name:type` cells and are tab separated, UTF-8, written with
`csv.writer(delimiter="\\t", quoting=QUOTE_MINIMAL, lineterminator="\\n")`: RecBole reads them with
`pandas.read_csv(engine="python")`, whose default `"` quoting then gives back the exact text, even a value that starts
with a quote. Tabs, carriage returns and newlines inside values are replaced by spaces before writing.

Every file is written to a temporary file in the destination folder and renamed into place with `os.replace`, so a
reader never sees half a file and an interrupted run leaves no partial output behind.
"""
import csv
import json
import os
import re
import tempfile

# Columns of every `.inter` file, in order (docs/design.md, "The converted dataset folder").
INTER_FIELDS = (
    ("impression_id", "token"),
    ("user_id", "token"),
    ("item_id", "token"),
    ("label", "float"),
    ("timestamp", "float"),
    ("item_id_list", "token_seq"),
    ("neg_items", "token_seq"),
)
# Columns of the `.inter` files of the store layout (format 2): the scalar ones; `item_id_list` and `neg_items` live
# in `<name>.store/` (dataset_converters/store.py).
STORE_INTER_FIELDS = INTER_FIELDS[:5]
# Columns of the `.item` file: only small categorical features; the text lives in `<name>.text.jsonl`.
ITEM_FIELDS = (
    ("item_id", "token"),
    ("category", "token"),
    ("subcategory", "token"),
)
SEQ_SEPARATOR = " "  # RecBole's default `seq_separator`
_CONTROL_WHITESPACE = re.compile(r"[\t\r\n]")


def _file_mode():
    """Permissions of a newly created file under the current umask (mkstemp alone would give 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def clean_cell(value):
    """Text as it may appear in one atomic-file cell: tabs, CRs and newlines become spaces."""
    if "\t" in value or "\n" in value or "\r" in value:
        return _CONTROL_WHITESPACE.sub(" ", value)
    return value


def format_float(value):
    """A float cell without a needless fraction: 1700000000.0 -> "1700000000", 0.5 -> "0.5".

    A str is taken as already formatted (lets a caller format a value shared by many rows once).
    """
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class AtomicFile:
    """A file that appears at `path` only when the `with` block finishes without an exception.

    Yields a UTF-8 text handle (no newline translation), or a binary one when `binary`.
    """

    def __init__(self, path, binary=False):
        self.path = os.fspath(path)
        self.binary = binary
        self._handle = None

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp_path = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(self.path) + ".", suffix=".tmp")
        self._handle = os.fdopen(fd, "wb") if self.binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
        return self._handle

    def __exit__(self, exc_type, exc, tb):
        try:
            self._handle.close()  # flushes: may fail, e.g. on a full disk
        except BaseException:
            os.unlink(self._tmp_path)
            raise
        if exc_type is None:
            os.chmod(self._tmp_path, _file_mode())
            os.replace(self._tmp_path, self.path)
        else:
            os.unlink(self._tmp_path)
        return False


class AtomicTable:
    """Writes one RecBole atomic file row by row; use as a context manager.

    `fields` is a sequence of `(name, type)`; `write(row)` takes one value per field: str for token, a number for
    float, a sequence of str for token_seq.
    """

    def __init__(self, path, fields):
        self.path = os.fspath(path)
        self.fields = tuple(fields)
        self.rows = 0
        self._file = AtomicFile(self.path)
        self._writer = None
        self._formatters = [_FORMATTERS[ftype] for _, ftype in self.fields]

    def __enter__(self):
        handle = self._file.__enter__()
        self._writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        self._writer.writerow([f"{name}:{ftype}" for name, ftype in self.fields])
        return self

    def write(self, row):
        self._writer.writerow([fmt(value) for fmt, value in zip(self._formatters, row)])
        self.rows += 1

    def write_formatted(self, rows):
        """Writes rows whose cells are already strings formatted as `write` would (fast path for many rows)."""
        self._writer.writerows(rows)
        self.rows += len(rows)

    def __exit__(self, exc_type, exc, tb):
        return self._file.__exit__(exc_type, exc, tb)


def _format_token_seq(values):
    """Space-separated tokens; a str is taken as already joined (shared by many rows, joined once)."""
    return values if isinstance(values, str) else SEQ_SEPARATOR.join(values)


_FORMATTERS = {
    "token": clean_cell,
    "float": format_float,
    "token_seq": _format_token_seq,
}


class JsonlFile:
    """Writes JSON objects one per line (UTF-8, non-ASCII kept as is), atomically; use as a context manager."""

    def __init__(self, path):
        self._file = AtomicFile(path)
        self._handle = None
        self.rows = 0

    def __enter__(self):
        self._handle = self._file.__enter__()
        return self

    def write(self, record):
        self._handle.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
        self.rows += 1

    def __exit__(self, exc_type, exc, tb):
        return self._file.__exit__(exc_type, exc, tb)


def write_json(path, obj):
    """Writes `obj` as indented JSON with sorted keys, atomically."""
    with AtomicFile(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")
