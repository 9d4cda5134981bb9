"""End to end through the entry points a user types: `run_recbole`, `python -m recbole_embsum`, `recbole-embsum`."""
import os
import subprocess
import sys

import pytest

from conftest import TINY_EMBSUM

import recbole_embsum
from recbole_embsum.cli import COMMAND_MODULES, build_parser

BIN = os.path.dirname(sys.executable)

TINY = {
    **TINY_EMBSUM,
    "train_batch_size": 16,
    "eval_batch_size": 512,
    "summary_max_tokens": 16,
    "eval_global_vector": "start",  # the [EOS]-of-a-greedy-summary default decodes per history: slow for a test
}
# The same as command-line options (RecBole's Config evaluates each value).
TINY_ARGS = [f"--{key}={value!r}" if isinstance(value, dict) else f"--{key}={value}"
             for key, value in TINY.items()]


def _run(command, tmp_path, *extra):
    result = subprocess.run(
        [*command, *extra, f"--checkpoint_dir={tmp_path}/saved", "--show_progress=False"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_baseline_trains_and_reloads_its_best_checkpoint_through_run_recbole(mind_dataset, tmp_path):
    data_path, name = mind_dataset
    output = _run([f"{BIN}/run_recbole", "--model=BPR", f"--dataset={name}"], tmp_path,
                  f"--data_path={data_path}", "--epochs=1")
    # The best checkpoint is written, then re-loaded for the test evaluation (torch >= 2.6 weights_only workaround).
    (checkpoint,) = (tmp_path / "saved").glob("BPR-*.pth")
    assert f"Loading model structure and parameters from {checkpoint}" in output
    assert "test result" in output and "imp_auc" in output


@pytest.mark.slow
def test_sequential_baseline_runs_through_python_dash_m(mind_dataset, tmp_path):
    data_path, name = mind_dataset
    output = _run([sys.executable, "-m", "recbole_embsum", "--model=SASRec", f"--dataset={name}"], tmp_path,
                  f"--data_path={data_path}", "--epochs=1", "--n_layers=1", "--hidden_size=16", "--inner_size=16",
                  "--drop_empty_history=True")
    assert "test result" in output and "imp_ndcg@10" in output


@pytest.mark.slow
def test_embsum_trains_validates_and_tests_through_run_recbole(mind_dataset, tmp_path):
    data_path, name = mind_dataset
    output = _run([f"{BIN}/run_recbole", "--model=EmbSum", f"--dataset={name}"], tmp_path,
                  f"--data_path={data_path}", "--epochs=1", *TINY_ARGS)
    assert "EmbSumTrainer" in output or "EmbSum(" in output
    assert "best valid" in output and "test result" in output and "imp_auc" in output
    assert list((tmp_path / "saved").glob("EmbSum-*.pth"))


@pytest.mark.slow
def test_recbole_own_run_recbole_finds_embsum_after_import(mind_dataset, tmp_path):
    import recbole.quick_start

    data_path, name = mind_dataset
    config = {**TINY, "data_path": data_path, "epochs": 1, "checkpoint_dir": str(tmp_path)}
    result = recbole.quick_start.run_recbole(model="EmbSum", dataset=name, config_dict=config, saved=False)
    assert 0.0 <= result["test_result"]["imp_auc"] <= 1.0
    assert recbole_embsum.run_recbole is recbole.quick_start.run_recbole


@pytest.mark.slow  # a fresh interpreter imports RecBole, torch and transformers
def test_unknown_model_on_the_command_line_stops_with_one_line_and_close_names(tmp_path):
    result = subprocess.run([f"{BIN}/run_recbole", "--model=EmbSun", "--dataset=mind"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "run_recbole: error: Unknown model 'EmbSun': did you mean EmbSum? (model names are case-sensitive)")
    assert "Traceback" not in result.stderr


def test_recbole_embsum_lists_every_subcommand_with_help():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert len(COMMAND_MODULES) >= 1
    for expected in ("convert", "synth", "summarize", "compare", "export", "recommend"):
        assert expected in subcommands, expected
    for name, subparser in subcommands.items():
        assert subparser.format_help().startswith("usage: recbole-embsum " + name)
    result = subprocess.run([f"{BIN}/recbole-embsum", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "convert" in result.stdout


@pytest.mark.parametrize("flag", ["--nproc", "--world_size", "--ip", "--port", "--group_offset", "--config_files"])
def test_run_recbole_accepts_recbole_script_flags(flag):
    from recbole_embsum.quick_start import build_parser as run_parser

    assert flag in run_parser().format_help()


@pytest.mark.slow
def test_run_recbole_nproc_2_trains_embsum_with_gloo_and_rank_0_writes_one_checkpoint(mind_dataset, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_path, name = mind_dataset
    output = _run([f"{BIN}/run_recbole", "--model=EmbSum", f"--dataset={name}", "--nproc=2", "--ip=127.0.0.1",
                   f"--port={port}"], tmp_path, f"--data_path={data_path}", "--epochs=1", *TINY_ARGS)
    assert output.count("test result") == 1  # only rank 0 logs
    assert len(list((tmp_path / "saved").glob("EmbSum-*.pth"))) == 1
