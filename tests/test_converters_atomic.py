"""The atomic writer: exact round trips through RecBole's reader, atomic replacement."""
import os

import pytest

from dataset_converters.atomic import AtomicTable, ITEM_FIELDS, clean_cell

TRICKY = [
    '"Starts with quote" then text',  # RecBole's read_csv fails on this unless the writer quotes it
    'inner "quotes", commas; and \'apostrophes\'',
    "Café über naïve — 東京 😀",
    '"',
    "trailing quote\"",
]


def test_tricky_tokens_round_trip_through_recbole(tmp_path):
    from recbole.config import Config
    from recbole.data import create_dataset

    folder = tmp_path / "rt"
    folder.mkdir()
    with AtomicTable(folder / "rt.inter", [("user_id", "token"), ("item_id", "token"), ("title", "token"),
                                           ("timestamp", "float"), ("tags", "token_seq")]) as table:
        for i, text in enumerate(TRICKY):
            table.write((f"u{i}", f"i{i}", text, 1573463158 + i, ["a", "b"] if i else []))
        table.write(("u9", "i9", "tab\tinside\nand newline", 0.5, ["c"]))
    config = Config(model="Pop", dataset="rt", config_dict={
        "data_path": str(tmp_path), "encoding": "utf-8", "load_col": None, "show_progress": False,
        "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}, "order": "TO", "mode": "full", "group_by": None}})
    dataset = create_dataset(config)
    titles = [dataset.id2token("title", t) for t in dataset.inter_feat["title"].tolist()]
    assert titles == TRICKY + ["tab inside and newline"]
    assert dataset.inter_feat["timestamp"].tolist()[-1] == 0.5


def test_clean_cell():
    assert clean_cell("a\tb\r\nc") == "a b  c"
    assert clean_cell("plain") == "plain"


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "x.item"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with AtomicTable(path, ITEM_FIELDS) as table:
            table.write(("i1", "c", "s"))
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["x.item"]


def test_file_is_readable_like_any_new_file(tmp_path):
    with AtomicTable(tmp_path / "x.item", ITEM_FIELDS) as table:
        table.write(("i1", "c", "s"))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "x.item").st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "x.item").read_text() == "item_id:token\tcategory:token\tsubcategory:token\ni1\tc\ts\n"
