"""`recbole-embsum demo --quick`: the whole offline path end to end, and its refusal to overwrite a finished demo."""
import csv
import json
import os
import subprocess
import sys

import pytest

from recbole_embsum.cli import main
from recbole_embsum.demo import BASELINES


@pytest.mark.slow
def test_quick_demo_runs_every_step_and_tabulates_every_model(tmp_path, capsys):
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output), "--quick"]) == 0
    printed = capsys.readouterr().out

    with open(output / "comparison" / "results.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["EmbSum", *BASELINES]
    assert all(row["status"] == "ok" and not row["error"] for row in rows), rows
    assert all(0.0 <= float(row["imp_auc"]) <= 1.0 for row in rows)
    assert (output / "comparison" / "results.png").stat().st_size > 0
    assert list((output / "comparison" / "checkpoints").glob("EmbSum-*.pth"))

    # the summaries of unseen users come with their ROUGE, and the printout says where everything went
    rouge = json.loads((output / "summaries" / "rouge.json").read_text(encoding="utf-8"))
    assert rouge["users"] == len((output / "summaries" / "summaries.jsonl").read_text().splitlines()) > 0
    # generated summaries are shown as explanations only when they differ between users; otherwise the demo says so
    assert ("EmbSum:    " in printed) != ("summaries are not meaningful yet" in printed)
    for expected in ("| EmbSum | ok |", "| Pop | ok |", "| ROUGE-L |",
                     str(output / "comparison" / "results.md"), "--plm=t5-small", "convert mind --input"):
        assert expected in printed, expected

    # a second run into the same folder is refused and leaves the results alone
    before = (output / "comparison" / "results.csv").read_bytes()
    assert main(["demo", "--output", str(output), "--quick"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "comparison" / "results.csv").read_bytes() == before


@pytest.mark.slow  # the quick demo again, in a fresh interpreter
def test_quick_demo_prints_no_warning_even_with_warnings_as_errors(tmp_path):
    # -W error turns every Python warning (import time included) into a failure; RecBole's own log must not
    # complain about our command-line flags either.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-W", "error", "-m", "recbole_embsum_cli", "demo", "--quick",
                             "--output", str(tmp_path / "demo")], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    for complaint in ("Warning", "will not be used in RecBole", "Exception ignored", "Traceback"):
        assert complaint not in output, complaint
