"""The summary cache file: round trip, torn last line, clear errors for corrupt lines."""
import json
import logging

import pytest

from recbole_embsum.summaries.store import (
    SummaryAppender,
    SummaryFileError,
    load_records,
    load_summaries,
    make_record,
    summaries_path,
)


def _record(user, summary="Likes things.", prompt_hash="h"):
    return make_record(user, summary, "heuristic", "tfidf-v1", prompt_hash)


def test_round_trip_keeps_unicode_and_field_order(tmp_path):
    path = tmp_path / "d" / "d.summaries.jsonl"
    with SummaryAppender(path) as out:
        out.append(_record("U1", "Aime le café — et «le sport».\nDeux lignes."))
        out.append(_record("U2"))
    assert load_summaries(path) == {"U1": "Aime le café — et «le sport».\nDeux lignes.", "U2": "Likes things."}
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert list(json.loads(first)) == ["user_id", "summary", "backend", "model", "prompt_hash"]
    assert "café" in first  # written as UTF-8, not \u escapes


def test_default_path_follows_the_dataset_contract(tmp_path):
    assert summaries_path(tmp_path, "mind") == tmp_path / "mind" / "mind.summaries.jsonl"


def test_torn_last_line_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "s.jsonl"
    with SummaryAppender(path) as out:
        out.append(_record("U1"))
        out.append(_record("U2"))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"user_id": "U3", "summ')  # a writer killed mid-line
    with caplog.at_level(logging.WARNING):
        assert load_summaries(path) == {"U1": "Likes things.", "U2": "Likes things."}
    assert "torn last line" in caplog.text


def test_appender_cuts_a_torn_tail_before_writing(tmp_path):
    path = tmp_path / "s.jsonl"
    with SummaryAppender(path) as out:
        out.append(_record("U1"))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"user_id": "U2", "sum')
    with SummaryAppender(path) as out:
        out.append(_record("U3"))
    assert [r["user_id"] for r in load_records(path)] == ["U1", "U3"]
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_appender_completes_a_whole_record_missing_only_its_newline(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(_record("U1")), encoding="utf-8")  # no trailing newline
    with SummaryAppender(path) as out:
        out.append(_record("U2"))
    assert [r["user_id"] for r in load_records(path)] == ["U1", "U2"]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    lines = [json.dumps(_record("U1")), "{not json", json.dumps(_record("U3"))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SummaryFileError, match=r"s\.jsonl, line 2: not valid JSON"):
        load_summaries(path)


def test_missing_or_mistyped_field_is_named(tmp_path):
    path = tmp_path / "s.jsonl"
    bad = _record("U2")
    del bad["prompt_hash"]
    path.write_text(json.dumps(_record("U1")) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(SummaryFileError, match=r"line 2: missing field 'prompt_hash'"):
        load_summaries(path)
    wrong = _record("U2")
    wrong["summary"] = None
    path.write_text(json.dumps(wrong) + "\n", encoding="utf-8")
    with pytest.raises(SummaryFileError, match=r"line 1: field 'summary' must be a string, got NoneType"):
        load_summaries(path)


def test_later_record_for_a_user_wins(tmp_path):
    path = tmp_path / "s.jsonl"
    with SummaryAppender(path) as out:
        out.append(_record("U1", "old"))
        out.append(_record("U1", "new"))
    assert load_summaries(path) == {"U1": "new"}
