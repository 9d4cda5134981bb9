"""Config values that cannot work stop at once with one line naming the option (validation.py)."""
import pytest
from recbole.config import Config

import recbole_embsum  # noqa: F401  (registers EmbSum and the checks)
from recbole_embsum import quick_start
from recbole_embsum.validation import ConfigError, check_config

from conftest import MIND_YAML, TINY_EMBSUM


def embsum_config(mind_dataset, **values):
    data_path, name = mind_dataset
    return Config(model="EmbSum", dataset=name, config_file_list=[MIND_YAML],
                  config_dict={"data_path": data_path, **TINY_EMBSUM, **values})


@pytest.mark.parametrize("key, value", [
    ("epochs", 0), ("epochs", -1), ("train_batch_size", 0), ("MAX_ITEM_LIST_LENGTH", 0), ("upe_codes", 0),
    ("cpe_codes", 0), ("eval_batch_size", -5), ("epochs", 2.5), ("train_batch_size", "eight"),
])
def test_counts_below_one_or_not_integers_are_refused_naming_the_option(mind_dataset, key, value):
    with pytest.raises(ConfigError) as error:
        embsum_config(mind_dataset, **{key: value})
    message = str(error.value)
    assert message.startswith(f"{key} must be an integer >= 1, got {value!r}") and f"--{key}=N" in message
    assert "\n" not in message


def test_valid_values_pass_and_a_plain_dict_is_checked_the_same_way(mind_dataset):
    config = embsum_config(mind_dataset, epochs=1, train_batch_size=1, upe_codes=1)
    assert config["epochs"] == 1
    check_config({"dataset": "mind", "epochs": 3, "upe_codes": None})  # None: the option is not used
    with pytest.raises(ConfigError, match="upe_codes"):
        check_config({"dataset": "mind", "upe_codes": 0})


def test_grad_accum_steps_takes_auto_or_a_count():
    check_config({"grad_accum_steps": "auto", "effective_batch_size": 128})
    check_config({"grad_accum_steps": 4})
    with pytest.raises(ConfigError, match=r"grad_accum_steps must be an integer >= 1 or auto, got 'sometimes'"):
        check_config({"grad_accum_steps": "sometimes"})
    with pytest.raises(ConfigError, match=r"effective_batch_size must be an integer >= 1, got 0"):
        check_config({"grad_accum_steps": "auto", "effective_batch_size": 0})


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ""])
def test_dataset_names_that_leave_data_path_are_refused(mind_dataset, name):
    data_path, _ = mind_dataset
    with pytest.raises(ConfigError, match="--dataset: .* is not a plain folder name"):
        Config(model="BPR", dataset=name, config_dict={"data_path": data_path})


def test_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"--config_files: {missing} does not exist"):
        Config(model="BPR", dataset="mind", config_file_list=[str(missing)])


def test_run_recbole_prints_one_line_and_trains_nothing(mind_dataset, tmp_path, capsys, monkeypatch):
    data_path, name = mind_dataset
    monkeypatch.chdir(tmp_path)
    argv = ["--model=BPR", f"--dataset={name}", f"--data_path={data_path}", "--epochs=0"]
    monkeypatch.setattr("sys.argv", ["run_recbole", *argv])  # RecBole's Config reads --key=value from sys.argv
    assert quick_start.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("run_recbole: error: epochs must be an integer >= 1, got 0 (the model would be tested")
    assert "\n" not in err and not (tmp_path / "saved").exists()

    argv = ["--model=BPR", "--dataset=../mind", f"--config_files={tmp_path}/missing.yaml"]
    monkeypatch.setattr("sys.argv", ["run_recbole", *argv])
    assert quick_start.main(argv) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("token, expected", [
    ("--data-path=/x", "use --data_path=/x instead of --data-path=/x"),  # the recbole-embsum commands' spelling
    ("--config-files=cpu-small", "use --config_files=cpu-small instead of --config-files=cpu-small"),
    ("--train-batch-size=8", "use --train_batch_size=8 instead of --train-batch-size=8"),  # a RecBole key
    ("--upe-codes=4", "use --upe_codes=4 instead of --upe-codes=4"),  # one of EmbSum's keys
    ("--data-path", "use --data_path=... instead of --data-path=..."),  # `--data-path /x`: RecBole reads neither
])
def test_run_recbole_refuses_a_dashed_config_key_before_loading_anything(token, expected, capsys, monkeypatch):
    argv = ["--model=EmbSum", "--dataset=mind", token]
    monkeypatch.setattr("sys.argv", ["run_recbole", *argv])
    monkeypatch.setattr(quick_start, "run", lambda *args, **kwargs: pytest.fail("the run started"))
    assert quick_start.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"run_recbole: error: run_recbole takes RecBole's --key=value spelling: {expected}\n"


def test_run_recbole_passes_dashes_in_values_and_in_keys_nobody_defines(capsys, monkeypatch):
    argv = ["--model=BPR", "--dataset=ml-100k", "--config_files=cpu-small", "--train_batch_size=8", "--my-note=a-b"]
    monkeypatch.setattr("sys.argv", ["run_recbole", *argv])
    started = []
    monkeypatch.setattr(quick_start, "run", lambda *args, **kwargs: started.append(args))
    assert quick_start.main(argv) == 0
    assert started == [("BPR", "ml-100k")] and capsys.readouterr().err == ""
