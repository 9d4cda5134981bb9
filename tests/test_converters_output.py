"""Outputs that never destroy data: staged conversion and swap, leftovers of killed runs, names, errors a person
can act on (read-only folder, a file in the way, full disk), and the converted dataset's own yaml."""
import errno
import fcntl
import os

import pytest
import yaml

from dataset_converters import atomic
from dataset_converters.impressions import ConvertOptions
from dataset_converters.mind import convert_mind, main
from dataset_converters.reading import BadLineError
from dataset_converters.staging import StagedFolder, check_name
from test_converters_mind import TRAIN_BEHAVIORS, write_mind


def convert(raw, out, name="mind", **options):
    return convert_mind(raw, out, ConvertOptions(name=name, **options), valid_fraction=0.5)


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, folder)] = open(path, "rb").read()
    return files


def everything_under(folder):
    return sorted(os.path.relpath(os.path.join(root, n), folder)
                  for root, dirs, names in os.walk(folder) for n in dirs + names)


@pytest.fixture
def converted(tmp_path):
    raw = write_mind(tmp_path / "raw")
    convert(raw, tmp_path / "out")
    return raw, tmp_path / "out"


def test_failed_overwrite_keeps_the_old_dataset(converted):
    raw, out = converted
    before = snapshot(out)
    with open(os.path.join(raw, "train", "behaviors.tsv"), "a", encoding="utf-8") as f:
        f.write("9\tU1\tnot a time\tN1\tN3-1\n")
    with pytest.raises(BadLineError):
        convert(raw, out, overwrite=True)
    assert snapshot(out) == before  # nothing deleted, nothing left behind (no .mind.tmp/, no lock)
    assert os.listdir(out) == ["mind"]
    assert not [p for p in everything_under(out) if os.path.basename(p).startswith(".")]


def test_overwrite_swaps_in_the_new_dataset_keeps_user_files_drops_the_tokenizer(converted):
    raw, out = converted
    folder = out / "mind"
    (folder / "mind.summaries.jsonl").write_text('{"user_id": "U1"}\n')
    (folder / "notes.txt").write_text("mine\n")
    (folder / "mind.tokenizer").mkdir()
    (folder / "mind.tokenizer" / "tokenizer.json").write_text("{}")
    write_mind(raw, train_behaviors=TRAIN_BEHAVIORS[:2])
    report = convert(raw, out, overwrite=True)
    assert report["splits"]["train"]["impressions"] == 2
    assert sorted(os.listdir(folder)) == ["mind.item", "mind.stats.json", "mind.store", "mind.summaries.jsonl", "mind.test.inter",
                                          "mind.text.jsonl", "mind.train.inter", "mind.valid.inter", "mind.yaml",
                                          "notes.txt"]  # the tokenizer of the old text is gone
    assert (folder / "mind.summaries.jsonl").read_text() == '{"user_id": "U1"}\n'
    assert sorted(os.listdir(out)) == ["mind"]


def test_leftovers_of_a_killed_run_are_removed_and_named(converted, capsys):
    raw, out = converted
    (out / ".mind.tmp").mkdir()
    (out / ".mind.tmp" / "mind.train.inter").write_text("half")
    (out / "mind" / ".mind.train.inter.x1y2.tmp").write_text("half")
    assert main(["--input", raw, "--output", str(out)]) == 2  # no --overwrite: refused, leftovers named
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert str(out / ".mind.tmp") in err and str(out / "mind" / ".mind.train.inter.x1y2.tmp") in err
    assert not (out / ".mind.tmp").exists() and not (out / "mind" / ".mind.train.inter.x1y2.tmp").exists()
    # the same with --overwrite and with a fresh target: removed, and the console says which
    (out / ".other.tmp").mkdir()
    (out / ".other.tmp" / "x").write_text("half")
    assert main(["--input", raw, "--output", str(out), "--name", "other", "--valid-fraction", "0.5"]) == 0
    assert f"removed {out / '.other.tmp'}" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["mind", "other"]


def test_an_interrupted_swap_restores_the_old_dataset(converted):
    raw, out = converted
    before = snapshot(out / "mind")
    os.rename(out / "mind", out / ".mind.old")  # killed between the two renames of the swap
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(raw, out)
    assert snapshot(out / "mind") == before and not (out / ".mind.old").exists()


def test_a_running_conversion_of_the_same_name_is_not_disturbed(converted):
    raw, out = converted
    with open(out / ".mind.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (out / ".mind.tmp").mkdir()  # the other run's staging folder
        with pytest.raises(FileExistsError, match="another conversion is writing"):
            convert(raw, out, overwrite=True)
        assert (out / ".mind.tmp").is_dir()


@pytest.mark.parametrize("name", ["../../x", "", " ", ".", "..", ".hidden", "a/b", "a\\b", " mind"])
def test_names_must_be_plain_file_names(tmp_path, capsys, name):
    raw = write_mind(tmp_path / "raw")
    with pytest.raises(ValueError, match="--name"):
        check_name(name)
    assert main(["--input", raw, "--output", str(tmp_path / "out" / "deep"), "--name", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --name")
    assert sorted(os.listdir(tmp_path)) == ["raw"]  # nothing written anywhere


def test_output_under_a_file_says_which_file(tmp_path, capsys):
    raw = write_mind(tmp_path / "raw")
    (tmp_path / "afile").write_text("x")
    for output in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert main(["--input", raw, "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{tmp_path / 'afile'} is a file, not a folder; choose another --output" in err
    assert (tmp_path / "afile").read_text() == "x"


def test_read_only_output_folder(tmp_path, capsys, monkeypatch):
    raw = write_mind(tmp_path / "raw")
    out = tmp_path / "out"
    out.mkdir()
    real_mkdir = os.mkdir

    def refuse(path, *args, **kwargs):  # what a read-only folder does (chmod has no effect for root)
        if os.path.dirname(os.fspath(path)) == str(out):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)
    assert main(["--input", raw, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out / ".mind.tmp") in err and "no permission to write there" in err
    assert "choose another --output" in err
    assert os.listdir(out) == []


def test_full_disk_leaves_no_temporary_files_and_the_old_dataset(converted, capsys, monkeypatch):
    raw, out = converted
    before = snapshot(out)

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.AtomicTable, "write_formatted", full)
    assert main(["--input", raw, "--output", str(out), "--overwrite", "--valid-fraction", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out / "mind") in err and "the disk is full" in err
    assert "choose another --output" in err
    assert snapshot(out) == before
    assert not [p for p in everything_under(out) if p.endswith(".tmp") or ".mind.tmp" in p]


def test_empty_folder_and_raised_errors_leave_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with StagedFolder(tmp_path, "x") as stage:
            open(os.path.join(stage.path, "x.item"), "w").close()
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    with StagedFolder(tmp_path, "x") as stage:
        stage.commit()
    assert os.listdir(tmp_path) == ["x"]


def test_converted_yaml_is_the_packaged_one_with_this_history_width(tmp_path, converted):
    raw, out = converted
    packaged = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "properties", "dataset",
                                                "mind.yaml"), encoding="utf-8"))
    assert yaml.safe_load((out / "mind" / "mind.yaml").read_text(encoding="utf-8")) == packaged
    convert(raw, tmp_path / "other", name="mind_large", history_len=25)
    text = (tmp_path / "other" / "mind_large" / "mind_large.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text) == {**packaged, "seq_len": {"item_id_list": 25}, "MAX_ITEM_LIST_LENGTH": 25}
    assert "# RecBole settings of the converted dataset 'mind_large'" in text
    assert "--history-len 25" in text and text.count("seq_len:") == 1


def test_a_symlinked_dataset_folder_is_replaced_where_it_points(converted, tmp_path):
    raw, out = converted
    os.rename(out / "mind", tmp_path / "big_disk_mind")
    os.symlink(tmp_path / "big_disk_mind", out / "mind")
    write_mind(raw, train_behaviors=TRAIN_BEHAVIORS[:2])
    report = convert(raw, out, overwrite=True)
    assert report["splits"]["train"]["impressions"] == 2
    assert os.path.islink(out / "mind") and len(read_train(out / "mind")) == 4
    assert sorted(os.listdir(out)) == ["mind"] and not (tmp_path / ".big_disk_mind.old").exists()


def read_train(folder):
    return open(folder / "mind.train.inter", encoding="utf-8").read().splitlines()


def test_writing_the_yaml_imports_neither_torch_nor_recbole():
    import subprocess
    import sys

    code = ("import sys; from dataset_converters.recbole_yaml import dataset_yaml_text; "
            "text = dataset_yaml_text('goodreads', 'gr', 60); "
            "print('benchmark_filename' in text, 'torch' in sys.modules, 'recbole' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


def test_the_console_script_converts_without_importing_recbole(tmp_path):
    import subprocess
    import sys

    from dataset_converters.synth import synth_mind

    synth_mind(tmp_path / "raw", users=30, items=40)
    code = ("import sys, recbole_embsum_cli; rc = recbole_embsum_cli.main(sys.argv[1:]); "
            "print('torch' in sys.modules, 'recbole' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code, "convert", "mind", "--input", str(tmp_path / "raw"),
                          "--output", str(tmp_path / "data"), "--valid-fraction", "0.5"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1].split() == ["False", "False", "0"]
    assert (tmp_path / "data" / "mind" / "mind.yaml").is_file()
