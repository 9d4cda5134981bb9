"""Reading raw input line by line (plain, gzip or a zip member) and reporting malformed lines.

Every parse error is a `BadLineError` naming the file, the 1-based line number and the field. `LineErrors` decides
what happens to it: stop (the default) or, with `--skip-bad-lines`, count it per file and go on. A file that cannot be
read at all (a corrupt zip, a truncated .gz, an empty file) is an `InputError`, which no option skips. A UTF-8
byte-order mark at the start of a file is not part of the first line.
"""
import collections
import contextlib
import gzip
import logging
import os
import zipfile
import zlib

from tqdm import tqdm

logger = logging.getLogger(__name__)

# How many skipped lines are logged one by one before only counting.
_LOGGED_BAD_LINES = 5


class BadLineError(ValueError):
    """A raw input line that cannot be parsed; the message names file, line number and field."""

    def __init__(self, source, line_no, field, message):
        self.source = source
        self.line_no = line_no
        self.field = field
        super().__init__(f"{source}, line {line_no}, field '{field}': {message}")


class InputError(ValueError):
    """A raw input file that cannot be read as a whole; the message names the file and what to do."""


# What a damaged compressed file raises while it is read.
_CORRUPT = (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile)


def corrupt_input(label, error):
    """The InputError for a damaged archive or compressed file."""
    reason = str(error) or type(error).__name__
    return InputError(f"{label}: cannot be read ({reason}); the file is truncated or corrupt, download or extract it "
                      f"again")


def open_zip(path):
    """`zipfile.ZipFile(path)`, or an InputError naming the file when it is not a readable zip."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise corrupt_input(path, error) from None


class Source:
    """One raw input file: a path on disk (optionally .gz) or a member of a .zip archive."""

    def __init__(self, path, member=None):
        self.path = os.fspath(path)
        self.member = member

    @property
    def label(self):
        """How error messages name this file, e.g. `MINDsmall_dev.zip:MINDsmall_dev/behaviors.tsv`."""
        return f"{self.path}:{self.member}" if self.member else self.path

    def __repr__(self):
        return f"Source({self.label!r})"

    @contextlib.contextmanager
    def _open_binary(self):
        if self.member is not None:
            with open_zip(self.path) as archive, archive.open(self.member) as handle:
                yield handle
        elif self.path.endswith(".gz"):
            with gzip.open(self.path, "rb") as handle:
                yield handle
        else:
            with open(self.path, "rb") as handle:
                yield handle

    def lines(self, desc=None, required=True):
        """Yields `(line_no, text)` for each non-empty line, without its line ending, with a tqdm bar.

        A line that is not valid UTF-8 raises BadLineError (field `(encoding)`), so it can be skipped like any other.
        A leading UTF-8 byte-order mark is dropped. A damaged file raises InputError; so does a `required` file
        without any non-empty line.
        """
        found = False
        try:
            with self._open_binary() as handle:
                bar = tqdm(handle, desc=desc or os.path.basename(self.member or self.path), unit=" lines",
                           disable=None, mininterval=1.0)
                for line_no, raw in enumerate(bar, 1):
                    if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                        raw = raw[3:]
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as error:
                        found = True
                        yield line_no, _Undecodable(self.label, line_no, error)
                        continue
                    text = text.rstrip("\r\n")
                    if text:
                        found = True
                        yield line_no, text
        except _CORRUPT as error:
            raise corrupt_input(self.label, error) from None
        if required and not found:
            raise InputError(f"{self.label} is empty: it has no lines to convert; check that the download or "
                             f"extraction finished")


class _Undecodable:
    """Stands in for a line that is not UTF-8; `LineErrors.parse` turns it into a BadLineError."""

    def __init__(self, label, line_no, error):
        self.error = BadLineError(label, line_no, "(encoding)", f"not valid UTF-8 ({error.reason})")


class LineErrors:
    """Strict (raise) or lenient (count per file) handling of malformed lines."""

    def __init__(self, skip_bad_lines=False):
        self.skip_bad_lines = skip_bad_lines
        self.counts = collections.Counter()

    def parse(self, source, lines, parse_line):
        """Yields `parse_line(source_label, line_no, text)` for each line of `lines`, handling BadLineError."""
        for line_no, text in lines:
            try:
                if isinstance(text, _Undecodable):
                    raise text.error
                yield parse_line(source.label, line_no, text)
            except BadLineError as error:
                self.report(error)

    def report(self, error):
        """Raises `error` when strict; otherwise counts it (and logs the first few)."""
        if not self.skip_bad_lines:
            raise error
        self.counts[error.source] += 1
        total = sum(self.counts.values())
        if total <= _LOGGED_BAD_LINES:
            logger.warning("skipping bad line: %s", error)
        elif total == _LOGGED_BAD_LINES + 1:
            logger.warning("more bad lines are skipped; the counts are in the stats report")

    def summary(self):
        """`{file: number of skipped lines}`, sorted by file."""
        return dict(sorted(self.counts.items()))


def split_columns(source_label, line_no, text, names):
    """Splits a TSV line (no quoting: MIND's raw files are not CSV) and checks the column count."""
    columns = text.split("\t")
    if len(columns) != len(names):
        raise BadLineError(source_label, line_no, "(columns)",
                           f"expected {len(names)} tab-separated columns ({', '.join(names)}), found {len(columns)}")
    return columns

