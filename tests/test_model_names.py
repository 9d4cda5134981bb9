"""A misspelled model name stops `run_recbole` and `compare` before any data is loaded, with close matches."""
import pytest

from recbole_embsum import quick_start
from recbole_embsum.cli import main


def test_run_recbole_stops_on_a_misspelled_model_before_loading_data(tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(quick_start, "run", must_not_run)
    assert quick_start.main(["--model=SASRek", "--dataset=mind", f"--data_path={tmp_path}/none"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("run_recbole: error: Unknown model 'SASRek': did you mean SASRec, SASRecF or SASRecCPR? "
                     "(model names are case-sensitive)")


def test_compare_stops_on_a_misspelled_model_before_training(tmp_path, capsys, monkeypatch):
    from recbole_embsum.evaluation import compare

    def must_not_train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(compare, "train_and_test", must_not_train)
    argv = ["compare", "--dataset", "mind", "--data-path", str(tmp_path), "--models", "Pop,EmbSumm",
            "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "Unknown model 'EmbSumm': did you mean EmbSum?" in error and error.count("\n") == 1
    assert not (tmp_path / "out" / "results.md").exists()
