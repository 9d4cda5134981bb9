"""Synthetic raw data: exact published formats, determinism, and planted structure a content model can learn."""
import collections
import gzip
import json
import os

from dataset_converters.goodreads import parse_book, parse_interaction
from dataset_converters.mind import parse_behavior, parse_news
from dataset_converters.synth import synth_goodreads, synth_mind


def _auc(scored):
    """AUC of (score, label) pairs, ties counted half."""
    pos = [s for s, y in scored if y]
    neg = [s for s, y in scored if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_mind_files_parse_strictly_and_are_deterministic(tmp_path, synth_mind_raw):
    synth_mind(tmp_path, users=200, items=300, seed=0)
    for split in ("train", "dev"):
        for name in ("news.tsv", "behaviors.tsv"):
            a = os.path.join(synth_mind_raw, f"MINDsmall_{split}", name)
            assert open(a, "rb").read() == open(tmp_path / f"MINDsmall_{split}" / name, "rb").read()
    news = [parse_news("news.tsv", i, line) for i, line in enumerate(
        _lines(os.path.join(synth_mind_raw, "MINDsmall_train", "news.tsv")), 1)]
    titles = [n[3] for n in news]
    assert any(t.startswith('"') for t in titles) and any(not t.isascii() for t in titles)
    behaviors = [parse_behavior("behaviors.tsv", i, line, labeled=True) for i, line in enumerate(
        _lines(os.path.join(synth_mind_raw, "MINDsmall_dev", "behaviors.tsv")), 1)]
    assert all(any(flag for _, flag in b[4]) for b in behaviors)  # every impression has a click


def test_mind_clicks_follow_topics_not_popularity(synth_mind_raw):
    category = {}
    for split in ("train", "dev"):
        for line in _lines(os.path.join(synth_mind_raw, f"MINDsmall_{split}", "news.tsv")):
            category[line.split("\t")[0]] = line.split("\t")[1]
    train_clicks = collections.Counter()
    for i, line in enumerate(_lines(os.path.join(synth_mind_raw, "MINDsmall_train", "behaviors.tsv")), 1):
        train_clicks.update(n for n, flag in parse_behavior("b", i, line, labeled=True)[4] if flag)
    topic_scored, pop_scored = [], []
    for i, line in enumerate(_lines(os.path.join(synth_mind_raw, "MINDsmall_dev", "behaviors.tsv")), 1):
        _, _, _, history, candidates = parse_behavior("b", i, line, labeled=True)
        if not history:
            continue
        share = collections.Counter(category[h] for h in history)
        for news_id, flag in candidates:
            topic_scored.append((share[category[news_id]] / len(history), flag))
            pop_scored.append((train_clicks[news_id], flag))
    assert _auc(topic_scored) > 0.85  # the history's topics predict clicks
    assert _auc(pop_scored) < 0.7  # popularity alone does not


def test_goodreads_files_parse_and_ratings_follow_genres(synth_goodreads_raw):
    def read(name):
        with gzip.open(os.path.join(synth_goodreads_raw, name), "rt", encoding="utf-8") as f:
            return f.read().splitlines()

    books = [parse_book("b", i, line) for i, line in enumerate(read("goodreads_books_synthetic.json.gz"), 1)]
    genre = {json.loads(line)["book_id"]: max(json.loads(line)["genres"].items(), key=lambda kv: kv[1])[0]
             for line in read("goodreads_book_genres_initial.json.gz")}
    assert len(books) == 300 and set(genre) == {b[0] for b in books}
    by_user = collections.defaultdict(list)
    for i, line in enumerate(read("goodreads_interactions_synthetic.json.gz"), 1):
        user, book, rating, _ = parse_interaction("i", i, line)
        by_user[user].append((genre[book], rating))
    assert {r for records in by_user.values() for _, r in records} == {0, 1, 2, 3, 4, 5}
    scored = []
    for records in by_user.values():
        liked = collections.Counter(g for g, r in records if r > 3)
        # leave-one-out: how often the user liked *other* books of this genre
        scored += [((liked[g] - (r > 3)) / len(records), r > 3) for g, r in records if r not in (0, 3)]
    assert _auc(scored) > 0.8


def test_goodreads_bytes_repeat_and_seed_changes_them(tmp_path):
    a = synth_goodreads(tmp_path / "a", users=20, items=30, seed=1)
    b = synth_goodreads(tmp_path / "b", users=20, items=30, seed=1)
    c = synth_goodreads(tmp_path / "c", users=20, items=30, seed=2, genre_file=False)
    assert [open(p, "rb").read() for p in a] == [open(p, "rb").read() for p in b]
    assert open(a[1], "rb").read() != open(c[1], "rb").read() and len(c) == 2


def test_existing_raw_files_are_refused_without_overwrite(tmp_path, capsys):
    from dataset_converters.synth import add_arguments
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    real = tmp_path / "MINDsmall_train"
    real.mkdir()
    (real / "news.tsv").write_text("real data\n")
    args = parser.parse_args(["mind", "--output", str(tmp_path), "--users", "20", "--items", "30"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(real / "news.tsv") in err and "--overwrite" in err
    assert (real / "news.tsv").read_text() == "real data\n" and not (tmp_path / "MINDsmall_dev").exists()
    args = parser.parse_args(["mind", "--output", str(tmp_path), "--users", "20", "--items", "30", "--overwrite"])
    assert args.func(args) == 0 and (real / "news.tsv").read_text() != "real data\n"
    synth_goodreads(tmp_path / "g", users=5, items=10)
    args = parser.parse_args(["goodreads", "--output", str(tmp_path / "g"), "--users", "5", "--items", "10"])
    assert args.func(args) == 2 and "goodreads_books_synthetic.json.gz" in capsys.readouterr().err


def test_sizes_below_one_are_refused(tmp_path, capsys):
    from dataset_converters.synth import add_arguments
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for dataset, flag in (("mind", "--users"), ("goodreads", "--users"), ("mind", "--items"),
                          ("goodreads", "--history-mean")):
        args = parser.parse_args([dataset, "--output", str(tmp_path / "x"), flag, "0"])
        assert args.func(args) == 2
        assert capsys.readouterr().err == f"error: {flag} must be at least 1, got 0\n"
    assert not (tmp_path / "x").exists()


def test_an_output_under_a_file_is_one_line(tmp_path, capsys):
    from dataset_converters.synth import add_arguments
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (tmp_path / "afile").write_text("x")
    args = parser.parse_args(["goodreads", "--output", str(tmp_path / "afile" / "raw"), "--users", "5"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "afile") in err and "--output" in err
