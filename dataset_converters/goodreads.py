"""Goodreads (UCSD Book Graph, Wan & McAuley 2018) -> RecBole atomic files, following docs/design.md.

Input (`--input DIR`), JSON lines, plain or gzipped:
  * `goodreads_interactions*.json(.gz)`: user_id, book_id, rating (0-5), date_added, date_updated
    (`Mon Aug 01 13:41:57 -0700 2011`), ...; several files are read in name order;
  * `goodreads_books*.json(.gz)`: book_id, title, description, ...;
  * optional `goodreads_book_genres*.json(.gz)`: book_id, genres {genre: votes}.

Rules:
  * Ratings > 3 are positives (label 1), ratings < 3 negatives (label 0); 3 and 0 ("shelved, not rated") are
    dropped and counted (paper, section 3). The time of a rating is `date_updated` (else `date_added`), in Unix
    seconds.
  * category = the most-voted genre of the genre file, subcategory = the second (ties by name); without a genre file
    (or for a book missing from it) category = the genre in the books file name (`goodreads_books_poetry.json.gz`
    -> `poetry`, underscores kept) and subcategory is empty.
  * Ratings of books missing from the books files are counted and dropped before anything else.
  * Time split by global quantiles of the kept ratings' times: train = before the `valid_start` quantile (0.8),
    valid = up to the `test_start` quantile (0.9), test = the rest.
  * An impression is a user's rated books in one window (impression_id `<window>-<user_id>`). Train: one row per
    positive, whose history is the user's positives strictly earlier in time, `neg_items` drawn from the user's
    train-window negatives. Valid/test: one row per rated book of the window, history = the user's positives
    before the window starts.
  * Items: the books referenced by the kept ratings, in books-file order (first occurrence wins).
The ratings kept (user, time, book, label) are held in memory, grouped by user; books and genres are streamed.
"""
import bisect
import datetime
import glob
import json
import logging
import os
import re
import sys

from .impressions import ImpressionWriter, add_common_arguments, converter_main, options_from_args, run_conversion
from .reading import BadLineError, LineErrors, Source

logger = logging.getLogger(__name__)

WINDOWS = ("train", "valid", "test")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_UTC = datetime.timezone.utc
_BOOKS_GENRE = re.compile(r"^goodreads_books_(?P<genre>.+?)\.json(\.gz)?$")


# -- finding the files ---------------------------------------------------------------------------------------------
def _glob(folder, prefix):
    paths = []
    for pattern in (f"{prefix}*.json", f"{prefix}*.json.gz"):
        paths += glob.glob(os.path.join(glob.escape(folder), pattern))
    return sorted(paths)


def find_files(input_dir):
    """`(interaction paths, book paths, genre paths)`; interactions and books are required."""
    input_dir = os.fspath(input_dir)
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"Goodreads input folder {input_dir} does not exist")
    interactions = _glob(input_dir, "goodreads_interactions")
    books = _glob(input_dir, "goodreads_books")
    genres = _glob(input_dir, "goodreads_book_genres")
    for kind, paths in (("goodreads_interactions*.json(.gz)", interactions), ("goodreads_books*.json(.gz)", books)):
        if not paths:
            raise FileNotFoundError(f"{input_dir}: no {kind} file found")
    return interactions, books, genres


def genre_from_file_name(path):
    """`goodreads_books_poetry.json.gz` -> `poetry`; `goodreads_books.json.gz` -> `` (no genre in the name)."""
    match = _BOOKS_GENRE.match(os.path.basename(path))
    return match["genre"] if match else ""


# -- parsing -------------------------------------------------------------------------------------------------------
def parse_date(text):
    """`Mon Aug 01 13:41:57 -0700 2011` -> Unix seconds; ValueError when malformed."""
    parts = text.split(" ")
    if len(parts) != 6 or parts[1] not in _MONTHS or len(parts[4]) != 5 or parts[4][0] not in "+-":
        raise ValueError("expected 'Www Mmm DD HH:MM:SS +ZZZZ YYYY'")
    hour, minute, second = (int(x) for x in parts[3].split(":"))
    offset = (int(parts[4][1:3]) * 3600 + int(parts[4][3:5]) * 60) * (-1 if parts[4][0] == "-" else 1)
    local = datetime.datetime(int(parts[5]), _MONTHS[parts[1]], int(parts[2]), hour, minute, second, tzinfo=_UTC)
    return local.timestamp() - offset


def _load_json(label, line_no, text):
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadLineError(label, line_no, "(json)", f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise BadLineError(label, line_no, "(json)", "expected a JSON object")
    return record


def _id_field(record, label, line_no, field):
    value = record.get(field)
    if not isinstance(value, str) or not value or value != value.strip() or " " in value:
        raise BadLineError(label, line_no, field, f"missing, empty or containing spaces: {value!r}")
    return value


def parse_interaction(label, line_no, text):
    """-> (user_id, book_id, rating, timestamp)."""
    record = _load_json(label, line_no, text)
    user_id = _id_field(record, label, line_no, "user_id")
    book_id = _id_field(record, label, line_no, "book_id")
    rating = record.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 5:
        raise BadLineError(label, line_no, "rating", f"expected an integer 0-5, got {rating!r}")
    field = "date_updated" if record.get("date_updated") else "date_added"
    try:
        timestamp = parse_date(record.get(field) or "")
    except ValueError as error:
        raise BadLineError(label, line_no, field, f"cannot parse {record.get(field)!r} ({error})") from None
    return user_id, book_id, rating, timestamp


def parse_book(label, line_no, text):
    """-> (book_id, title, description)."""
    record = _load_json(label, line_no, text)
    book_id = _id_field(record, label, line_no, "book_id")
    texts = []
    for field in ("title", "description"):
        value = record.get(field, "")
        if not isinstance(value, str):
            raise BadLineError(label, line_no, field, f"expected a string, got {type(value).__name__}")
        texts.append(value)
    return book_id, texts[0], texts[1]


def parse_genres(label, line_no, text):
    """-> (book_id, [genres by votes, most first, ties by name])."""
    record = _load_json(label, line_no, text)
    book_id = _id_field(record, label, line_no, "book_id")
    genres = record.get("genres")
    if not isinstance(genres, dict) or not all(isinstance(v, (int, float)) for v in genres.values()):
        raise BadLineError(label, line_no, "genres", "expected an object {genre: votes}")
    return book_id, [name for name, _ in sorted(genres.items(), key=lambda kv: (-kv[1], kv[0]))]


# -- conversion ----------------------------------------------------------------------------------------------------
def _read_ratings(paths, errors, stats):
    """`{user: [(timestamp, book, label)]}` in first-appearance order, ratings 3 and 0 dropped (counted)."""
    by_user = {}
    dropped = {"rating_3": 0, "rating_0": 0}
    for path in paths:
        source = Source(path)
        for user, book, rating, timestamp in errors.parse(source, source.lines(), parse_interaction):
            if rating == 3 or rating == 0:
                dropped[f"rating_{rating}"] += 1
                continue
            by_user.setdefault(user, []).append((timestamp, book, rating > 3))
    stats.notes["dropped_ratings"] = dropped
    return by_user


def _read_genres(paths, needed, errors):
    genres = {}
    for path in paths:
        source = Source(path)
        for book, ranked in errors.parse(source, source.lines(), parse_genres):
            if book in needed and book not in genres:
                genres[book] = ranked
    return genres


def _write_books(paths, needed, genres, errors, writer):
    """Writes the needed books as items; returns the set of book ids written."""
    known = set()
    for path in paths:
        file_genre = genre_from_file_name(path)
        source = Source(path)
        for book, title, description in errors.parse(source, source.lines(), parse_book):
            if book not in needed or book in known:
                continue
            known.add(book)
            ranked = genres.get(book)
            category, subcategory = (ranked + ["", ""])[:2] if ranked else (file_genre, "")
            writer.item(book, title, description, category, subcategory)
    return known


def quantile_cuts(timestamps, valid_start, test_start):
    """The times where valid and test begin: the `valid_start` / `test_start` quantiles of all rating times."""
    ordered = sorted(timestamps)
    if not ordered:
        raise ValueError("no ratings left to split (all dropped or unknown)")

    def at(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return at(valid_start), at(test_start)


def _write_user(writer, user, records, valid_cut, test_cut):
    """All rows of one user; `records` = [(timestamp, book, label)] sorted."""
    positives = [(ts, book) for ts, book, label in records if label]
    positive_times = [ts for ts, _ in positives]
    positive_books = [book for _, book in positives]
    train = [r for r in records if r[0] < valid_cut]
    if train:
        clicks = [(book, ts, positive_books[:bisect.bisect_left(positive_times, ts)])
                  for ts, book, label in train if label]
        if clicks:
            writer.train_impression(f"train-{user}", user, clicks, [book for _, book, label in train if not label])
        else:
            writer.drop_impression("train")
    for window, start, end in (("valid", valid_cut, test_cut), ("test", test_cut, float("inf"))):
        candidates = [(book, label, ts) for ts, book, label in records if start <= ts < end]
        if candidates:
            history = positive_books[:bisect.bisect_left(positive_times, start)]
            writer.eval_impression(window, f"{window}-{user}", user, history, candidates)


def convert_goodreads(input_dir, output, options, valid_start=0.8, test_start=0.9):
    """Converts a Goodreads folder into `<output>/<options.name>/`; returns the stats report (also written as JSON)."""
    if not 0.0 < valid_start <= test_start < 1.0:
        raise ValueError(f"need 0 < valid_start <= test_start < 1, got {valid_start}, {test_start}")
    interaction_paths, book_paths, genre_paths = find_files(input_dir)
    errors = LineErrors(options.skip_bad_lines)
    with ImpressionWriter(output, options, source="goodreads") as writer:
        stats = writer.stats
        by_user = _read_ratings(interaction_paths, errors, stats)
        needed = {book for records in by_user.values() for _, book, _ in records}
        genres = _read_genres(genre_paths, needed, errors)
        known = _write_books(book_paths, needed, genres, errors, writer)
        for user, records in by_user.items():
            kept = []
            for record in records:
                if record[1] in known:
                    kept.append(record)
                else:
                    stats.unknown.add("interaction", record[1])
            records[:] = sorted(kept)
        valid_cut, test_cut = quantile_cuts((ts for records in by_user.values() for ts, _, _ in records),
                                            valid_start, test_start)
        stats.notes["split_rule"] = (f"train < {valid_start} quantile of rating times <= valid < {test_start} "
                                     f"quantile <= test")
        stats.notes["valid_start"] = datetime.datetime.fromtimestamp(valid_cut, _UTC).isoformat()
        stats.notes["test_start"] = datetime.datetime.fromtimestamp(test_cut, _UTC).isoformat()
        for user, records in by_user.items():
            if records:
                _write_user(writer, user, records, valid_cut, test_cut)
        report = writer.finish(errors.summary())
    return report


def add_arguments(parser):
    """Flags of `convert goodreads` (also `python -m dataset_converters.goodreads`)."""
    add_common_arguments(parser, default_name="goodreads")
    parser.add_argument("--valid-start", type=float, default=0.8,
                        help="quantile of rating times where the valid window starts (default: %(default)s)")
    parser.add_argument("--test-start", type=float, default=0.9,
                        help="quantile of rating times where the test window starts (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args):
    return run_conversion(lambda: convert_goodreads(args.input, args.output, options_from_args(args), args.valid_start, args.test_start),
                          os.path.join(args.output, args.name))


def main(argv=None):
    return converter_main("python -m dataset_converters.goodreads", __doc__.split("\n")[0], add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
