"""Checkpoints: no command runs code from a file it is given, broken files are one line, and a resumed run ends
exactly where the uninterrupted run ends (tiny EmbSum on the synthetic MIND fixture, CPU)."""
import os
import pickle
import shutil

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (registers EmbSum)
from recbole_embsum import checkpoint, quick_start
from recbole_embsum.checkpoint import FORMAT, REFUSED, CheckpointError
from recbole_embsum.cli import main
from recbole_embsum.serving.writer import ExportWriter, make_plan

from conftest import MIND_YAML, TINY_EMBSUM


class Payload:
    """Unpickling this writes ``marker``: what a crafted checkpoint does to a full unpickler."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture
def payloads(tmp_path):
    """``(marker, {kind: path})``: a torch-saved checkpoint and a raw pickle named .pth, both carrying `Payload`."""
    marker = tmp_path / "MARKER"
    torch_file = tmp_path / "crafted.pth"
    torch.save({"format": FORMAT, "version": 1, "config": Payload(marker), "state_dict": {}}, torch_file)
    raw_file = tmp_path / "raw-pickle.pth"
    raw_file.write_bytes(pickle.dumps({"format": FORMAT, "state_dict": Payload(marker)}, protocol=2))
    # The payloads work: a full unpickler runs them.
    torch.load(torch_file, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    pickle.loads(raw_file.read_bytes())
    assert marker.exists()
    marker.unlink()
    return marker, {"torch.save": torch_file, "raw pickle": raw_file}


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_export_refuses_a_crafted_checkpoint_without_running_it(payloads, kind, tmp_path, capsys, monkeypatch):
    marker, files = payloads
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", str(files[kind]), "--output", str(tmp_path / "out")]) == 1
    assert f"{files[kind]}: {REFUSED}" in one_error_line(capsys)
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_evaluate_summaries_refuses_a_crafted_checkpoint_without_running_it(payloads, kind, tmp_path, capsys,
                                                                             monkeypatch):
    marker, files = payloads
    monkeypatch.chdir(tmp_path)
    references = tmp_path / "references.jsonl"
    references.write_text("")
    assert main(["evaluate-summaries", "--checkpoint", str(files[kind]), "--references", str(references),
                 "--output", str(tmp_path / "out")]) == 2
    assert REFUSED in one_error_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_resume_refuses_a_crafted_checkpoint_without_running_it(payloads, kind, mind_dataset, tmp_path, capsys,
                                                                monkeypatch):
    marker, files = payloads
    data_path, name = mind_dataset
    monkeypatch.chdir(tmp_path)
    argv = ["--model=BPR", f"--dataset={name}", f"--data_path={data_path}", f"--resume={files[kind]}",
            f"--checkpoint_dir={tmp_path / 'saved'}", "--show_progress=False"]
    monkeypatch.setattr("sys.argv", ["run_recbole", *argv])  # RecBole's Config reads --key=value from sys.argv
    assert quick_start.main(argv) == 2
    assert REFUSED in one_error_line(capsys)
    assert not marker.exists()


def tiny_export(folder):
    """A complete export of 3 items and 2 users with random embeddings (m=2, n=1, d=4)."""
    plan = make_plan({"checkpoint": None}, {"m": 2, "n": 1, "d": 4}, ["N1", "N2", "N3"], ["U1", "U2"], "float32",
                     shard_rows=8, summaries=False)
    writer = ExportWriter(str(folder), plan)
    writer.write_shard("items", 0, {"poly": torch.randn(3, 1, 4), "keys": torch.randn(3, 1, 4)})
    writer.write_shard("users", 0, {"poly": torch.randn(2, 2, 4)})
    writer.finish(torch.randn(4, 4))
    return folder


@pytest.mark.parametrize("replaced", ["items-00000.safetensors", "scorer.safetensors"])
@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_recommend_refuses_crafted_files_in_an_export_folder(payloads, kind, replaced, tmp_path, capsys):
    marker, files = payloads
    folder = tiny_export(tmp_path / "export")
    command = ["recommend", "--embeddings", str(folder), "--user", "U1", "--candidates", "N1,N2"]
    assert main(command) == 0
    capsys.readouterr()
    (folder / replaced).write_bytes(files[kind].read_bytes())
    assert main(command) == 1
    assert f"{folder / replaced}: not a readable safetensors file" in one_error_line(capsys)
    assert not marker.exists()


def test_truncated_export_shard_is_one_line(tmp_path, capsys):
    folder = tiny_export(tmp_path / "export")
    shard = folder / "users-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    assert main(["recommend", "--embeddings", str(folder), "--user", "U1", "--topk", "2"]) == 1
    assert "truncated or corrupt" in one_error_line(capsys)


def test_truncated_missing_and_recbole_format_checkpoints_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.pth"
    checkpoint.save({"format": FORMAT, "version": 1, "state_dict": {"w": torch.randn(4096)}}, path)
    assert checkpoint.load(path)["state_dict"]["w"].shape == (4096,)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"model.pth: cannot be read, truncated or corrupt \("):
        checkpoint.load(path)
    assert main(["export", "--checkpoint", str(path), "--output", str(tmp_path / "out")]) == 1
    assert "truncated or corrupt" in one_error_line(capsys)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pth")

    # RecBole's own format (a pickled Config object) needs the full unpickler: refused, not read.
    old = tmp_path / "BPR-recbole.pth"
    config = Config(model="BPR", dataset="ml-100k", config_dict={"data_path": str(tmp_path)})
    torch.save({"config": config, "state_dict": {}, "epoch": 0}, old, pickle_protocol=4)  # as RecBole does
    with pytest.raises(CheckpointError, match=f"{old}: {REFUSED}"):
        checkpoint.load(old)
    # A plain file of something else: not ours.
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match=f"{other}: {REFUSED}$"):
        checkpoint.load(other)


def test_other_parameters_round_trip_through_a_weights_only_file_in_their_containers(tmp_path):
    import numpy as np
    import scipy.sparse

    sparse = scipy.sparse.random(5, 4, density=0.4, format="csc", random_state=0)
    with pytest.warns(PendingDeprecationWarning):  # numpy discourages np.matrix; EASE holds one all the same
        matrix = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    value = {"nested": [np.arange(3), (np.float32(1.5), "text")], "sparse": sparse, "matrix": matrix,
             "module": torch.nn.Linear(2, 2), "none": None}
    path = tmp_path / "other.pth"
    checkpoint.save({"format": FORMAT, "version": 1, "other_parameter": checkpoint.storable(value)}, path)
    back = checkpoint.restored(checkpoint.load(path)["other_parameter"])
    np.testing.assert_array_equal(back["nested"][0], np.arange(3))
    assert back["nested"][1] == (1.5, "text") and isinstance(back["nested"][1], tuple)
    assert back["sparse"].format == "csc" and (back["sparse"] != sparse).nnz == 0
    assert type(back["matrix"]) is np.matrix and (back["matrix"] == matrix).all()
    assert back["module"] is None and back["none"] is None  # a submodule comes back through state_dict instead


def _tiny_embsum(data_path, name, tmp_path, **values):
    config = Config(model="EmbSum", dataset=name, config_file_list=[MIND_YAML], config_dict={
        **TINY_EMBSUM, "data_path": data_path, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING",
        "metrics": ["AUC"], "valid_metric": "AUC", **values})
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    return config, get_model("EmbSum")(config, train._dataset)


def _change_first_title(folder, name):
    text = folder / f"{name}.text.jsonl"
    lines = text.read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace('"title": "', '"title": "Zanzibar quokka xylophone ', 1)
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_scratch_checkpoint_reloads_and_resumes_with_its_own_tokenizer_after_the_text_changed(mind_dataset,
                                                                                                tmp_path, capsys):
    source, name = mind_dataset
    data_path = tmp_path / "data"
    shutil.copytree(os.path.join(source, name), data_path / name, ignore=shutil.ignore_patterns("*.tokenizer"))
    config, model = _tiny_embsum(str(data_path), name, tmp_path)
    trained_vocab = model.tokenizer.get_vocab()
    path = tmp_path / "scratch.pth"
    checkpoint.save(checkpoint.model_checkpoint(model, config), path)
    # The text changes (a re-conversion, which also drops the tokenizer cache): the same settings now train another
    # same-size tokenizer, with which the checkpoint's weights would load without an error and mean other tokens.
    _change_first_title(data_path / name, name)
    shutil.rmtree(data_path / name / f"{name}.tokenizer")
    _, retrained = _tiny_embsum(str(data_path), name, tmp_path)
    assert retrained.tokenizer.get_vocab() != trained_vocab
    _, reloaded, *_ = checkpoint.load_data_and_model(path)
    assert reloaded.tokenizer.get_vocab() == trained_vocab
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value)

    # --resume with a model built on the new text: one line naming the option, which then resumes with the old one.
    checkpoint.save(checkpoint.trainer_state(get_trainer(config["MODEL_TYPE"], "EmbSum")(config, model), 0), path)
    trainer = get_trainer(config["MODEL_TYPE"], "EmbSum")(config, retrained)
    with pytest.raises(CheckpointError, match=r"was trained with the scratch tokenizer (\w+) and this run built \w+ "
                                              r"from the dataset's current text; run again with "
                                              r"--scratch_tokenizer=\1 \(now in") as error:
        checkpoint.resume(trainer, path)
    option = str(error.value).split("--scratch_tokenizer=")[1].split()[0]
    config, pinned = _tiny_embsum(str(data_path), name, tmp_path, scratch_tokenizer=option)
    assert pinned.tokenizer.get_vocab() == trained_vocab
    checkpoint.resume(get_trainer(config["MODEL_TYPE"], "EmbSum")(config, pinned), path)


# --- exact resume -----------------------------------------------------------------------------------------------------
RESUME_TINY = {
    **TINY_EMBSUM, "train_batch_size": 32, "eval_batch_size": 512, "MAX_ITEM_LIST_LENGTH": 10,
    "title_max_tokens": 12, "abstract_max_tokens": 12, "summary_max_tokens": 16,
    "eval_global_vector": "start", "epochs": 2, "eval_step": 1, "learner": "adamw", "learning_rate": 0.005,
    "lr_scheduler": "linear", "warmup_steps": 2, "metrics": ["AUC"], "valid_metric": "AUC", "state": "WARNING",
    "shuffle": True,
}


def run(mind_dataset, tmp_path, stop_at_epoch=None, **values):
    """RecBole's run_recbole steps with EmbSum; returns (trainer, test result). ``stop_at_epoch``: the run is killed
    when that epoch starts (after the previous epoch's checkpoint is written)."""
    data_path, name = mind_dataset
    config = Config(model="EmbSum", dataset=name, config_file_list=[MIND_YAML], config_dict={
        **RESUME_TINY, "data_path": data_path, "checkpoint_dir": str(tmp_path / "saved"), **values})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("EmbSum")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "EmbSum")(config, model)
    if stop_at_epoch is not None:
        train_epoch = trainer._train_epoch

        def killed(train_data, epoch_idx, *args, **kwargs):
            if epoch_idx == stop_at_epoch:
                raise KeyboardInterrupt
            return train_epoch(train_data, epoch_idx, *args, **kwargs)

        trainer._train_epoch = killed
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(train, valid, saved=True)
        return trainer, None
    trainer.fit(train, valid, saved=True)
    final = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    return trainer, final, trainer.evaluate(test, load_best_model=True)


@pytest.mark.slow
def test_two_epochs_straight_equal_one_then_resume_one(mind_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    straight, straight_params, straight_result = run(mind_dataset, tmp_path / "straight")
    killed, _ = run(mind_dataset, tmp_path / "killed", stop_at_epoch=1)
    saved = checkpoint.load(killed.saved_model_file)
    assert saved["epoch"] == 0
    assert {"python", "numpy", "torch", "train_loader", "history_store"} <= set(saved["rng"][0])

    for copy in ("resume.pth", "resume-without-rng.pth"):  # a resumed run writes its later checkpoints there
        shutil.copy(killed.saved_model_file, tmp_path / copy)
    resumed, resumed_params, resumed_result = run(mind_dataset, tmp_path / "killed", resume=str(tmp_path / "resume.pth"))
    assert resumed.start_epoch == 1 and resumed.global_step == straight.global_step
    for name, value in straight_params.items():
        torch.testing.assert_close(resumed_params[name], value, rtol=1e-6, atol=1e-7)
    assert resumed_result == straight_result
    assert resumed.best_valid_score == straight.best_valid_score

    # Without the random states the resumed epoch repeats the first epoch's order, negatives and dropout.
    monkeypatch.setattr(checkpoint, "restore_rng_of_this_rank", lambda *args, **kwargs: None)
    _, forgetful_params, _ = run(mind_dataset, tmp_path / "killed", resume=str(tmp_path / "resume-without-rng.pth"))
    assert any(not torch.allclose(forgetful_params[name], value) for name, value in straight_params.items())
