"""Every script in benchmarks/ runs at its smallest size (``--quick``), exits 0 and prints its numbers, so a benchmark
cannot silently rot. The numbers of a quick run mean nothing; only that they are printed is checked."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

BENCHMARKS = os.path.join(REPO_ROOT, "benchmarks")
# The line each benchmark prints its result on (a number must follow on that line).
RESULT_LINES = {
    "bench_convert.py": r"convert: [\d.]+ s, \d+ rows written \([\d,]+ rows/s",
    "bench_load.py": r"from the smallest to the largest size: rows x[\d.]+, time x[\d.]+, peak memory x[\d.]+",
    "bench_metrics.py": r"metrics vs torchmetrics per-impression loop .*: \d+x faster",
    "bench_models.py": r"EmbSum\s+[\d,]+\s+[\d.]+\s+[\d.]+\s+[\d.]+",
    "bench_paper_memory.py": r"activations saved for backward: [\d.]+",
    "bench_scoring.py": r"ratio grid / best matmul \(matmul, [^)]+\): [\d.]+ of the medians",
    "bench_summaries.py": r"openai: concurrency 32, 2 server\(s\).* = [\d.]+ users/s",
    "bench_train_step.py": r"ratio EmbSum / bare T5: [\d.]+",
}


def test_every_benchmark_script_is_covered():
    scripts = sorted(name for name in os.listdir(BENCHMARKS) if name.startswith("bench_") and name.endswith(".py"))
    assert scripts == sorted(RESULT_LINES)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RESULT_LINES))
def test_benchmark_runs_quick_and_prints_its_numbers(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=800)
    assert run.returncode == 0, f"{script} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert re.search(RESULT_LINES[script], run.stdout), f"{script} printed no result line:\n{run.stdout[-3000:]}"
