"""`recbole-embsum demo --quick`: the whole offline path end to end, and its refusal to overwrite a finished demo."""
import csv
import json
import os
import subprocess
import sys

import pytest

from recbole_embsum.cli import main
from recbole_embsum.demo import BASELINES, describe_embsum, embsum_settings, preset_values


@pytest.mark.slow  # the quick demo, end to end, in a fresh interpreter as a user runs it
def test_quick_demo_runs_every_step_tabulates_every_model_and_prints_no_warning(tmp_path, capsys):
    # -W error turns every Python warning (import time included) into a failure; RecBole's own log must not
    # complain about our command-line flags either.
    output = tmp_path / "demo"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-W", "error", "-m", "recbole_embsum_cli", "demo", "--quick",
                             "--output", str(output)], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    for complaint in ("Warning", "will not be used in RecBole", "Exception ignored", "Traceback"):
        assert complaint not in result.stdout + result.stderr, complaint
    # the preflight's memory estimate of the shared data is logged once, not once per model
    assert result.stderr.count("loaded data ~") == 1, result.stderr.count("loaded data ~")
    printed = result.stdout

    with open(output / "comparison" / "results.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["EmbSum", *BASELINES]
    assert all(row["status"] == "ok" and not row["error"] for row in rows), rows
    assert all(0.0 <= float(row["imp_auc"]) <= 1.0 for row in rows)
    assert (output / "comparison" / "results.png").stat().st_size > 0
    assert list((output / "comparison" / "checkpoints").glob("EmbSum-*.pth"))

    # the summaries of unseen users come with their ROUGE (as is and without the shared prefix), and the printout
    # says how EmbSum ran (the preset by name) and where everything went
    rouge = json.loads((output / "summaries" / "rouge.json").read_text(encoding="utf-8"))
    assert rouge["users"] == len((output / "summaries" / "summaries.jsonl").read_text().splitlines()) > 0
    # generated summaries are shown as explanations only when they differ between users; otherwise the demo says so
    assert ("EmbSum:    " in printed) != ("summaries are not meaningful yet" in printed)
    assert describe_embsum(quick=True) in printed and "cpu-small preset" in printed
    for expected in ("| EmbSum | ok |", "| Pop | ok |", "| ROUGE-L |", "without the words every reference starts with",
                     str(output / "comparison" / "results.md"), "--config-files paper", "convert mind --input"):
        assert expected in printed, expected

    # a second run into the same folder is refused and leaves the results alone
    before = (output / "comparison" / "results.csv").read_bytes()
    assert main(["demo", "--output", str(output), "--quick"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "comparison" / "results.csv").read_bytes() == before


@pytest.mark.slow  # the full demo (about 8 minutes on 2 cores): what a newcomer sees first
@pytest.mark.timeout(1800)  # above pytest.ini's 900 s: a slower or busier CI machine must not fail it
def test_full_demo_embsum_leads_the_table_and_writes_user_specific_summaries_of_unseen_users(tmp_path, capsys,
                                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainers write log_tensorboard/ in the working directory
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    with open(output / "comparison" / "results.csv", encoding="utf-8", newline="") as handle:
        auc = {row["model"]: float(row["imp_auc"]) for row in csv.DictReader(handle)}
    assert max(auc, key=auc.get) == "EmbSum" and auc["EmbSum"] > max(auc[name] for name in BASELINES) + 0.1, auc
    # the decoder learned to name each unseen user's interests: the summaries are shown, as explanations
    assert "summaries are not meaningful yet" not in printed
    assert printed.count("  EmbSum:    This user mostly engages with news articles about ") == 3, printed[-3000:]


def test_the_demo_trains_embsum_with_the_cpu_small_preset_by_name():
    from recbole_embsum import presets

    for quick in (False, True):
        settings = embsum_settings(quick)
        assert settings["embsum_preset"] == "cpu-small"
        # the demo's own changes are few and none copies a value the preset already has
        preset = preset_values()
        assert not {key for key in settings if key != "embsum_preset" and settings[key] == preset.get(key)}
    assert set(embsum_settings()) == {"embsum_preset", "epochs", "summary_weight", "lr_scheduler"}
    assert presets.preset_path("cpu-small").endswith("cpu-small.yaml")
