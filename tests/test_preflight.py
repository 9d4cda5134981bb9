"""The preflight of `run_recbole` / `compare`: a run that cannot start stops before any data is loaded, in one line
that says what to do (missing data folder or converted dataset, item text, summaries, backbone); the memory estimate
warns with the knobs to turn; presets are named, not copied."""
import logging
import os
import shutil
import subprocess
import sys

import pytest
from huggingface_hub import constants

from conftest import MIND_YAML, TINY_EMBSUM

from recbole_embsum import memory, preflight, presets
from recbole_embsum.validation import ConfigError

BIN = os.path.dirname(sys.executable)


def check(data_path, dataset="mind", **values):
    return preflight.check("EmbSum", dataset, [MIND_YAML], {"data_path": str(data_path), **TINY_EMBSUM, **values})


@pytest.fixture()
def data_root(tmp_path, mind_dataset):
    shutil.copytree(os.path.join(mind_dataset[0], "mind"), tmp_path / "mind")
    return tmp_path


def test_a_converted_dataset_passes_and_returns_the_config(data_root):
    config = check(data_root)
    assert config["plm_init"] == "scratch"


def test_a_dataset_name_without_a_converted_folder_lists_what_is_there_and_how_to_convert(data_root):
    with pytest.raises(preflight.PreflightError) as error:
        check(data_root, dataset="MIND")
    message = str(error.value)
    assert f"no converted dataset 'MIND' under {data_root}/" in message
    assert "found: mind" in message
    assert "recbole-embsum convert mind" in message and "--name MIND" in message
    assert "\n" not in message


def test_a_missing_data_path_says_so(tmp_path):
    with pytest.raises(preflight.PreflightError, match=r"data_path '.*nowhere' does not exist; use the --output folder of"):
        check(tmp_path / "nowhere")


def test_a_folder_without_item_text_is_not_an_embsum_dataset(data_root):
    os.remove(data_root / "mind" / "mind.text.jsonl")
    with pytest.raises(preflight.PreflightError, match=r"mind\.text\.jsonl, which does not exist; convert"):
        check(data_root)


def test_a_configured_summary_file_that_is_missing_says_how_to_write_it(data_root):
    missing = str(data_root / "mind" / "llm.jsonl")
    with pytest.raises(preflight.PreflightError) as error:
        check(data_root, summary_path=missing)
    assert f"summary_path {missing!r} does not exist" in str(error.value)
    assert "recbole-embsum summarize --dataset mind" in str(error.value)


def _save_tiny_t5(folder):
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=8, d_ff=16, d_kv=4, num_heads=2, num_layers=1)) \
        .save_pretrained(folder)


def test_backbone_resolves_from_a_local_folder_or_the_cache_and_otherwise_says_what_to_do(tmp_path, monkeypatch):
    local = tmp_path / "my-t5"
    _save_tiny_t5(local)
    assert preflight.resolve_backbone(str(local)) == "local"

    cache = tmp_path / "hub"  # the Hugging Face cache layout: models--<name>/refs/main -> snapshots/<rev>/
    snapshot = cache / "models--t5-small" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    shutil.copy(local / "config.json", snapshot / "config.json")
    (cache / "models--t5-small" / "refs").mkdir()
    (cache / "models--t5-small" / "refs" / "main").write_text("abc123")
    assert preflight.resolve_backbone("t5-small", cache_dir=str(cache)) == "cache"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(preflight.PreflightError) as error:
        preflight.resolve_backbone("t5-small", cache_dir=str(tmp_path / "empty"))
    assert "plm=/path/to/t5-small" in str(error.value) and "plm_init=scratch" in str(error.value)
    # scratch at the packaged t5-small sizes does not fit a CPU machine: the line names the small packaged preset
    assert "on a CPU: --config_files=cpu-small" in str(error.value) and "\n" not in str(error.value)

    (local / "config.json").unlink()
    with pytest.raises(preflight.PreflightError, match="has no config.json"):
        preflight.resolve_backbone(str(local))
    with pytest.raises(preflight.PreflightError, match="no such folder"):
        preflight.resolve_backbone(str(tmp_path / "not-there"))


@pytest.mark.slow  # a fresh interpreter imports RecBole, torch and transformers
def test_run_recbole_without_the_backbone_stops_in_one_line_before_loading_data(data_root):
    # The headline command of a fresh offline machine: t5-small is not cached and the hub is off.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(data_root / "hf-home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([f"{BIN}/run_recbole", "--model=EmbSum", "--dataset=mind", f"--data_path={data_root}",
                             "--plm=t5-small", "--plm_init=pretrained"], cwd=data_root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("run_recbole: error:")]
    assert len(errors) == 1 and "plm=/path/to/t5-small" in errors[0] and "plm_init=scratch" in errors[0]
    assert "--config_files=cpu-small" in errors[0]
    assert not (data_root / "log").exists()  # RecBole's logger (started with data loading) never ran


def test_the_memory_estimate_warns_with_the_knobs_when_a_step_exceeds_the_machine(data_root, monkeypatch, caplog):
    config = check(data_root)
    monkeypatch.setattr(memory, "machine_memory", lambda config: (1024 ** 2, "RAM"))
    with caplog.at_level(logging.WARNING, logger=preflight.__name__):
        preflight.check_memory(config)
    (warning,) = [record.getMessage() for record in caplog.records
                  if record.levelno == logging.WARNING and record.name == preflight.__name__]
    for knob in ("train_batch_size", "grad_accum_steps", "gradient_checkpointing"):
        assert knob in warning
    caplog.clear()
    monkeypatch.setattr(memory, "machine_memory", lambda config: (1024 ** 4, "RAM"))
    with caplog.at_level(logging.WARNING, logger=preflight.__name__):
        preflight.check_memory(config)
    assert not [record for record in caplog.records
                if record.levelno == logging.WARNING and record.name == preflight.__name__]


def test_the_estimate_grows_with_the_batch_and_shrinks_with_checkpointing_and_bf16():
    sizes = memory.T5Sizes(d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6, num_decoder_layers=6,
                           vocab_size=32128)
    assert 60e6 < sizes.parameters() < 61e6  # t5-small: 60.5M
    paper = memory.StepShapes(users=128, sessions=15, session_tokens=512, candidates=5, item_tokens=128,
                              summary_tokens=128)
    micro = memory.StepShapes(**{**paper.__dict__, "users": 16})
    full = paper.activation_bytes(sizes)
    assert full > 8 * micro.activation_bytes(sizes) * 0.99
    assert micro.activation_bytes(sizes, dtype_bytes=2) < micro.activation_bytes(sizes) / 1.9
    assert micro.activation_bytes(sizes, checkpointing=True) < micro.activation_bytes(sizes) / 4
    # The paper preset's micro-batch fits an 80 GB GPU by this estimate; the paper's whole batch does not.
    assert micro.activation_bytes(sizes, dtype_bytes=2) + sizes.parameters() * 16 < 60 * memory.GIB
    assert full / 2 > 80 * memory.GIB


def test_the_estimate_matches_the_activations_the_benchmark_measures():
    import importlib.util

    import torch

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("bench_paper_memory",
                                                  os.path.join(root, "benchmarks", "bench_paper_memory.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shapes = memory.StepShapes(**bench.QUICK)
    torch.manual_seed(0)
    model = bench.build_model(bench.TINY, torch.device("cpu"), checkpointing=False)
    saved = bench.SavedBytes(model)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        bench.step(model, shapes, torch.device("cpu"))
    estimated = shapes.activation_bytes(bench.TINY)
    assert 0.75 < estimated / saved.total < 1.33, (estimated, saved.total)


def test_presets_by_file_name_or_key_sit_below_every_user_value(data_root):
    from recbole.config import Config

    by_name = Config(model="EmbSum", dataset="mind", config_file_list=["cpu-small"],
                     config_dict={"data_path": str(data_root)})
    assert by_name["plm_init"] == "scratch" and by_name["plm_config"]["t5"]["d_model"] == 64
    assert by_name["item_template"].startswith("News Title")  # the packaged dataset yaml still applies
    by_key = Config(model="EmbSum", dataset="mind",
                    config_dict={"data_path": str(data_root), "embsum_preset": "cpu-small", "epochs": 1})
    assert by_key["plm_init"] == "scratch" and by_key["epochs"] == 1  # the user's value wins over the preset's 3
    assert presets.available() == ["cpu-small", "paper"]
    with pytest.raises(ValueError, match="no preset named 'cpu-smal'; presets: cpu-small, paper"):
        Config(model="EmbSum", dataset="mind", config_dict={"data_path": str(data_root), "embsum_preset": "cpu-smal"})
    with pytest.raises(ConfigError, match="cpu-smal does not exist; give existing yaml files or preset names"):
        Config(model="EmbSum", dataset="mind", config_file_list=["cpu-smal"], config_dict={"data_path": "x"})


def test_gradient_checkpointing_keeps_loss_and_gradients_and_saves_activations(tmp_path):
    import torch

    from recbole_embsum.text.backbone import load_backbone

    corpus = ["the user reads about sports and politics", "news about the weather today"] * 20
    runs = {}
    for checkpointing in (False, True):
        config = {"plm_init": "scratch", "data_path": str(tmp_path), "dataset": "d", "tokenizer_vocab_size": 60,
                  "plm_config": {"d_model": 16, "d_ff": 32, "num_layers": 2, "num_decoder_layers": 2,
                                 "num_heads": 2, "d_kv": 8, "dropout_rate": 0.0},
                  "gradient_checkpointing": checkpointing}
        torch.manual_seed(0)
        t5, tokenizer = load_backbone(config, lambda: corpus)
        t5.train()
        assert any(getattr(module, "gradient_checkpointing", False) for module in t5.modules()) == checkpointing
        batch = tokenizer(corpus[:4], return_tensors="pt", padding=True)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = t5(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        runs[checkpointing] = (loss.item(), t5.shared.weight.grad.clone(), sum(saved))
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-6)
    torch.testing.assert_close(runs[True][1], runs[False][1], rtol=1e-5, atol=1e-7)
    assert runs[True][2] < runs[False][2]


@pytest.mark.slow  # trains EmbSum end to end through the console script
def test_headline_command_trains_embsum_offline_with_the_cpu_small_preset(data_root):
    # A fresh machine without internet: no Hugging Face cache, the hub off; the preset needs neither.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(data_root / "hf-home"), "OMP_NUM_THREADS": "1"}
    # Run through a wrapper that prints the run's peak RSS (ru_maxrss of its waited-for child, in KiB).
    wrapper = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
               "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", wrapper, f"{BIN}/run_recbole", "--model=EmbSum", "--dataset=mind",
                             f"--data_path={data_root}", "--config_files=cpu-small", "--epochs=1",
                             "--eval_batch_size=256", f"--checkpoint_dir={data_root / 'saved'}",
                             "--show_progress=False"],
                            cwd=data_root, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    peak_gib = int(output.split("PEAK_RSS_KIB")[1].split()[0]) / 2**20
    assert peak_gib < 8, f"the cpu-small preset's run peaked at {peak_gib:.2f} GiB RSS (the preset promises 8 GiB)"
    assert "test result" in output and "imp_auc" in output
    assert "d_model" in output and "'d_model': 64" in output  # the preset's T5, not t5-small
    assert list((data_root / "saved").glob("EmbSum-*.pth"))
