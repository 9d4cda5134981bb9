"""The summary cache file: round trip, torn last line, clear errors for corrupt lines."""
import json
import logging

import pytest

from recbole_embsum.summaries.store import (
    SummaryAppender,
    SummaryFileError,
    check_own_file,
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
    header, first = path.read_text(encoding="utf-8").splitlines()[:2]
    assert json.loads(header) == {"format": "recbole-embsum/summaries", "version": 1}
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


# --- only our own files are resumed or repaired -------------------------------------------------------------------------
def test_a_single_foreign_line_without_newline_is_refused_not_cut(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my own notes, not a summary")
    with pytest.raises(SummaryFileError, match=r"notes\.txt exists and is not a recbole-embsum summaries file .*"
                                               r"--overwrite"):
        SummaryAppender(path)
    assert path.read_bytes() == b"my own notes, not a summary"


def test_foreign_complete_lines_are_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "other.jsonl"
    data = b'{"id": 1}\n{"id": 2}'
    path.write_bytes(data)
    with pytest.raises(SummaryFileError, match="line 1: missing field 'user_id'"):
        check_own_file(path)
    with pytest.raises(SummaryFileError):
        SummaryAppender(path)
    assert path.read_bytes() == data


def test_files_from_before_the_header_whose_complete_lines_are_records_are_ours(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(_record("U1")) + "\n" + '{"user_id": "U2", "su', encoding="utf-8")  # torn tail
    with SummaryAppender(path) as out:
        out.append(_record("U3"))
    assert [r["user_id"] for r in load_records(path)] == ["U1", "U3"]
    assert not path.read_text(encoding="utf-8").startswith('{"format"')  # an old file keeps its layout


def test_a_torn_multibyte_tail_after_our_header_is_cut(tmp_path):
    path = tmp_path / "s.jsonl"
    with SummaryAppender(path) as out:
        out.append(_record("U1"))
    with open(path, "ab") as handle:
        handle.write('{"user_id": "U2", "summary": "caf\u00e9'.encode("utf-8")[:-1])  # cut inside the é
    with SummaryAppender(path) as out:
        out.append(_record("U3"))
    assert [r["user_id"] for r in load_records(path)] == ["U1", "U3"]


def test_a_symlink_out_of_the_output_folder_is_never_written_through(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / "precious.txt"
    target.write_bytes(b"precious data without newline")
    folder = tmp_path / "out"
    folder.mkdir()
    link = folder / "s.jsonl"
    link.symlink_to(target)
    with pytest.raises(SummaryFileError, match="is a symbolic link to .*precious.txt, outside"):
        SummaryAppender(link)
    assert target.read_bytes() == b"precious data without newline"
    dangling = folder / "d.jsonl"
    dangling.symlink_to(outside / "new.jsonl")
    with pytest.raises(SummaryFileError, match="symbolic link"):
        SummaryAppender(dangling)
    assert not (outside / "new.jsonl").exists()
