"""MIND converter: a hand-written tiny MIND checked row by row, zip input, bad input, options, determinism, RecBole."""
import csv
import json
import os
import shutil
import zipfile

import pytest

from dataset_converters.impressions import ConvertOptions, sample_negatives
from dataset_converters.mind import convert_mind, find_splits, in_valid, main
from dataset_converters.reading import BadLineError

NEWS = [
    # news_id, category, subcategory, title, abstract
    ("N1", "sports", "football", '"Quoted" start, then text', "Abstract one"),
    ("N2", "news", "politics", "Café über naïve — 東京", ""),
    ("N3", "sports", "golf", "It's a 'single' quote", "Third abstract"),
    ("N4", "travel", '"odd" sub', "Four", "Four abstract"),
    ("N5", "news", "politics", "Five", "Five abstract"),
]
DEV_NEWS = NEWS + [("N6", "travel", "cruise", "Six", "Six abstract")]
TRAIN_BEHAVIORS = [
    "1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N4-0 N5-0",
    "2\tU2\t11/12/2019 1:00:00 PM\t\tN4-1 N5-1 N1-0",
    "3\tU1\t11/13/2019 3:30:00 PM\tN1 N2 N99\tN3-0 N5-1 N77-0",
]
DEV_BEHAVIORS = [  # impression 1 -> valid, 2 -> test, 5 -> valid (crc32 rule)
    "1\tU1\t11/15/2019 12:15:00 AM\tN1 N2 N3\tN6-1 N4-0",
    "2\tU3\t11/15/2019 12:30:00 PM\tN5\tN1-0 N2-1",
    "5\tU2\t11/15/2019 12:30:00 PM\t\tN88-1",
]
T1, T2, T3, TD1, TD2 = 1573463158, 1573563600, 1573659000, 1573776900, 1573821000


def _news_line(row):
    return "\t".join(row + (f"https://example.com/{row[0]}.html", "[]", "[]"))


def write_mind(folder, train_behaviors=TRAIN_BEHAVIORS, dev_behaviors=DEV_BEHAVIORS, news=None, test_behaviors=None):
    """A MIND folder in the `train/ dev/ [test/]` layout."""
    splits = [("train", NEWS, train_behaviors), ("dev", DEV_NEWS, dev_behaviors)]
    if test_behaviors is not None:
        splits.append(("test", DEV_NEWS, test_behaviors))
    for split, split_news, behaviors in splits:
        os.makedirs(os.path.join(folder, split), exist_ok=True)
        lines = news if news is not None and split == "train" else [_news_line(r) for r in split_news]
        with open(os.path.join(folder, split, "news.tsv"), "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(folder, split, "behaviors.tsv"), "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(behaviors) + "\n")
    return str(folder)


def read_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def convert(raw, out, valid_fraction=0.5, **options):
    # The hand-written dev impressions above are placed for a half/half split (the default is 0.1, Table 4).
    options.setdefault("layout", "inline")  # these tests read the rows' item_id_list / neg_items cells
    return convert_mind(raw, out, ConvertOptions(name="mind", **options), valid_fraction=valid_fraction)


@pytest.fixture
def tiny(tmp_path):
    raw = write_mind(tmp_path / "raw")
    report = convert(raw, tmp_path / "out")
    return tmp_path / "out" / "mind", report


def test_train_rows_one_per_click_with_history_and_negatives(tiny):
    folder, _ = tiny
    rows = read_rows(folder / "mind.train.inter")
    assert rows[0] == ["impression_id:token", "user_id:token", "item_id:token", "label:float", "timestamp:float",
                       "item_id_list:token_seq", "neg_items:token_seq"]
    assert rows[1:] == [
        ["train-1", "U1", "N3", "1", str(T1), "N1 N2", "N4 N5"],
        ["train-2", "U2", "N4", "1", str(T2), "", "N1"],
        ["train-2", "U2", "N5", "1", str(T2), "", "N1"],
        # N99 (history) and N77 (candidate) are not in any news.tsv: dropped
        ["train-3", "U1", "N5", "1", str(T3), "N1 N2", "N3"],
    ]


def test_dev_split_into_valid_and_test_one_row_per_candidate(tiny):
    folder, report = tiny
    assert in_valid("1", 0.5) and not in_valid("2", 0.5) and in_valid("5", 0.5)
    assert read_rows(folder / "mind.valid.inter")[1:] == [
        ["dev-1", "U1", "N6", "1", str(TD1), "N1 N2 N3", ""],
        ["dev-1", "U1", "N4", "0", str(TD1), "N1 N2 N3", ""],
    ]  # dev-5 has only an unknown candidate: dropped
    assert read_rows(folder / "mind.test.inter")[1:] == [
        ["dev-2", "U3", "N1", "0", str(TD2), "N5", ""],
        ["dev-2", "U3", "N2", "1", str(TD2), "N5", ""],
    ]
    assert not os.path.exists(folder / "mind.predict.inter")
    assert report["splits"]["valid"]["dropped_impressions"] == 1
    assert report["splits"]["test"]["new_users"] == 1  # U3 never appears in train
    assert report["unknown_ids"] == {"candidate": {"count": 2, "examples": ["N77", "N88"]},
                                     "history": {"count": 1, "examples": ["N99"]}}


def test_items_and_exact_text(tiny):
    folder, report = tiny
    items = read_rows(folder / "mind.item")
    assert items[0] == ["item_id:token", "category:token", "subcategory:token"]
    assert [row[0] for row in items[1:]] == ["N1", "N2", "N3", "N4", "N5", "N6"]
    assert items[4] == ["N4", "travel", '"odd" sub']
    with open(folder / "mind.text.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line) for line in f]
    assert texts[0] == {"item_id": "N1", "title": '"Quoted" start, then text', "abstract": "Abstract one",
                        "category": "sports", "subcategory": "football"}
    assert texts[1]["title"] == "Café über naïve — 東京"
    assert report["items"] == 6 and report["categories"] == 3
    assert report["tokens_per_title"] == round((4 + 5 + 4 + 1 + 1 + 1) / 6, 2)
    stats = json.loads((folder / "mind.stats.json").read_text(encoding="utf-8"))
    assert stats["splits"]["train"]["positives"] == 4 and stats["splits"]["train"]["negatives"] == 4


def test_zip_input_gives_the_same_bytes(tmp_path):
    raw = write_mind(tmp_path / "raw")
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for split in ("train", "dev"):
        with zipfile.ZipFile(zipped / f"MINDsmall_{split}.zip", "w") as archive:
            for name in ("news.tsv", "behaviors.tsv"):
                archive.write(os.path.join(raw, split, name), name)
    assert {s: (n.member, b.member) for s, (n, b) in find_splits(zipped).items()} == {
        "train": ("news.tsv", "behaviors.tsv"), "dev": ("news.tsv", "behaviors.tsv")}
    convert(raw, tmp_path / "a")
    convert(zipped, tmp_path / "b")
    for suffix in (".train.inter", ".valid.inter", ".test.inter", ".item", ".text.jsonl"):
        assert (tmp_path / "a" / "mind" / f"mind{suffix}").read_bytes() == \
               (tmp_path / "b" / "mind" / f"mind{suffix}").read_bytes()


def test_several_variants_need_a_choice(tmp_path, synth_mind_raw):
    shutil.copytree(synth_mind_raw, tmp_path / "raw")
    shutil.copytree(tmp_path / "raw" / "MINDsmall_train", tmp_path / "raw" / "MINDlarge_train")
    with pytest.raises(FileNotFoundError, match="--variant"):
        find_splits(tmp_path / "raw")
    assert set(find_splits(tmp_path / "raw", variant="small")) == {"train", "dev"}


@pytest.mark.parametrize("line, field", [
    ("9\tU1\t11/11/2019 9:05:58 AM\tN1", "(columns)"),
    ("9\tU1\t11/31/2019 9:05:58 AM\tN1\tN3-1", "time"),
    ("9\tU1\t2019-11-11 09:05:58\tN1\tN3-1", "time"),
    ("9\tU1\t11/11/2019 9:05:58 AM\tN1\tN3-2", "impressions"),
    ("9\tU1\t11/11/2019 9:05:58 AM\tN1\tN3", "impressions"),
])
def test_bad_behaviors_line_names_file_line_and_field(tmp_path, line, field):
    raw = write_mind(tmp_path / "raw", train_behaviors=TRAIN_BEHAVIORS[:2] + [line])
    with pytest.raises(BadLineError) as info:
        convert(raw, tmp_path / "out")
    assert info.value.line_no == 3 and info.value.field == field
    assert str(info.value).startswith(os.path.join(raw, "train", "behaviors.tsv") + ", line 3, field")


def test_bad_news_line_and_skip_bad_lines_counts(tmp_path):
    news = [_news_line(r) for r in NEWS] + ["N7\tsports\tonly three"]
    raw = write_mind(tmp_path / "raw", news=news,
                     train_behaviors=TRAIN_BEHAVIORS + ["9\tU1\tnot a time\tN1\tN3-1", "\xff"])
    with open(os.path.join(raw, "train", "behaviors.tsv"), "ab") as f:
        f.write(b"10\tU1\t11/11/2019 9:05:58 AM\tN1\t\xff\xfe-1\n")  # not UTF-8
    with pytest.raises(BadLineError, match=r"news.tsv, line 6, field '\(columns\)': expected 8"):
        convert(raw, tmp_path / "strict")
    report = convert(raw, tmp_path / "lenient", skip_bad_lines=True)
    assert report["bad_lines"] == {os.path.join(raw, "train", "behaviors.tsv"): 3,
                                   os.path.join(raw, "train", "news.tsv"): 1}
    assert report["splits"]["train"]["rows"] == 4  # the good lines are all converted


def test_existing_output_needs_overwrite_and_keeps_other_files(tmp_path):
    raw = write_mind(tmp_path / "raw")
    convert(raw, tmp_path / "out")
    (tmp_path / "out" / "mind" / "mind.summaries.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(raw, tmp_path / "out")
    assert main(["--input", raw, "--output", str(tmp_path / "out")]) == 2
    write_mind(tmp_path / "raw", test_behaviors=["1\tU1\t11/16/2019 9:00:00 AM\tN1\tN2 N3"])
    convert(raw, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "mind" / "mind.summaries.jsonl").read_text() == "{}\n"
    assert read_rows(tmp_path / "out" / "mind" / "mind.predict.inter")[1:] == [
        ["test-1", "U1", "N2", "0", "1573894800", "N1", ""], ["test-1", "U1", "N3", "0", "1573894800", "N1", ""]]
    assert not [f for f in os.listdir(tmp_path / "out" / "mind") if f.endswith(".tmp")]


def test_empty_history_drop_and_history_len(tmp_path):
    raw = write_mind(tmp_path / "raw")
    report = convert(raw, tmp_path / "out", empty_history="drop", history_len=1)
    folder = tmp_path / "out" / "mind"
    train = read_rows(folder / "mind.train.inter")[1:]
    assert [(r[0], r[5]) for r in train] == [("train-1", "N2"), ("train-3", "N2")]  # most recent item kept
    assert report["splits"]["train"]["dropped_empty_history"] == 2  # U2's two clicks
    assert report["splits"]["train"]["empty_history_rows"] == 0


def test_negative_sampling_is_deterministic_and_ordered():
    negatives = [f"N{i}" for i in range(100)]
    first = sample_negatives(negatives, 5, "train-7", seed=0)
    assert first == sample_negatives(negatives, 5, "train-7", seed=0)
    assert len(set(first)) == 5 and first == sorted(first, key=negatives.index)
    assert first != sample_negatives(negatives, 5, "train-8", seed=0)
    assert sample_negatives(negatives[:3], 5, "x") == negatives[:3]


def test_same_input_same_bytes(tmp_path, synth_mind_raw):
    for out in ("a", "b"):
        convert(synth_mind_raw, tmp_path / out, max_negatives=3)
    names = sorted(os.listdir(tmp_path / "a" / "mind"))
    assert names == ["mind.item", "mind.stats.json", "mind.test.inter", "mind.text.jsonl", "mind.train.inter",
                     "mind.valid.inter", "mind.yaml"]
    for name in names:
        assert (tmp_path / "a" / "mind" / name).read_bytes() == (tmp_path / "b" / "mind" / name).read_bytes()
    train = read_rows(tmp_path / "a" / "mind" / "mind.train.inter")[1:]
    assert max(len(r[6].split()) for r in train) == 3


def _dev_users(folder, split):
    return {row[1] for row in read_rows(folder / f"mind.{split}.inter")[1:]}


def test_dev_split_default_is_a_tenth_of_impressions_and_by_user_keeps_users_apart(tmp_path, synth_mind_raw):
    report = convert_mind(synth_mind_raw, tmp_path / "a", ConvertOptions(name="mind"))  # defaults: 0.1 by impression
    dev = report["splits"]["valid"]["impressions"] + report["splits"]["test"]["impressions"]
    assert abs(report["splits"]["valid"]["impressions"] / dev - 0.1) < 0.05
    assert report["options"]["name"] == "mind" and "crc32(impression_id) % 10000 < 1000" in report["split_rule"]
    valid = read_rows(tmp_path / "a" / "mind" / "mind.valid.inter")[1:]
    assert all(in_valid(row[0].split("-", 1)[1], 0.1) for row in valid)
    report = convert_mind(synth_mind_raw, tmp_path / "b", ConvertOptions(name="mind"), valid_fraction=0.3,
                          valid_by="user")
    folder = tmp_path / "b" / "mind"
    assert _dev_users(folder, "valid") and _dev_users(folder, "test")
    assert not _dev_users(folder, "valid") & _dev_users(folder, "test")
    assert all(in_valid(user, 0.3) for user in _dev_users(folder, "valid"))
    assert "crc32(user_id)" in report["split_rule"]


def test_stats_put_table4_beside_our_split(tiny, capsys):
    folder, report = tiny
    stats = json.loads((folder / "mind.stats.json").read_text(encoding="utf-8"))
    paper = stats["paper_table4"]
    assert paper["splits"]["valid"] == {"items": 21352, "users": 6679, "new_users": 5862, "positives": 10775,
                                        "negatives": 249607}
    assert paper["positive_shares"] == {"train": 0.6797, "valid": 0.031, "test": 0.2893}
    assert stats["positive_shares"] == {"train": 0.6667, "valid": 0.1667, "test": 0.1667}  # 4 / 1 / 1 positives
    from dataset_converters.stats import format_table

    lines = format_table(report).splitlines()
    assert lines[0].split() == ["train", "valid", "test", "paper", "train", "paper", "dev", "paper", "test"]
    positive = next(line for line in lines if line.startswith("# positive"))
    assert positive.split()[2:] == ["4", "1", "1", "236344", "10775", "100608"]
    assert any(line.startswith("# category") and "(paper: 18)" in line for line in lines)


def test_title_entities_and_entity_vectors_are_kept(tmp_path):
    raw = write_mind(tmp_path / "raw")
    entities = json.dumps([{"Label": "Paris", "Type": "G", "WikidataId": "Q90", "Confidence": 1.0,
                            "OccurrenceOffsets": [0], "SurfaceForms": ["Paris"]}])
    for split, vectors in (("train", "Q90\t0.1\t0.2\t\nQ5\t1\t2\t\n"), ("dev", "Q90\t9\t9\t\nQ7\t3\t4\t\n")):
        news = os.path.join(raw, split, "news.tsv")
        lines = open(news, encoding="utf-8").read().splitlines()
        columns = lines[0].split("\t")
        columns[6] = entities  # title_entities of the first news item
        lines[0] = "\t".join(columns)
        with open(news, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        with open(os.path.join(raw, split, "entity_embedding.vec"), "w", encoding="utf-8") as handle:
            handle.write(vectors)
    convert(raw, tmp_path / "out")
    folder = tmp_path / "out" / "mind"
    texts = [json.loads(line) for line in open(folder / "mind.text.jsonl", encoding="utf-8")]
    assert texts[0]["title_entities"] == ["Q90"] and texts[0]["abstract_entities"] == []
    assert "title_entities" not in texts[2]  # items without entities keep the five text fields only
    assert (folder / "mind.entity_embedding.vec").read_text(encoding="utf-8") == \
        "Q90\t0.1\t0.2\nQ5\t1\t2\nQ7\t3\t4\n"  # first occurrence wins


def test_malformed_entities_name_file_line_and_field(tmp_path):
    raw = write_mind(tmp_path / "raw")
    news = os.path.join(raw, "train", "news.tsv")
    lines = open(news, encoding="utf-8").read().splitlines()
    columns = lines[1].split("\t")
    columns[7] = "[{not json"
    lines[1] = "\t".join(columns)
    with open(news, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    with pytest.raises(BadLineError, match=r"news.tsv, line 2, field 'abstract_entities'"):
        convert(raw, tmp_path / "out")
