"""Raw input that cannot be converted as it is: each stops with one line naming the file and what to do (or, for a
bad line with --skip-bad-lines, is counted); a byte-order mark is not part of the first id."""
import gzip
import os
import zipfile

import pytest

from dataset_converters import goodreads, mind
from dataset_converters.impressions import ConvertOptions
from dataset_converters.reading import BadLineError
from test_converters_goodreads import write_goodreads
from test_converters_mind import DEV_BEHAVIORS, TRAIN_BEHAVIORS, read_rows, write_mind


def convert_mind(raw, out, **options):
    return mind.convert_mind(raw, out, ConvertOptions(name="mind", **options), valid_fraction=0.5)


def convert_goodreads(raw, out, **options):
    return goodreads.convert_goodreads(raw, out, ConvertOptions(name="goodreads", **options), 0.6, 0.8)


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def zip_splits(raw, folder):
    os.makedirs(folder)
    for split in ("train", "dev"):
        with zipfile.ZipFile(os.path.join(folder, f"MINDsmall_{split}.zip"), "w", zipfile.ZIP_DEFLATED) as archive:
            for name in ("news.tsv", "behaviors.tsv"):
                archive.write(os.path.join(raw, split, name), name)
    return str(folder)


def test_corrupt_zip(tmp_path, capsys):
    zipped = zip_splits(write_mind(tmp_path / "raw"), tmp_path / "zipped")
    path = os.path.join(zipped, "MINDsmall_dev.zip")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])  # a download cut in half
    assert mind.main(["--input", zipped, "--output", str(tmp_path / "out")]) == 2
    err = one_error_line(capsys)
    assert path in err and "truncated or corrupt" in err and "download" in err
    assert not (tmp_path / "out" / "mind").exists()


def test_zip_member_with_damaged_data(tmp_path, capsys):
    zipped = zip_splits(write_mind(tmp_path / "raw"), tmp_path / "zipped")
    path = os.path.join(zipped, "MINDsmall_train.zip")
    data = bytearray(open(path, "rb").read())
    start = data.index(b"PK\x03\x04") + 30 + len("news.tsv")  # the first member's compressed bytes
    data[start:start + 40] = bytes(40)
    open(path, "wb").write(bytes(data))
    assert mind.main(["--input", zipped, "--output", str(tmp_path / "out")]) == 2
    err = one_error_line(capsys)
    assert f"{path}:news.tsv" in err and "truncated or corrupt" in err


def test_truncated_gz(tmp_path, capsys):
    raw = write_goodreads(tmp_path / "raw")
    path = os.path.join(raw, "goodreads_interactions_poetry.json.gz")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-12])  # no end-of-stream marker
    for flags in ([], ["--skip-bad-lines"]):
        assert goodreads.main(["--input", raw, "--output", str(tmp_path / "out")] + flags) == 2
        err = one_error_line(capsys)
        assert path in err and "truncated or corrupt" in err


def test_deeply_nested_json_is_a_bad_line(tmp_path, capsys):
    raw = write_goodreads(tmp_path / "raw", extra_lines=["[" * 100000 + "]" * 100000])
    assert goodreads.main(["--input", raw, "--output", str(tmp_path / "strict")]) == 2
    err = one_error_line(capsys)
    assert "goodreads_interactions_poetry.json.gz, line 12, field '(json)': nested too deeply" in err
    report = convert_goodreads(raw, tmp_path / "lenient", skip_bad_lines=True)
    assert list(report["bad_lines"].values()) == [1]


def test_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    raw = write_mind(tmp_path / "raw")
    for name in ("news.tsv", "behaviors.tsv"):
        path = os.path.join(raw, "train", name)
        data = open(path, "rb").read()
        open(path, "wb").write(b"\xef\xbb\xbf" + data)
    convert_mind(raw, tmp_path / "out")
    assert read_rows(tmp_path / "out" / "mind" / "mind.train.inter")[1][:3] == ["train-1", "U1", "N3"]
    assert read_rows(tmp_path / "out" / "mind" / "mind.item")[1][0] == "N1"
    graw = write_goodreads(tmp_path / "graw")
    path = os.path.join(graw, "goodreads_books_poetry.json")
    data = open(path, "rb").read()
    open(path, "wb").write(b"\xef\xbb\xbf" + data)
    convert_goodreads(graw, tmp_path / "gout")  # strict: the first book line parses


@pytest.mark.parametrize("split, name", [("train", "behaviors.tsv"), ("dev", "behaviors.tsv"),
                                         ("train", "news.tsv")])
def test_empty_input_file_stops_at_once(tmp_path, capsys, split, name):
    raw = write_mind(tmp_path / "raw")
    path = os.path.join(raw, split, name)
    open(path, "w").close()
    assert mind.main(["--input", raw, "--output", str(tmp_path / "out")]) == 2
    err = one_error_line(capsys)
    assert f"{path} is empty" in err
    assert not (tmp_path / "out" / "mind").exists()


def test_a_split_left_empty_stops_with_the_counts(tmp_path):
    raw = write_mind(tmp_path / "raw", dev_behaviors=["1\tU1\t11/15/2019 12:15:00 AM\tN1\tN77-1 N78-0"])
    with pytest.raises(ValueError, match=r"no valid rows left from .*dev/behaviors.tsv \(1 impressions read, 1 dropped"):
        convert_mind(raw, tmp_path / "out")
    assert not (tmp_path / "out" / "mind").exists()


def test_empty_goodreads_interactions(tmp_path, capsys):
    raw = write_goodreads(tmp_path / "raw")
    path = os.path.join(raw, "goodreads_interactions_poetry.json.gz")
    with gzip.open(path, "wt") as f:
        f.write("\n")
    assert goodreads.main(["--input", raw, "--output", str(tmp_path / "out")]) == 2
    assert f"{path} is empty" in one_error_line(capsys)


def test_repeated_impression_id_names_file_and_line(tmp_path):
    behaviors = TRAIN_BEHAVIORS + ["2\tU9\t11/13/2019 3:30:00 PM\tN1\tN3-1 N4-0"]  # id 2 again, another user
    raw = write_mind(tmp_path / "raw", train_behaviors=behaviors)
    with pytest.raises(BadLineError) as info:
        convert_mind(raw, tmp_path / "out")
    assert (info.value.line_no, info.value.field) == (4, "impression_id")
    assert str(info.value).startswith(os.path.join(raw, "train", "behaviors.tsv") + ", line 4")
    report = convert_mind(raw, tmp_path / "lenient", skip_bad_lines=True)
    assert report["splits"]["train"]["impressions"] == 3 and list(report["bad_lines"].values()) == [1]
    # the same raw id in two files is fine: ids are made unique per split (`train-2`, `dev-2`)
    assert any(line.startswith("2\t") for line in DEV_BEHAVIORS)


def test_most_of_a_split_dropped_is_said_on_the_console(tmp_path, capsys):
    unknown = [f"{i}\tU{i}\t11/11/2019 9:05:58 AM\tN1\tN9{i}-1 N4-0" for i in range(10, 30)]
    raw = write_mind(tmp_path / "raw", train_behaviors=TRAIN_BEHAVIORS + unknown)
    assert mind.main(["--input", raw, "--output", str(tmp_path / "out"), "--valid-fraction", "0.5"]) == 0
    err = capsys.readouterr().err
    assert ("warning: 20 of 23 train impressions dropped: no click left after removing ids missing from news.tsv "
            "(22 unknown candidate ids; 1 unknown history ids)") in err


def test_empty_folder_says_which_files_it_looked_for(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert mind.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    err = one_error_line(capsys)
    assert "no MIND files found" in err and "MINDsmall_train.zip" in err and "behaviors.tsv" in err
    assert "--variant" not in err
    assert goodreads.main(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    assert "goodreads_interactions*.json(.gz)" in one_error_line(capsys)


def test_goodreads_bom_in_json_lines(tmp_path):
    raw = write_goodreads(tmp_path / "raw")
    path = os.path.join(raw, "goodreads_interactions_poetry.json.gz")
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + data)
    report = convert_goodreads(raw, tmp_path / "out")
    # 3 train-window positives, A's first of them history only (--history-only-share)
    assert report["bad_lines"] == {} and report["splits"]["train"]["positives"] == 2
