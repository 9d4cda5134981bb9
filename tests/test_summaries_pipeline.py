"""`recbole-embsum summarize` end to end: cache and resume (also after a kill), refusing to mix, failures."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_summaries_fakes import ITEMS, TRAIN_ROWS, ChatServer, many_users_dataset, write_dataset

from recbole_embsum.cli import main
from recbole_embsum.summaries import load_records, load_summaries, resolve_options, summarize_dataset
from recbole_embsum.summaries.pipeline import TooManyFailures


def _summarize(tmp_path, *flags, dataset="toy"):
    return main(["summarize", "--dataset", dataset, "--data-path", str(tmp_path), *flags])


def test_heuristic_run_then_rerun_is_all_cached(tmp_path, capsys):
    write_dataset(tmp_path)
    assert _summarize(tmp_path) == 0
    path = tmp_path / "toy" / "toy.summaries.jsonl"
    records = load_records(path)
    assert [r["user_id"] for r in records] == ["U1", "U2", "U3"]
    assert {(r["backend"], r["model"]) for r in records} == {("heuristic", "tfidf-v1")}
    assert load_summaries(path)["U2"].startswith("This user mostly engages with news articles about sports (1 of 1).")
    before = path.read_bytes()
    assert _summarize(tmp_path) == 0
    assert path.read_bytes() == before
    assert "3 users, 3 cached, 0 asked, 0 failed (heuristic / tfidf-v1" in capsys.readouterr().out


def test_brief_heuristic_style_is_recorded_and_not_mixed_with_the_full_style(tmp_path, capsys):
    write_dataset(tmp_path)
    assert _summarize(tmp_path, "--heuristic-style", "brief") == 0
    path = tmp_path / "toy" / "toy.summaries.jsonl"
    assert {(r["backend"], r["model"]) for r in load_records(path)} == {("heuristic", "brief-v1")}
    assert load_summaries(path)["U2"] == "This user mostly engages with news articles about sports."
    before = path.read_bytes()
    assert _summarize(tmp_path) == 2  # the full style into the brief file: refused, the file untouched
    assert "made by backend 'heuristic' model 'brief-v1', but this run uses backend 'heuristic' model " \
           "'tfidf-v1'" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_a_dataset_that_was_not_converted_is_named_in_one_line(tmp_path, capsys):
    write_dataset(tmp_path)
    assert _summarize(tmp_path, dataset="MIND") == 2
    err = capsys.readouterr().err
    assert err == (f"recbole-embsum summarize: error: no converted dataset 'MIND' under {tmp_path}/ (found: toy); "
                   f"convert first with `recbole-embsum convert mind --input RAW_MIND --output {tmp_path} --name MIND`"
                   f" or pick one with --dataset=toy\n")
    assert not (tmp_path / "MIND").exists()  # nothing written for it
    assert _summarize(tmp_path / "nowhere") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data_path '{tmp_path / 'nowhere'}' does not exist" in err and "Errno" not in err


def test_other_model_or_prompt_is_refused_not_mixed(tmp_path, capsys):
    write_dataset(tmp_path)
    assert _summarize(tmp_path) == 0
    path = tmp_path / "toy" / "toy.summaries.jsonl"
    before = path.read_bytes()
    with ChatServer() as server:
        assert _summarize(tmp_path, "--backend", "openai", "--model", "m", "--base-url", server.base_url) == 2
        assert server.requests == []  # refused before asking anything
        err = capsys.readouterr().err
        assert "holds 3 summaries made by backend 'heuristic' model 'tfidf-v1', but this run uses backend " \
               "'openai' model 'm'" in err and "--overwrite" in err and "--output" in err
        template = tmp_path / "t.yaml"
        template.write_text("closing: In three sentences, what does this user like?\n", encoding="utf-8")
        assert _summarize(tmp_path, "--template", str(template)) == 2
        err = capsys.readouterr().err
        assert "holds 3 summaries whose prompt differs from the one built now (e.g. user 'U1')" in err
        assert path.read_bytes() == before
        other = tmp_path / "llm.jsonl"
        assert _summarize(tmp_path, "--backend", "openai", "--model", "m", "--base-url", server.base_url,
                          "--output", str(other)) == 0
        assert load_summaries(other) == {"U1": "Summary for someone.", "U2": "Summary for someone.",
                                         "U3": "Summary for someone."}
        assert _summarize(tmp_path, "--backend", "openai", "--model", "m", "--base-url", server.base_url,
                          "--overwrite") == 0
    assert {r["backend"] for r in load_records(path)} == {"openai"}


def test_failed_users_are_reported_and_retried_on_rerun(tmp_path, capsys):
    many_users_dataset(tmp_path, "many", 4)
    flags = ["--backend", "openai", "--model", "m", "--concurrency", "1", "--max-retries", "0"]
    with ChatServer([("status", 500, {}, "overloaded")]) as server:
        assert _summarize(tmp_path, *flags, "--base-url", server.base_url, dataset="many") == 1
        out = capsys.readouterr().out
        assert "4 users, 0 cached, 3 asked, 1 failed" in out
        assert "  U0: gave up after 1 attempt; last error: HTTP 500 from" in out
        assert _summarize(tmp_path, *flags, "--base-url", server.base_url, dataset="many") == 0
        assert "4 users, 3 cached, 1 asked, 0 failed" in capsys.readouterr().out
    assert server.users == ["U0", "U1", "U2", "U3", "U0"]
    assert len(load_summaries(tmp_path / "many" / "many.summaries.jsonl")) == 4


def test_a_backend_that_keeps_failing_stops_the_run(tmp_path):
    many_users_dataset(tmp_path, "many", 6)
    options = resolve_options(overrides={"backend": "openai", "model": "m", "concurrency": 1, "max_retries": 0,
                                         "max_consecutive_failures": 2})
    with ChatServer([("status", 400, {}, "prompt too long")] * 6) as server:
        options["base_url"] = [server.base_url]
        with pytest.raises(TooManyFailures, match=r"^2 users in a row failed; last error: HTTP 400 .*prompt too long"):
            summarize_dataset(tmp_path, "many", options)
    assert len(server.requests) == 2


def test_max_users_takes_the_first_training_users(tmp_path):
    write_dataset(tmp_path)
    assert _summarize(tmp_path, "--max-users", "2") == 0
    assert list(load_summaries(tmp_path / "toy" / "toy.summaries.jsonl")) == ["U1", "U2"]


def test_user_without_any_item_text_is_skipped_not_asked(tmp_path, capsys):
    write_dataset(tmp_path, rows=TRAIN_ROWS + [("I9", "U9", "X1", 300, "X2", "")], items=ITEMS)
    assert _summarize(tmp_path) == 0
    out = capsys.readouterr().out  # U9's items X1, X2 have no line in toy.text.jsonl
    assert "4 users, 0 cached, 3 asked, 0 failed" in out and "; 1 users skipped: none of their items has text" in out
    assert "U9" not in load_summaries(tmp_path / "toy" / "toy.summaries.jsonl")


def test_user_with_an_empty_history_before_the_first_training_row_gets_no_summary(tmp_path, capsys):
    rows = TRAIN_ROWS + [("I8", "U8", "N1", 5, "", ""), ("I9", "U8", "N2", 6, "N1", "")]  # grows from empty
    write_dataset(tmp_path, rows=rows)
    assert _summarize(tmp_path) == 0
    out = capsys.readouterr().out
    assert "4 users, 0 cached, 3 asked, 0 failed" in out and "; 1 users skipped: empty history" in out
    assert "U8" not in load_summaries(tmp_path / "toy" / "toy.summaries.jsonl")


@pytest.mark.slow
def test_resume_after_kill_asks_nobody_twice(tmp_path):
    users = 8
    many_users_dataset(tmp_path, "many", users)
    path = tmp_path / "many" / "many.summaries.jsonl"
    gate = threading.Event()
    script = ["ok", "ok", "ok", ("hang", gate)]  # the 4th request never gets its answer: the client is killed then
    command = [sys.executable, "-m", "recbole_embsum.cli", "summarize", "--dataset", "many", "--data-path",
               str(tmp_path), "--backend", "openai", "--model", "m", "--concurrency", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with ChatServer(script) as server:
        process = subprocess.Popen(command + ["--base-url", server.base_url], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240  # the child imports torch and RecBole first: slow on a loaded 2-core machine
        while len(server.requests) < 4 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert len(server.requests) == 4
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        gate.set()
        first_run = list(server.users)
        assert path.read_bytes().count(b"\n") == 1 + 3 and path.read_bytes().endswith(b"\n")  # header, whole lines
        assert [r["user_id"] for r in load_records(path)] == first_run[:3]  # answered before the kill, all kept

        rerun = subprocess.run(command + ["--base-url", server.base_url], env=env, capture_output=True, text=True,
                               timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{users} users, 3 cached, {users - 3} asked, 0 failed" in rerun.stdout
    second_run = server.users[4:]
    assert not set(second_run) & set(first_run[:3])  # nobody already answered is asked again
    assert sorted(second_run) == sorted(set(f"U{k}" for k in range(users)) - set(first_run[:3]))
    records = load_records(path)  # every line valid
    assert sorted(r["user_id"] for r in records) == sorted(f"U{k}" for k in range(users))
    assert all(r["summary"] == f"Summary for {r['user_id']}." for r in records)


def test_output_that_is_not_a_summaries_file_is_refused_unless_overwrite(tmp_path, capsys):
    write_dataset(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"a line of my own, no newline")
    assert _summarize(tmp_path, "--output", str(notes)) == 2
    err = capsys.readouterr().err
    assert "notes.txt exists and is not a recbole-embsum summaries file" in err and "--overwrite" in err
    assert notes.read_bytes() == b"a line of my own, no newline"
    assert _summarize(tmp_path, "--output", str(notes), "--overwrite") == 0
    assert [r["user_id"] for r in load_records(notes)] == ["U1", "U2", "U3"]


def test_dataset_name_that_leaves_data_path_is_refused(tmp_path, capsys):
    write_dataset(tmp_path / "inner")
    assert _summarize(tmp_path / "inner" / "toy", dataset="../toy") == 2
    assert "--dataset: '../toy' is not a plain folder name" in capsys.readouterr().err
    assert not list((tmp_path / "inner").glob("toy.summaries.jsonl"))
