"""Goodreads (UCSD Book Graph, Wan & McAuley 2018) -> RecBole atomic files, following docs/design.md.

Input (`--input DIR`), JSON lines, plain or gzipped:
  * `goodreads_interactions*.json(.gz)`: user_id, book_id, rating (0-5), date_added, date_updated
    (`Mon Aug 01 13:41:57 -0700 2011`), ...; several files are read in name order;
  * `goodreads_books*.json(.gz)`: book_id, title, description, ...;
  * optional `goodreads_book_genres*.json(.gz)`: book_id, genres {genre: votes}.

Rules:
  * Ratings > 3 are positives (label 1), ratings < 3 negatives (label 0); 3 and 0 ("shelved, not rated") are
    dropped and counted (paper, section 3). The time of a rating is `date_updated` (else `date_added`), in Unix
    seconds. A user who rated a book more than once (re-rated it, or the same record read from several genre files,
    whose books overlap) keeps the latest rating only, so a book is never both a negative and a positive of one
    user; the others are counted (`repeated_ratings`).
  * category = the most-voted genre of the genre file, subcategory = the second (ties by name); without a genre file
    (or for a book missing from it) category = the genre in the books file name (`goodreads_books_poetry.json.gz`
    -> `poetry`, underscores kept) and subcategory is empty.
  * Subset (the paper's Goodreads has 50K users and 330K books): `max_users` keeps that many users, `max_books` then
    that many of the books they rated; both are the ids with the smallest `crc32(seed:kind:id)`, so the choice
    depends only on the ids and the seed, not on file order. Users are counted among those with a rating other than
    3 or 0; ratings of other users or books are left out (counted).
  * Ratings of books missing from the books files are counted and dropped before anything else.
  * Time split by global quantiles of the positives' times: train = before the positive at the `valid_start`
    quantile, valid = up to the one at `test_start`, test = the rest. The defaults 0.54 / 0.75 give positives the
    proportions of the paper's Table 4 (198,403 / 75,445 / 93,156 = 54% / 21% / 25%).
  * An impression is a user's rated books in one window (impression_id `<window>-<user_id>`). Train: one row per
    positive except the history-only ones, whose history is the user's positives strictly earlier in time (the
    history-only ones always included), `neg_items` drawn from the user's
    train-window negatives; a user without any there gets `fill_negatives` books they never rated (any rating,
    3 and 0 included), sampled (impressions.sample_unseen). Valid/test: one row per rated book of the window,
    history = the user's positives before the window starts.
  * History only (`history_only_share`, default 0.1): a user's earliest `floor(share * n)` of their n train-window
    positives, at least 1 when n >= 2, are not training rows but open every history of the user, so the first
    training row's history (from which the user's training summary is written) is never empty and holds no training
    target. 0.1 is about one book per user at the paper's scale (198,403 train positives over 21,450 users), which
    keeps the written shares of positives near Table 4's; users with one train-window positive keep it as a row.
  * Items: the books referenced by the kept ratings, in books-file order (first occurrence wins).
The ratings kept (user, time, book, label) are held in memory, grouped by user; books and genres are streamed. With
`max_users`, the interaction files are read twice (first only the user ids), so only the chosen users' ratings are
held.
"""
import bisect
import datetime
import glob
import json
import logging
import os
import re
import sys
import zlib

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
    except RecursionError:
        raise BadLineError(label, line_no, "(json)", "nested too deeply to be a Goodreads record") from None
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
def select_ids(ids, limit, seed, kind):
    """The `limit` ids with the smallest `crc32(f"{seed}:{kind}:{id}")` (ties by id), as a set; all when no limit."""
    ids = set(ids)
    if limit is None or limit >= len(ids):
        return ids
    return set(sorted(ids, key=lambda i: (zlib.crc32(f"{seed}:{kind}:{i}".encode("utf-8")), i))[:limit])


def _rated_users(paths, skip_bad_lines):
    """Users with at least one rating other than 3 or 0 (first pass for `max_users`; bad lines counted later)."""
    users = set()
    errors = LineErrors(skip_bad_lines)
    for path in paths:
        source = Source(path)
        for user, _, rating, _ in errors.parse(source, source.lines(f"{os.path.basename(path)} (users)"),
                                               parse_interaction):
            if rating not in (0, 3):
                users.add(user)
    return users


def _read_ratings(paths, errors, stats, users=None):
    """`({user: [(timestamp, book, label)]}, {user: {books rated 3 or 0}})`, users in first-appearance order.

    A (user, book) pair rated more than once (a re-rating, or the same record in several genre files, which overlap)
    keeps its latest rating (on equal times, the one read last) and the others are counted. Ratings 3 and 0 are then
    dropped (counted) but remembered as engaged-with; `users` (a set) keeps only those users.
    """
    latest = {}  # user -> {book: (timestamp, rating)}
    outside = replaced = 0
    for path in paths:
        source = Source(path)
        for user, book, rating, timestamp in errors.parse(source, source.lines(), parse_interaction):
            if users is not None and user not in users:
                outside += 1
                continue
            books = latest.setdefault(user, {})
            if book in books:
                replaced += 1
                if timestamp < books[book][0]:
                    continue
            books[book] = (timestamp, rating)
    by_user, unrated = {}, {}
    dropped = {"rating_3": 0, "rating_0": 0}
    for user, books in latest.items():
        for book, (timestamp, rating) in books.items():
            if rating == 3 or rating == 0:
                dropped[f"rating_{rating}"] += 1
                unrated.setdefault(user, set()).add(book)
            else:
                by_user.setdefault(user, []).append((timestamp, book, rating > 3))
    stats.notes["dropped_ratings"] = dropped
    stats.notes["repeated_ratings"] = {
        "count": replaced,
        "rule": "a (user, book) rated more than once keeps its latest rating (date_updated, else date_added; on "
                "equal times the one read last); the earlier ones are not read",
    }
    if users is not None:
        stats.notes["subset"] = {"users": len(users), "ratings_of_other_users": outside}
    return by_user, unrated


def _keep_books(by_user, max_books, seed, stats):
    """Keeps the ratings of `max_books` of the rated books (select_ids); returns the set of books kept."""
    needed = {book for records in by_user.values() for _, book, _ in records}
    if max_books is None:
        return needed
    chosen = select_ids(needed, max_books, seed, "book")
    outside = 0
    for user in list(by_user):
        kept = [record for record in by_user[user] if record[1] in chosen]
        outside += len(by_user[user]) - len(kept)
        if kept:
            by_user[user] = kept
        else:
            del by_user[user]
    stats.notes.setdefault("subset", {}).update({"books": len(chosen), "ratings_of_other_books": outside})
    return chosen


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
    """The times where valid and test begin: the `valid_start` / `test_start` quantiles of the positives' times.

    A share `valid_start` of the positives comes before the first cut (ties at a cut go to the later window).
    """
    ordered = sorted(timestamps)
    if not ordered:
        raise ValueError("no positive ratings (> 3) left to split: all were dropped, unknown or outside the subset")

    def at(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return at(valid_start), at(test_start)


def history_only_count(train_positives, share):
    """How many of a user's earliest train-window positives are history only: `floor(share * train_positives)`,
    at least 1 when the user has 2 or more (so the first training row has a history), none when `share` is 0."""
    if share <= 0 or train_positives < 2:
        return 0
    return max(1, int(share * train_positives))


def _write_user(writer, user, records, valid_cut, test_cut, unrated, history_only_share):
    """All rows of one user; `records` = [(timestamp, book, label)] sorted; `unrated`: other books they shelved.

    Returns the number of train-window positives written as history only (not as training rows).
    """
    positives = [(ts, book) for ts, book, label in records if label]
    positive_times = [ts for ts, _ in positives]
    positive_books = [book for _, book in positives]
    train = [r for r in records if r[0] < valid_cut]
    held = history_only_count(sum(1 for _, _, label in train if label), history_only_share)
    if train:
        # positives are sorted like `records`, so the user's first `held` positives are the history-only ones; they
        # stay in every later history, ties in time included
        clicks = [(book, ts, positive_books[:max(held, bisect.bisect_left(positive_times, ts))])
                  for ts, book, label in train if label][held:]
        if clicks:
            writer.train_impression(f"train-{user}", user, clicks, [book for _, book, label in train if not label],
                                    seen=[book for _, book, _ in records] + sorted(unrated))
        else:
            writer.drop_impression("train", "no positive rating in the train window (only negatives)")
    for window, start, end in (("valid", valid_cut, test_cut), ("test", test_cut, float("inf"))):
        candidates = [(book, label, ts) for ts, book, label in records if start <= ts < end]
        if candidates:
            history = positive_books[:bisect.bisect_left(positive_times, start)]
            writer.eval_impression(window, f"{window}-{user}", user, history, candidates)
    return held


def convert_goodreads(input_dir, output, options, valid_start=0.54, test_start=0.75, max_users=None,
                      max_books=None, history_only_share=0.1):
    """Converts a Goodreads folder into `<output>/<options.name>/`; returns the stats report (also written as JSON)."""
    if not 0.0 < valid_start <= test_start < 1.0:
        raise ValueError(f"need 0 < --valid-start <= --test-start < 1, got {valid_start}, {test_start}")
    if not 0.0 <= history_only_share < 1.0:
        raise ValueError(f"--history-only-share must be in [0, 1), got {history_only_share}")
    for flag, value in (("--max-users", max_users), ("--max-books", max_books)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    interaction_paths, book_paths, genre_paths = find_files(input_dir)
    errors = LineErrors(options.skip_bad_lines)
    with ImpressionWriter(output, options, source="goodreads") as writer:
        stats = writer.stats
        users = None
        if max_users is not None:
            users = select_ids(_rated_users(interaction_paths, options.skip_bad_lines), max_users, options.seed,
                               "user")
        by_user, unrated = _read_ratings(interaction_paths, errors, stats, users)
        needed = _keep_books(by_user, max_books, options.seed, stats)
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
        valid_cut, test_cut = quantile_cuts((ts for records in by_user.values() for ts, _, label in records if label),
                                            valid_start, test_start)
        stats.notes["split_rule"] = (f"train < positive at the {valid_start} quantile of positive rating times <= "
                                     f"valid < positive at the {test_start} quantile <= test")
        stats.notes["valid_start"] = datetime.datetime.fromtimestamp(valid_cut, _UTC).isoformat()
        stats.notes["test_start"] = datetime.datetime.fromtimestamp(test_cut, _UTC).isoformat()
        held = {}
        for user, records in by_user.items():
            if records:
                held[user] = _write_user(writer, user, records, valid_cut, test_cut, unrated.get(user, ()),
                                         history_only_share)
        stats.notes["history_only"] = {
            "rule": (f"each user's earliest floor({history_only_share} * train-window positives) positives (at least "
                     f"1 when there are 2 or more) are history only: in every later history, never a training row"),
            "share": history_only_share,
            "users": sum(1 for count in held.values() if count),
            "positives": sum(held.values()),
        }
        files = ", ".join(interaction_paths)
        report = writer.finish(errors.summary(), {"items": ", ".join(book_paths), "train": files, "valid": files,
                                                  "test": files})
    return report


def add_arguments(parser):
    """Flags of `convert goodreads` (also `python -m dataset_converters.goodreads`)."""
    add_common_arguments(parser, default_name="goodreads")
    for window, start, note in (("valid", 0.54, "; 0.54 and 0.75 give the paper's 54%%/21%%/25%% of positives"),
                                ("test", 0.75, "")):
        parser.add_argument(f"--{window}-start", type=float, default=start,
                            help=f"quantile of positive rating times where the {window} window starts{note} "
                                 f"(default: %(default)s)")
    parser.add_argument("--max-users", type=int, default=None,
                        help="keep this many users, chosen by a seeded hash of the id (the paper: 50000; "
                             "default: all)")
    parser.add_argument("--max-books", type=int, default=None,
                        help="then keep this many of their books, chosen the same way (the paper: 330000; "
                             "default: all)")
    parser.add_argument("--history-only-share", type=float, default=0.1,
                        help="share of each user's train-window positives, the earliest, written only as history "
                             "(at least 1 of 2 or more), so the first training row has a history to summarize; "
                             "0 writes every positive as a training row (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args):
    return run_conversion(lambda: convert_goodreads(args.input, args.output, options_from_args(args), args.valid_start,
                                                    args.test_start, args.max_users, args.max_books,
                                                    args.history_only_share),
                          args.output, args.name)


def main(argv=None):
    return converter_main("goodreads", argv)


if __name__ == "__main__":
    sys.exit(main())
