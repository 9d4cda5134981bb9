"""Goodreads converter: rating rule, time split, histories, genres, bad lines, determinism (hand-written data)."""
import csv
import datetime
import gzip
import json
import os

import pytest

from dataset_converters.goodreads import convert_goodreads, main, parse_date, select_ids
from dataset_converters.impressions import ConvertOptions
from dataset_converters.reading import BadLineError
from dataset_converters.store import open_store
from recbole_embsum.cli import main as cli_main
from recbole_embsum.summaries import load_records

UTC = datetime.timezone.utc
# (user, book, rating, date_updated); local times, the UTC equivalents are in T below.
RATINGS = [
    ("A", "10", 5, "Mon Jan 02 10:00:00 -0800 2017"),
    ("A", "30", 3, "Mon Jan 02 11:00:00 -0800 2017"),  # 3, re-rated 2 below: a negative, not dropped
    ("A", "20", 1, "Tue Jan 03 10:00:00 -0800 2017"),  # 1, re-rated 4 below: only the later positive counts
    ("B", "20", 0, "Tue Jan 03 12:00:00 +0100 2017"),  # 0: dropped
    ("A", "40", 4, "Wed Jan 04 10:00:00 -0800 2017"),
    ("B", "30", 5, "Thu Jan 05 10:00:00 +0100 2017"),
    ("B", "99", 5, "Thu Jan 05 11:00:00 +0100 2017"),  # book 99 is not in the books file: dropped
    ("A", "30", 2, "Fri Jan 06 10:00:00 -0800 2017"),
    ("B", "10", 5, "Sat Jan 07 10:00:00 +0100 2017"),
    ("A", "20", 4, "Sun Jan 08 10:00:00 -0800 2017"),
    ("B", "40", 1, "Mon Jan 09 10:00:00 +0100 2017"),
]
T = {day: int(datetime.datetime(2017, 1, day, hour, tzinfo=UTC).timestamp())
     for day, hour in ((2, 18), (3, 18), (4, 18), (5, 9), (6, 18), (7, 9), (8, 18), (9, 9))}
BOOKS = [("10", '"Leading" quote title', "A description\nover two lines"), ("20", "Zwanzig — ü", ""),
         ("30", "Thirty", "d30"), ("40", "Forty", "d40")]


def write_goodreads(folder, ratings=RATINGS, genres=None, extra_lines=()):
    os.makedirs(folder, exist_ok=True)
    lines = [json.dumps({"user_id": u, "book_id": b, "review_id": "r", "is_read": r > 0, "rating": r,
                         "date_added": "Sun Jan 01 00:00:00 +0000 2017", "date_updated": d, "read_at": "",
                         "started_at": ""}) for u, b, r, d in ratings] + list(extra_lines)
    with gzip.open(os.path.join(folder, "goodreads_interactions_poetry.json.gz"), "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, "goodreads_books_poetry.json"), "w", encoding="utf-8") as f:
        for book, title, description in BOOKS:
            f.write(json.dumps({"book_id": book, "title": title, "description": description,
                                "popular_shelves": []}) + "\n")
    if genres is not None:
        with open(os.path.join(folder, "goodreads_book_genres_initial.json"), "w", encoding="utf-8") as f:
            for book, votes in genres.items():
                f.write(json.dumps({"book_id": book, "genres": votes}) + "\n")
    return str(folder)


def convert(raw, out, history_only_share=0.1, **options):
    # 5 kept positives (days 2, 4, 5, 7, 8): valid starts at the 4th (quantile 0.6), test at the 5th (quantile 0.8)
    options.setdefault("layout", "inline")  # these tests read the rows' item_id_list / neg_items cells
    return convert_goodreads(raw, out, ConvertOptions(name="goodreads", **options), valid_start=0.6, test_start=0.8,
                             history_only_share=history_only_share)


def rows(folder, split):
    with open(folder / f"goodreads.{split}.inter", encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))[1:]


def test_parse_date_uses_the_offset():
    assert parse_date("Mon Aug 01 13:41:57 -0700 2011") == datetime.datetime(2011, 8, 1, 20, 41, 57,
                                                                              tzinfo=UTC).timestamp()


def test_rating_rule_time_split_and_histories(tmp_path):
    report = convert(write_goodreads(tmp_path / "raw"), tmp_path / "out")
    folder = tmp_path / "out" / "goodreads"
    assert rows(folder, "train") == [
        # A's first train-window positive (10) is history only: no row of its own, in every later history
        ["train-A", "A", "40", "1", str(T[4]), "10", "30"],  # 20 is A's test positive, not a train negative
        # B has one train-window positive (kept as a row) and no train negative, and has rated (or shelved: 20)
        # every other book: nothing left to sample
        ["train-B", "B", "30", "1", str(T[5]), "", ""],
    ]
    assert rows(folder, "valid") == [
        ["valid-B", "B", "10", "1", str(T[7]), "30", ""],
    ]
    assert rows(folder, "test") == [
        ["test-A", "A", "20", "1", str(T[8]), "10 40", ""],
        ["test-B", "B", "40", "0", str(T[9]), "30 10", ""],
    ]
    assert report["dropped_ratings"] == {"rating_3": 0, "rating_0": 1}
    assert report["repeated_ratings"]["count"] == 2
    assert report["unknown_ids"] == {"interaction": {"count": 1, "examples": ["99"]}}
    assert report["valid_start"] == "2017-01-07T09:00:00+00:00" and report["test_start"] == "2017-01-08T18:00:00+00:00"
    assert report["splits"]["train"]["negatives"] == 1 and report["splits"]["test"]["positives"] == 1
    assert report["positive_shares"] == {"train": 0.5, "valid": 0.25, "test": 0.25}
    assert (report["history_only"]["users"], report["history_only"]["positives"]) == (1, 1)
    convert(write_goodreads(tmp_path / "raw0"), tmp_path / "all", history_only_share=0.0)
    assert [row[2] for row in rows(tmp_path / "all" / "goodreads", "train")] == ["10", "40", "30"]


def test_a_rating_read_again_from_an_overlapping_genre_file_or_re_rated_counts_once(tmp_path, capsys):
    once = convert(write_goodreads(tmp_path / "once"), tmp_path / "out_once")
    raw = write_goodreads(tmp_path / "twice")
    # Genre files overlap (a book in several genres): the same records again in a file read first ("comics" <
    # "poetry"), and B's book 10 re-rated 1 at an earlier time, which the later 5 of the poetry file replaces.
    again = [json.dumps({"user_id": u, "book_id": b, "rating": r, "date_added": "", "date_updated": d})
             for u, b, r, d in RATINGS + [("B", "10", 1, "Fri Jan 06 10:00:00 +0100 2017")]]
    with open(os.path.join(raw, "goodreads_interactions_comics.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(again) + "\n")
    twice = convert(raw, tmp_path / "out_twice")
    for split in ("train", "valid", "test"):
        assert rows(tmp_path / "out_twice" / "goodreads", split) == rows(tmp_path / "out_once" / "goodreads", split)
    assert twice["splits"] == once["splits"] and twice["dropped_ratings"] == once["dropped_ratings"]
    assert twice["repeated_ratings"]["count"] == once["repeated_ratings"]["count"] + len(RATINGS) + 1
    from dataset_converters.stats import format_table

    assert f"repeated ratings of a (user, book) left out, the latest kept: {len(RATINGS) + 3}" in format_table(twice)


def test_genre_from_file_name_or_genre_file_and_exact_text(tmp_path):
    convert(write_goodreads(tmp_path / "raw"), tmp_path / "out")
    with open(tmp_path / "out" / "goodreads" / "goodreads.item", encoding="utf-8") as f:
        assert f.read().splitlines()[1:] == ["10\tpoetry\t", "20\tpoetry\t", "30\tpoetry\t", "40\tpoetry\t"]
    with open(tmp_path / "out" / "goodreads" / "goodreads.text.jsonl", encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert first["title"] == '"Leading" quote title' and first["abstract"] == "A description\nover two lines"
    convert(write_goodreads(tmp_path / "raw2", genres={"10": {"poetry": 5, "fiction": 9, "art": 5}}),
            tmp_path / "out2")
    with open(tmp_path / "out2" / "goodreads" / "goodreads.item", encoding="utf-8") as f:
        assert f.read().splitlines()[1:3] == ["10\tfiction\tart", "20\tpoetry\t"]  # tie 5/5 -> by name


@pytest.mark.parametrize("line, field", [
    ('{"user_id": "A", "book_id": "10", "rating": 5', "(json)"),
    ('{"user_id": "A", "book_id": "10", "rating": "five", "date_updated": "Mon Jan 02 10:00:00 -0800 2017"}',
     "rating"),
    ('{"user_id": "A", "book_id": "10", "rating": 5, "date_updated": "2017-01-02"}', "date_updated"),
    ('{"user_id": "", "book_id": "10", "rating": 5, "date_updated": "Mon Jan 02 10:00:00 -0800 2017"}', "user_id"),
])
def test_bad_line_names_file_line_and_field(tmp_path, line, field):
    raw = write_goodreads(tmp_path / "raw", extra_lines=[line])
    with pytest.raises(BadLineError) as info:
        convert(raw, tmp_path / "out")
    assert (info.value.field, info.value.line_no) == (field, len(RATINGS) + 1)
    assert info.value.source.endswith("goodreads_interactions_poetry.json.gz")
    report = convert(raw, tmp_path / "lenient", skip_bad_lines=True)
    assert list(report["bad_lines"].values()) == [1]


def test_cli_overwrite_and_determinism(tmp_path, synth_goodreads_raw, capsys):
    args = ["--input", synth_goodreads_raw, "--output", str(tmp_path / "a")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "# positive" in out and "history-only train positives" in out
    assert main(["--input", synth_goodreads_raw, "--output", str(tmp_path / "b"), "--history-only-share", "0"]) == 0
    assert "history-only train positives (earliest of each user, not rows): 0 of 0 users" in capsys.readouterr().out
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    folder = tmp_path / "a" / "goodreads"

    def contents():  # every file, the history store's included
        return {os.path.relpath(os.path.join(d, n), folder): open(os.path.join(d, n), "rb").read()
                for d, _, names in os.walk(folder) for n in names}

    first = contents()
    assert main(args + ["--overwrite"]) == 0
    again = contents()
    assert first == again and len(first) == 7 + 7 and "goodreads.store/manifest.json" in first


def _raw_ratings(raw):
    """{user: {book: rating}} straight from the synthetic interactions file."""
    ratings = {}
    with gzip.open(os.path.join(raw, "goodreads_interactions_synthetic.json.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            ratings.setdefault(record["user_id"], {})[record["book_id"]] = record["rating"]
    return ratings


def test_default_windows_split_positives_as_table4(goodreads_dataset):
    data_path, name = goodreads_dataset
    stats = json.load(open(os.path.join(data_path, name, f"{name}.stats.json"), encoding="utf-8"))
    held = stats["history_only"]["positives"]
    positives = {split: stats["splits"][split]["positives"] for split in ("train", "valid", "test")}
    total = sum(positives.values()) + held
    # the time windows hold Table 4's shares of all positives, history-only ones counted in train ...
    assert {"train": (positives["train"] + held) / total, "valid": positives["valid"] / total,
            "test": positives["test"] / total} == pytest.approx({"train": 0.54, "valid": 0.21, "test": 0.25}, abs=0.01)
    # ... and the written rows about 3 points fewer in train (about one history-only book per user)
    assert stats["positive_shares"] == pytest.approx({"train": 0.51, "valid": 0.225, "test": 0.265}, abs=0.01)
    assert held <= 0.15 * (positives["train"] + held) and stats["history_only"]["share"] == 0.1
    assert stats["paper_table4"]["positive_shares"] == {"train": 0.5406, "valid": 0.2056, "test": 0.2538}


def test_train_rows_without_negatives_get_unrated_books(tmp_path, synth_goodreads_raw):
    report = convert_goodreads(synth_goodreads_raw, tmp_path, ConvertOptions(name="goodreads", fill_negatives=5, layout="inline"))
    ratings = _raw_ratings(synth_goodreads_raw)
    train = rows(tmp_path / "goodreads", "train")
    sampled = {}
    for impression, user, book, _, _, _, negatives in train:
        negatives = negatives.split()
        assert negatives, f"{impression} has no negative"
        rated_negatives = [b for b in negatives if ratings[user].get(b) in (1, 2)]
        if not rated_negatives:  # no train-window negative: all sampled, never a book the user rated or shelved
            assert len(negatives) == 5 and not set(negatives) & set(ratings[user])
            sampled[impression] = negatives
    assert len(sampled) == report["splits"]["train"]["sampled_negative_impressions"] > 0
    assert report["splits"]["train"]["sampled_negatives"] == 5 * len(sampled)
    again = convert_goodreads(synth_goodreads_raw, tmp_path / "again",
                              ConvertOptions(name="goodreads", fill_negatives=5, layout="inline"))
    assert rows(tmp_path / "again" / "goodreads", "train") == train and again["splits"] == report["splits"]
    convert_goodreads(synth_goodreads_raw, tmp_path / "none", ConvertOptions(name="goodreads", fill_negatives=0, layout="inline"))
    assert any(not row[6] for row in rows(tmp_path / "none" / "goodreads", "train"))


def test_subset_of_users_and_books_is_seeded_and_exact(tmp_path, synth_goodreads_raw):
    def subset(out, seed=0, **limits):
        report = convert_goodreads(synth_goodreads_raw, tmp_path / out, ConvertOptions(name="goodreads", seed=seed),
                                   **limits)
        folder = tmp_path / out / "goodreads"
        users = {row[1] for split in ("train", "valid", "test") for row in rows(folder, split)}
        with open(folder / "goodreads.item", encoding="utf-8") as f:
            books = {line.split("\t")[0] for line in f.read().splitlines()[1:]}
        return report, users, books

    report, users, books = subset("a", max_users=50, max_books=120)
    lines = []
    with gzip.open(os.path.join(synth_goodreads_raw, "goodreads_interactions_synthetic.json.gz"), "rt") as f:
        lines = [json.loads(line) for line in f]
    rated = {r["user_id"] for r in lines if r["rating"] not in (0, 3)}
    chosen = select_ids(rated, 50, 0, "user")  # the documented rule: smallest crc32("0:user:<id>")
    assert len(chosen) == 50 and users <= chosen and len(books) == 120
    assert report["subset"]["users"] == 50 and report["subset"]["books"] == 120
    assert report["subset"]["ratings_of_other_users"] == sum(1 for r in lines if r["user_id"] not in chosen)
    latest = {}  # a re-rated (user, book) keeps its latest rating (the synthetic users rate some books twice)
    for r in lines:
        key, time = (r["user_id"], r["book_id"]), parse_date(r["date_updated"])
        if r["user_id"] in chosen and (key not in latest or time >= latest[key][0]):
            latest[key] = (time, r)
    kept = [r for _, r in latest.values() if r["rating"] not in (0, 3)]
    assert report["subset"]["ratings_of_other_books"] == sum(1 for r in kept if r["book_id"] not in books)
    _, users_again, books_again = subset("b", max_users=50, max_books=120)
    assert (users_again, books_again) == (users, books)
    _, other_users, _ = subset("c", seed=1, max_users=50, max_books=120)
    assert other_users != users
    with pytest.raises(ValueError, match="--max-users must be at least 1"):
        convert_goodreads(synth_goodreads_raw, tmp_path / "d", ConvertOptions(name="goodreads"), max_users=0)


def _store_rows(folder, name, split):
    """[(user, item, label, history)] of a store-layout split, histories read back from `<name>.store/`."""
    histories = open_store(folder, name).row_histories(split)
    with open(os.path.join(folder, f"{name}.{split}.inter"), encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = [cell.split(":")[0] for cell in next(reader)]
        col = {field: header.index(field) for field in ("user_id", "item_id", "label")}
        result = [(row[col["user_id"]], row[col["item_id"]], row[col["label"]], next(histories).split())
                  for row in reader]
    assert next(histories, None) is None  # the store describes exactly the file's rows
    return result


def test_first_training_row_has_a_history_without_training_targets(tmp_path, goodreads_dataset, synth_goodreads_raw):
    data_path, name = goodreads_dataset
    folder = os.path.join(data_path, name)
    train = _store_rows(folder, name, "train")
    first = {}
    for user, _, _, history in train:  # rows are written in time order per user
        first.setdefault(user, history)
    non_empty = [user for user, history in first.items() if history]
    assert len(non_empty) >= 0.8 * len(first)  # the synthetic fixture: 173 of 191 (the others rated one book)
    # no training target is among the items of the first history, unless the target is a book rated positive again
    # (the synthetic data rates a few books twice) and so also in its own row's history
    repeats = 0
    for user, item, _, history in train:
        if item in first[user]:
            assert item in history, (user, item)
            repeats += 1
    assert repeats <= 0.01 * len(train)
    stats = json.load(open(os.path.join(folder, f"{name}.stats.json"), encoding="utf-8"))
    assert stats["history_only"]["users"] == len(non_empty)
    assert stats["splits"]["train"]["empty_history_rows"] == len(first) - len(non_empty)
    # the history store round-trips: the inline layout of the same conversion holds the same rows and histories
    convert_goodreads(synth_goodreads_raw, tmp_path, ConvertOptions(name=name, layout="inline"))
    for split in ("train", "valid", "test"):
        inline = [(row[1], row[2], row[3], row[5].split()) for row in rows(tmp_path / name, split)]
        assert inline == _store_rows(folder, name, split), split


def test_summaries_are_written_for_goodreads_training_users(tmp_path, goodreads_dataset):
    data_path, name = goodreads_dataset
    output = tmp_path / "summaries.jsonl"
    assert cli_main(["summarize", "--dataset", name, "--data-path", data_path, "--backend", "heuristic",
                     "--output", str(output)]) == 0
    users = {record["user_id"] for record in load_records(output)}
    train_users = {user for user, _, _, _ in _store_rows(os.path.join(data_path, name), name, "train")}
    assert users <= train_users and len(users) >= 0.8 * len(train_users)  # 0 before history-only positives


def test_history_only_share_is_checked(tmp_path):
    with pytest.raises(ValueError, match="--history-only-share must be in"):
        convert(write_goodreads(tmp_path / "raw"), tmp_path / "out", history_only_share=1.0)
