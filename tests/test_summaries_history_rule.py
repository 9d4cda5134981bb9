"""Summaries never see the targets they supervise: over converted MIND and Goodreads, every item a training summary
is written from precedes the user's training impressions, and test references read test-time histories only."""
import csv
import shutil

import pytest

from dataset_converters.store import open_store

from recbole_embsum.cli import main
from recbole_embsum.summaries import load_records, resolve_options, summarize_dataset
from recbole_embsum.summaries import pipeline
from recbole_embsum.summaries.history import dataset_file, training_engagements
from recbole_embsum.summaries.store import SOURCES, SummaryAppender, load_summaries, make_record


def read_rows(path):
    """[(user, item, label, item_id_list)] of a converted ``.inter`` file (item_id_list from the history store)."""
    name, _, split = path.name[: -len(".inter")].rpartition(".")
    histories = open_store(path.parent, name).row_histories(split)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        names = [cell.split(":")[0] for cell in next(reader)]
        col = {name: names.index(name) for name in ("user_id", "item_id", "label")}
        return [(row[col["user_id"]], row[col["item_id"]], float(row[col["label"]]), next(histories).split())
                for row in reader]


def summarize_recording_items(monkeypatch, data_path, dataset, output, split="train"):
    """Run the heuristic summarize and return ``({user: items the prompt was built from}, records)``."""
    seen = {}
    real = pipeline.make_backend

    def recording(*args, **kwargs):
        backend = real(*args, **kwargs)
        run = backend.run

        def run_and_record(jobs):
            for answer in run(jobs):
                seen[answer.job.user_id] = [item.item_id for item in answer.job.items]
                yield answer

        backend.run = run_and_record
        return backend

    monkeypatch.setattr(pipeline, "make_backend", recording)
    summarize_dataset(data_path, dataset, resolve_options(overrides={"output": str(output)}), split=split)
    return seen, load_records(output)


def leaks(rows, items_of):
    """Training rows whose positive is among its user's summary items without being in the row's history."""
    return [(user, item) for user, item, label, history in rows
            if label > 0 and item in items_of.get(user, ()) and item not in history]


@pytest.mark.parametrize("fixture", ["mind_dataset", "goodreads_dataset"])
def test_no_training_positive_is_among_the_items_its_summary_was_written_from(request, monkeypatch, tmp_path,
                                                                               fixture):
    data_path, name = request.getfixturevalue(fixture)
    seen, records = summarize_recording_items(monkeypatch, data_path, name, tmp_path / "s.jsonl")
    rows = read_rows(dataset_file(data_path, name, ".train.inter"))
    assert leaks(rows, seen) == []
    assert {record["source"] for record in records} <= {SOURCES["train"]}
    assert {record["user_id"] for record in records} == set(seen)
    first = {}  # each user's earliest training history (rows are written in time order per user)
    for user, _, _, history in rows:
        first.setdefault(user, history)
    for user, items in seen.items():
        assert set(items) <= set(first[user])  # only items engaged with before the first training impression
    # MIND: the behaviors.tsv history; Goodreads: the history-only books before the first training row
    assert len(seen) > 100 and len(records) == len(seen)
    if name == "mind":  # MIND: the behaviors.tsv history, the same for all of a user's impressions
        # the rule the old code broke: its summaries also held the training clicks
        clicks = {}
        for user, item, label, history in rows:
            if label > 0 and item not in history:
                clicks.setdefault(user, set()).add(item)
        assert leaks(rows, {user: first[user] + sorted(clicks.get(user, ())) for user in first})


def test_summarize_split_test_reads_only_test_time_histories(monkeypatch, tmp_path, mind_dataset):
    data_path, name = mind_dataset
    seen, records = summarize_recording_items(monkeypatch, data_path, name, tmp_path / "t.jsonl", split="test")
    train_users = set(training_engagements(dataset_file(data_path, name, ".train.inter")))
    test_rows = read_rows(dataset_file(data_path, name, ".test.inter"))
    histories = {}
    for user, _, _, history in test_rows:
        histories.setdefault(user, set()).update(history)
    assert seen and not set(seen) & train_users
    for user, items in seen.items():
        assert set(items) <= histories[user]  # never a candidate that is not in the history
    assert leaks(test_rows, seen) == []
    assert {record["source"] for record in records} == {SOURCES["test"]}


def test_a_file_written_under_the_old_rule_is_refused_and_flagged_when_loaded(tmp_path, mind_dataset, caplog,
                                                                               capsys):
    data_path, name = mind_dataset
    root = tmp_path / "data"
    shutil.copytree(data_path, root)
    path = root / name / f"{name}.summaries.jsonl"
    with SummaryAppender(path) as out:  # an older summarize's record: no source
        out.append(make_record("NOBODY", "Likes sports.", "heuristic", "tfidf-v1", "0"))
    assert main(["summarize", "--dataset", name, "--data-path", str(root)]) == 2
    err = capsys.readouterr().err
    assert "holds 1 summaries written from another history (no recorded source" in err and "--overwrite" in err
    with caplog.at_level("WARNING"):
        assert load_summaries(path, source=SOURCES["train"]) == {"NOBODY": "Likes sports."}
    assert "1 of 1 summaries were not written from the history before first train impression" in caplog.text
    assert main(["summarize", "--dataset", name, "--data-path", str(root), "--overwrite"]) == 0
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert "NOBODY" not in load_summaries(path, source=SOURCES["train"])
    assert caplog.text == ""
