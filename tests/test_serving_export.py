"""`export` of a tiny offline EmbSum built on the converted synthetic MIND fixture: scores from the export equal the
model's own `predict`; resuming; cold-start items/users embedded from text and history alone; stored summaries."""
import json
import os
import shutil

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from recbole_embsum.checkpoint import model_checkpoint, save
from recbole_embsum.model import EmbSum
from recbole_embsum.serving.export import export_model
from recbole_embsum.serving.layout import MANIFEST_FILE, shard_name
from recbole_embsum.serving.store import EmbeddingStore

from conftest import MIND_YAML, MODEL_YAML, TINY_EMBSUM

TINY = {
    **TINY_EMBSUM,
    "session_size": 2,
    "summary_max_tokens": 8,
    "MAX_ITEM_LIST_LENGTH": 6,
    "seq_len": {"item_id_list": 6},
    "eval_batch_size": 4096,
    "metrics": ["AUC"],
    "valid_metric": "AUC",
    "device": "cpu",
    "state": "WARNING",
}


@pytest.fixture(scope="module")
def built(mind_dataset, tmp_path_factory):
    """(config, dataset, test loader, model, data folder) for a randomly initialised tiny EmbSum."""
    source, name = mind_dataset
    root = tmp_path_factory.mktemp("serving_data")
    shutil.copytree(os.path.join(source, name), root / name)  # the model caches its tokenizer next to the data
    config = Config(model=EmbSum, dataset=name, config_file_list=[MIND_YAML, MODEL_YAML],
                    config_dict={"data_path": str(root), **TINY})
    dataset = create_dataset(config)
    _, _, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = EmbSum(config, dataset).eval()
    return config, dataset, test, model, root / name


@pytest.fixture(scope="module")
def exported(built, tmp_path_factory):
    config, dataset, _, model, _ = built
    folder = tmp_path_factory.mktemp("export")
    export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=64, summaries=True)
    return folder


def test_export_scores_equal_model_predict(built, exported):
    config, dataset, test, model, _ = built
    store = EmbeddingStore(exported)
    assert store.n_items == len(dataset.field2id_token["item_id"]) - 1
    batch = next(iter(test))[0]
    with torch.no_grad():
        predicted = model.predict(batch)  # [R]
    users = dataset.field2id_token["user_id"][batch["user_id"].numpy()]
    items = dataset.field2id_token["item_id"][batch["item_id"].numpy()]
    # MIND's history is fixed within a split, so each test row's history is its user's latest one (exported).
    rows = {}
    for r, user in enumerate(users):
        rows.setdefault(str(user), []).append(r)
    assert len(rows) > 20
    for user, picked in rows.items():
        torch.testing.assert_close(store.score(user, [str(items[r]) for r in picked]), predicted[picked],
                                   rtol=1e-5, atol=1e-5)


def test_stored_summaries_are_the_models_generated_ones(built, exported):
    _, dataset, test, model, _ = built
    batch = next(iter(test))[0]
    user = str(dataset.field2id_token["user_id"][int(batch["user_id"][0])])
    seq, seq_len = batch["item_id_list"][:1], batch["item_length"][:1]
    assert EmbeddingStore(exported).summary(user) == model.generate_summary(seq, seq_len)[0]


def test_rerun_skips_finished_shards_and_a_complete_export(built, exported, tmp_path):
    config, dataset, _, model, _ = built
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    stamps = {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}
    export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=64, summaries=True)
    assert {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)} == stamps  # nothing redone

    os.unlink(folder / MANIFEST_FILE)  # as if killed while writing items shard 1
    os.unlink(folder / shard_name("items", 1))
    export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=64, summaries=True)
    after = {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}
    assert after[shard_name("items", 0)] == stamps[shard_name("items", 0)]
    assert after[shard_name("users", 0)] == stamps[shard_name("users", 0)]
    assert shard_name("items", 1) in after
    store, reference = EmbeddingStore(folder), EmbeddingStore(exported)
    user = reference.folders[0].ids["users"][0]
    items = reference.folders[0].ids["items"]
    torch.testing.assert_close(store.score(user, items), reference.score(user, items))

    with pytest.raises(FileExistsError, match="holds another export"):
        export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=32)


def test_cold_start_items_and_users_from_text_and_history(built, exported, tmp_path):
    config, dataset, _, model, data_folder = built
    texts = [json.loads(line) for line in open(data_folder / "mind.text.jsonl", encoding="utf-8")][:3]
    # Unseen ids whose text copies known items: the same tokens must give the same embeddings.
    news = tmp_path / "news.tsv"
    news.write_text("".join(f"NEW{i}\t{t['category']}\t{t['subcategory']}\t{t['title']}\t{t['abstract']}\turl\t[]\t[]\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    known = [t["item_id"] for t in texts]
    behaviors = tmp_path / "behaviors.tsv"
    behaviors.write_text(
        f"1\tUNEW\t11/15/2019 8:00:00 AM\t{known[0]}\t{known[1]}-1\n"
        f"2\tUNEW\t11/15/2019 9:00:00 AM\tNEW0 {known[1]} GONE NEW2\t{known[1]}-1 NEW1-0\n"  # latest one is used
        f"3\tUOLD\t11/15/2019 9:00:00 AM\t{known[2]}\t{known[1]}-1\n", encoding="utf-8")
    cold = tmp_path / "cold"
    export_model(model, config, dataset, str(cold), items_file=str(news), users_file=str(behaviors), batch_size=2)
    store = EmbeddingStore(exported, cold)
    assert store.folders[1].ids == {"items": ["NEW0", "NEW1", "NEW2"], "users": ["UNEW", "UOLD"]}

    torch.testing.assert_close(store.item_poly(["NEW0", "NEW1", "NEW2"]), store.item_poly(known))
    ids = dataset.field2token_id["item_id"]
    history = torch.tensor([[ids[known[0]], ids[known[1]], ids[known[2]]]])  # "GONE" is unknown: dropped
    with torch.no_grad():
        expected_user = model.user_poly_embeddings(history, torch.tensor([3]))[0]
    torch.testing.assert_close(store.user_poly("UNEW"), expected_user, rtol=1e-5, atol=1e-5)
    candidates = ["NEW1", known[0]]
    with torch.no_grad():
        poly = model.item_poly_embeddings(torch.tensor([ids[known[1]], ids[known[0]]]))
        expected = model.scorer.score_pairs(expected_user.expand(2, -1, -1), poly)
    torch.testing.assert_close(store.score("UNEW", candidates), expected, rtol=1e-5, atol=1e-5)
    assert model.item_tokens.size(0) == len(dataset.field2id_token["item_id"])  # the model's table is restored


def test_cli_export_from_a_recbole_checkpoint_then_recommend(built, exported, tmp_path, monkeypatch, capsys):
    from recbole_embsum.cli import main

    config, _, _, model, _ = built
    monkeypatch.chdir(tmp_path)  # RecBole's load_data_and_model writes its log folder into the working directory
    checkpoint = tmp_path / "EmbSum-test.pth"
    save(model_checkpoint(model, config), checkpoint)  # what the trainer saves (plus optimizer state and counters)
    out = tmp_path / "cli-export"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(out), "--summaries",
                 "--batch-size", "32"]) == 0
    assert capsys.readouterr().out.strip() == str(out)

    reference = EmbeddingStore(exported)
    user = reference.folders[0].ids["users"][5]
    candidates = reference.folders[0].ids["items"][:4]
    assert main(["recommend", "--embeddings", str(out), "--user", user, "--candidates", ",".join(candidates),
                 "--explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"# interest summary of {user}: {reference.summary(user)}"
    expected = dict(zip(candidates, reference.score(user, candidates).tolist()))
    printed = {line.split("\t")[1]: float(line.split("\t")[2]) for line in lines[2:]}
    assert printed == pytest.approx(expected, abs=1e-5)

    assert main(["export", "--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "x")]) == 1
    assert "missing.pth" in capsys.readouterr().err


def test_sharded_export_by_two_workers_equals_a_single_process_export(built, exported, tmp_path):
    config, dataset, _, model, _ = built
    folder = tmp_path / "sharded"
    options = dict(batch_size=16, shard_rows=64, summaries=True, num_workers=2)
    manifest = json.loads((exported / MANIFEST_FILE).read_text(encoding="utf-8"))
    shards = {section: manifest[section]["shards"] for section in ("items", "users")}
    assert min(len(names) for names in shards.values()) >= 2  # both workers have shards in both sections

    export_model(model, config, dataset, str(folder), worker_index=0, **options)
    written = {name for name in os.listdir(folder) if name.endswith(".safetensors")}
    assert written == {name for names in shards.values() for name in names[0::2]}  # even shards only
    assert not (folder / MANIFEST_FILE).exists()  # worker 1's shards are missing

    export_model(model, config, dataset, str(folder), worker_index=1, **options)
    assert json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")) == manifest
    assert (folder / "summaries.jsonl").read_bytes() == (exported / "summaries.jsonl").read_bytes()
    store, reference = EmbeddingStore(folder), EmbeddingStore(exported)
    items = reference.folders[0].ids["items"]
    for user in reference.folders[0].ids["users"][::7]:
        assert torch.equal(store.score(user, items), reference.score(user, items))

    stamps = {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}
    for index in (0, 1):  # a rerun of either worker, or a plain export, finds the export complete
        export_model(model, config, dataset, str(folder), worker_index=index, **options)
    export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=64, summaries=True)
    assert {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)} == stamps

    with pytest.raises(ValueError, match="worker 2 of 2"):
        export_model(model, config, dataset, str(tmp_path / "bad"), worker_index=2, **options)
    with pytest.raises(ValueError, match="give both"):
        export_model(model, config, dataset, str(tmp_path / "bad"), num_workers=2)


def test_final_plain_export_completes_a_sharded_one(built, exported, tmp_path):
    config, dataset, _, model, _ = built
    folder = tmp_path / "sharded"
    export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=64, num_workers=3, worker_index=2)
    before = {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}
    export_model(model, config, dataset, str(folder), batch_size=16, shard_rows=64)  # resumes: the other shards
    after = {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}
    assert all(after[name] == stamp for name, stamp in before.items() if name.endswith(".safetensors"))
    assert (folder / MANIFEST_FILE).exists()
    items = EmbeddingStore(exported).folders[0].ids["items"]
    user = EmbeddingStore(exported).folders[0].ids["users"][3]
    torch.testing.assert_close(EmbeddingStore(folder).score(user, items), EmbeddingStore(exported).score(user, items))


def test_worker_slot_defaults_to_the_process_groups_world_size_and_rank(tmp_path):
    import torch.distributed as dist

    from recbole_embsum.serving.export import worker_slot

    assert worker_slot() == (1, 0)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert worker_slot() == (1, 0)
        assert worker_slot(num_workers=3) == (3, 0)  # the rank fills in the index
        assert worker_slot(worker_index=0) == (1, 0)
    finally:
        dist.destroy_process_group()


def test_every_export_file_has_the_same_permissions(exported):
    umask = os.umask(0)
    os.umask(umask)
    modes = {name: os.stat(exported / name).st_mode & 0o777 for name in os.listdir(exported)}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_full_disk_during_export_is_one_line_naming_the_shard_and_leaves_no_temporary_file(built, tmp_path,
                                                                                            monkeypatch, capsys):
    import errno

    from dataset_converters.atomic import AtomicFile
    from recbole_embsum.cli import main
    from recbole_embsum.serving import layout

    config, _, _, model, _ = built
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "EmbSum-test.pth"
    save(model_checkpoint(model, config), checkpoint)

    class FullDisk:
        """A file handle on a disk that fills up: a few bytes land, then ENOSPC (which names no file)."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    class FillingUp(AtomicFile):
        def __enter__(self):
            handle = super().__enter__()
            return FullDisk(handle) if os.path.basename(self.path).startswith("users-") else handle

    monkeypatch.setattr(layout, "AtomicFile", FillingUp)
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(out), "--shard-rows", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert err == (f"recbole-embsum export: error: {out / shard_name('users', 0)}: No space left on device; the "
                   f"disk is full; free some space or choose another --output, then rerun")
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no temporary files left
    assert (out / shard_name("items", 0)).exists() and not (out / MANIFEST_FILE).exists()
