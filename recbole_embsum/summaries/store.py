"""The summary cache: `<dataset>.summaries.jsonl`, one JSON object per line.

The first line is the header ``{"format": "recbole-embsum/summaries", "version": 1}``; each further line is
``{"user_id", "summary", "backend", "model", "prompt_hash", "source"}`` (all strings; ``user_id`` is the raw token
from the ``.inter`` files). ``source`` names the history rule the summary was written from (:data:`SOURCES`, see
``history.py``); readers accept records without it (older versions, other tools). Readers also accept files without
the header (written before it existed, or by other tools). The file is append-only: :class:`SummaryAppender` writes
each record as one whole line and flushes + fsyncs it, so a killed writer can leave at most a torn *last* line, which
readers ignore with a warning and the next appender cuts off before writing. Any other malformed line is an error
naming the file and the line.

An appender changes only a file that is ours (:func:`check_own_file`): one that starts with the header, or, for
files written before the header existed, one whose every complete line is a summary record (our writer writes whole
records, so anything else in a complete line means another program wrote the file). Anything else, e.g. a single
line of other text without its newline, is refused rather than taken for a torn write; so is a symbolic link to a
file outside the output's folder.
"""
import json
import logging
import os
from pathlib import Path

from recbole_embsum.text.jsonl import parse_object

logger = logging.getLogger(__name__)

FIELDS = ("user_id", "summary", "backend", "model", "prompt_hash")
HEADER = {"format": "recbole-embsum/summaries", "version": 1}
OPTIONAL_FIELDS = ("source",)
# The history each split's summaries are written from (summaries/history.py): training summaries only from items
# engaged with before the user's first training impression (never a training target); test references from the
# history of the user's latest test impression.
SOURCES = {"train": "history-before-first-train-impression", "test": "history-of-latest-test-impression"}


class SummaryFileError(ValueError):
    """A summaries file has a malformed line (not a torn last line)."""


def summaries_path(data_path, dataset, split="train"):
    """The default location of a dataset's summary file: ``<data_path>/<dataset>/<dataset>.summaries.jsonl``
    (``split="test"``: ``<dataset>.test.summaries.jsonl``, the evaluation users' reference summaries)."""
    infix = "" if split == "train" else f".{split}"
    return Path(data_path) / dataset / f"{dataset}{infix}.summaries.jsonl"


def make_record(user_id, summary, backend, model, prompt_hash, source=None):
    """A record dict with the fields in file order (``source`` only when given)."""
    record = dict(zip(FIELDS, (user_id, summary, backend, model, prompt_hash)))
    if source is not None:
        record["source"] = source
    return record


def _parse_line(text, path, lineno):
    """Decode one line into a record dict, or raise :class:`SummaryFileError` naming file, line and field."""
    record = parse_object(text, path, lineno, SummaryFileError)
    for field in FIELDS + OPTIONAL_FIELDS:
        if field not in record:
            if field in OPTIONAL_FIELDS:
                continue
            raise SummaryFileError(f"{path}, line {lineno}: missing field '{field}'")
        if not isinstance(record[field], str):
            raise SummaryFileError(
                f"{path}, line {lineno}: field '{field}' must be a string, got {type(record[field]).__name__}"
            )
    return record


def _is_header(line):
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and value.get("format") == HEADER["format"]


def iter_records(path):
    """Yield every record of a summaries file in file order (streaming).

    The header line and blank lines are skipped. A last line without its newline that does not parse is a record
    torn by a killed writer: it is skipped with a warning. Any other bad line raises :class:`SummaryFileError`.
    """
    path = Path(path)
    with open(path, "r", encoding="utf-8", newline="") as handle:
        lineno = 0
        for lineno, line in enumerate(handle, start=1):
            if not line.strip() or (lineno == 1 and _is_header(line)):
                continue
            if not line.endswith("\n"):  # only the last line can lack its newline
                try:
                    record = _parse_line(line, path, lineno)
                except SummaryFileError as err:
                    logger.warning("ignoring a torn last line left by an interrupted writer: %s", err)
                    return
                yield record
                return
            yield _parse_line(line, path, lineno)


def load_records(path):
    """All records of a summaries file as a list of dicts (see :func:`iter_records`)."""
    return list(iter_records(path))


def load_summaries(path, source=None):
    """Read a summaries file into ``{raw user id: summary}``; a later line for the same user wins.

    With ``source`` (one of :data:`SOURCES`), log a warning when records were not written under that rule (older
    ``summarize`` versions wrote training summaries from the training clicks too, i.e. from the training targets).
    """
    summaries, other = {}, {}
    for record in iter_records(path):
        summaries[record["user_id"]] = record["summary"]
        other.pop(record["user_id"], None)
        if source is not None and record.get("source") != source:
            other[record["user_id"]] = record.get("source", "not recorded")
    if other:
        found = sorted(set(other.values()))
        logger.warning("%s: %d of %d summaries were not written from the %s (source: %s); rewrite them with "
                       "`recbole-embsum summarize --overwrite` unless you made them that way yourself",
                       path, len(other), len(summaries), source.replace("-", " "), ", ".join(found))
    return summaries


def _not_ours(path, reason):
    return SummaryFileError(f"{path} exists and is not a recbole-embsum summaries file ({reason}); it was left "
                            f"unchanged: pass --overwrite to replace it, or --output NEW_FILE")


def check_own_file(path):
    """Raise :class:`SummaryFileError` unless ``path`` is absent, empty or a summaries file of ours (module
    docstring), or if it is a symbolic link out of its folder."""
    path = Path(path)
    if path.is_symlink():
        target = path.resolve()
        if target.parent != path.parent.resolve():
            raise SummaryFileError(f"{path} is a symbolic link to {target}, outside {path.parent}; refusing to write "
                                   f"through it: pass the real file as --output")
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        complete = 0
        for lineno, raw in enumerate(handle, start=1):
            torn_tail = not raw.endswith(b"\n") and complete > 0  # a torn tail only follows whole records of ours
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if torn_tail:
                    return
                raise _not_ours(path, f"line {lineno} is not UTF-8 text") from None
            if lineno == 1 and _is_header(line):
                return
            if not line.strip():
                continue
            try:
                _parse_line(line, path, lineno)
            except SummaryFileError as err:
                if not torn_tail:
                    raise _not_ours(path, f"no header, and {str(err)[len(str(path)) + 2:]}") from None
            complete += 1


class SummaryAppender:
    """Append records to a summaries file, one whole line per ``os.write``, each flushed and fsynced.

    Opening refuses a file that is not ours (:func:`check_own_file`), writes the header into a new or empty file and
    repairs a torn tail left by a killed writer: a last line without its newline is cut off (if it does not parse) or
    completed with its newline (if it does), so new records never glue onto a fragment. Use as a context manager.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_own_file(self.path)
        self._repair_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size == 0:
            self._write((json.dumps(HEADER) + "\n").encode("utf-8"))

    def _repair_tail(self):
        if not self.path.exists():
            return
        with open(self.path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            # Find the start of the last (unterminated) line, reading backwards in blocks.
            start, block = size, 1 << 16
            while start > 0:
                lo = max(0, start - block)
                handle.seek(lo)
                chunk = handle.read(start - lo)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    start = lo + cut + 1
                    break
                start = lo
            handle.seek(start)
            tail = handle.read()
            try:
                _parse_line(tail.decode("utf-8"), self.path, "last")
            except (SummaryFileError, UnicodeDecodeError) as err:
                logger.warning("%s: cutting off a torn last line (%d bytes) left by an interrupted writer (%s)",
                               self.path, len(tail), err)
                handle.truncate(start)
            else:
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, record):
        """Write one record (a dict with the five fields, and ``source`` if present) as a single line, durably."""
        missing = [field for field in FIELDS if field not in record]
        if missing:
            raise ValueError(f"summary record lacks field(s) {missing}: {record!r}")
        fields = FIELDS + tuple(field for field in OPTIONAL_FIELDS if field in record)
        line = json.dumps({field: record[field] for field in fields}, ensure_ascii=False) + "\n"
        self._write(line.encode("utf-8"))

    def _write(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
