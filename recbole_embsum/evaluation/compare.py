"""Train and test several models on the same converted dataset and tabulate them side by side (paper Tables 1-2).

Every model reads the same benchmark files (``<dataset>.{train,valid,test}.inter``), so all are tested on the same
candidate rows, with the same seed and the same metrics. Each run follows ``recbole.quick_start.run_recbole`` step
for step (Config with our packaged yaml, seeded data preparation, model, trainer with ImpressionCollector, fit on
valid, test with the best checkpoint) and adds what a comparison needs: parameter counts and train/test wall times.
It skips run_recbole's ``get_flops``, which deep-copies the model (a T5 for EmbSum) only to log a number.
A model that fails is reported with its error in the table; the others still run.
"""
import csv
import gc
import io
import logging
import math
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (registers EmbSum, the imp_* metrics, ImpressionCollector and packaged yaml)

logger = logging.getLogger(__name__)

DEFAULT_SEED = 2020
# The paper's Table 2: EmbSum and its ablations, as (row label, config switches).
ABLATIONS = (
    ("EmbSum", {}),
    ("EmbSum wo CPE", {"use_cpe": False}),
    ("EmbSum wo grouping", {"session_grouping": False}),
    ("EmbSum wo UPE", {"upe_codes": 1}),
    ("EmbSum wo L_sum", {"use_summary_loss": False}),
)
RESULT_FILES = ("results.csv", "results.md", "results.png")


@dataclass
class RunSpec:
    """One row of the comparison: a label, the RecBole model name and its extra config."""

    label: str
    model: str
    config: dict = field(default_factory=dict)


@dataclass
class RunResult:
    spec: RunSpec
    status: str = "ok"
    test_result: dict = field(default_factory=dict)
    best_valid_score: float = math.nan
    parameters: int = None  # None: the model was never built
    trainable_parameters: int = None
    train_seconds: float = math.nan
    test_seconds: float = math.nan
    error: str = ""


def model_specs(models, ablations=False):
    """RunSpecs for ``models`` (names) followed, with ``ablations``, by EmbSum's Table 2 rows."""
    specs = [RunSpec(name, name) for name in models]
    if ablations:
        specs += [RunSpec(label, "EmbSum", dict(switches)) for label, switches in ABLATIONS]
    labels = [spec.label for spec in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"models listed twice: {', '.join(duplicates)}")
    if not specs:
        raise ValueError("no models to compare: give --models and/or --ablations")
    return specs


def train_and_test(spec, dataset, config_file_list, config_dict, saved=True):
    """Train ``spec`` on ``dataset`` and test its best-validation checkpoint; returns a RunResult (never raises)."""
    result = RunResult(spec)
    try:
        config = Config(
            model=spec.model, dataset=dataset, config_file_list=config_file_list,
            config_dict={**config_dict, **spec.config},
        )
        init_seed(config["seed"], config["reproducibility"])
        data = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, data)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        result.parameters = sum(p.numel() for p in model.parameters())
        result.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

        started = time.perf_counter()
        result.best_valid_score, _ = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
        result.train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result.test_result = dict(
            trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        )
        result.test_seconds = time.perf_counter() - started
    except Exception as error:  # a failed model is a row of the table, not the end of the comparison
        logger.error("%s failed:\n%s", spec.label, traceback.format_exc())
        result.status = "failed"
        result.error = f"{type(error).__name__}: {error}".replace("\n", " ")
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return result


def compare(specs, dataset, data_path, output, config_file_list=None, overrides=None, seed=DEFAULT_SEED,
            overwrite=False):
    """Run every spec on the same splits and write ``results.csv``, ``results.md`` and ``results.png`` in ``output``.

    Returns the list of RunResult. Refuses to replace existing result files unless ``overwrite``.
    """
    os.makedirs(output, exist_ok=True)
    existing = [name for name in RESULT_FILES if os.path.exists(os.path.join(output, name))]
    if existing and not overwrite:
        raise FileExistsError(f"{output} already holds {', '.join(existing)}; pass --overwrite or another --output")
    config_dict = {
        "data_path": data_path,
        "checkpoint_dir": os.path.join(output, "checkpoints"),
        **(overrides or {}),
        "seed": seed,
        "reproducibility": True,
    }
    results = []
    for spec in specs:
        logger.info("=== %s (%s) ===", spec.label, spec.model)
        results.append(train_and_test(spec, dataset, config_file_list, config_dict))
    columns = metric_columns(results)
    header = f"dataset {dataset}, seed {seed}, test split of {data_path}"
    _write_atomic(os.path.join(output, "results.csv"), results_csv(results, columns, seed))
    _write_atomic(os.path.join(output, "results.md"), f"# Comparison: {header}\n\n" + results_markdown(results, columns))
    plot_results(results, columns, os.path.join(output, "results.png"), title=header)
    return results


def metric_columns(results):
    """Test metric names in first-seen order over all successful runs."""
    columns = []
    for result in results:
        columns += [name for name in result.test_result if name not in columns]
    return columns


def _rows(results, columns, fmt):
    for result in results:
        yield [
            result.spec.label,
            result.status,
            *(fmt(result.test_result.get(name, math.nan)) for name in columns),
            result.parameters,
            result.trainable_parameters,
            fmt(result.train_seconds),
            fmt(result.test_seconds),
            result.error,
        ]


TAIL_COLUMNS = ["parameters", "trainable_parameters", "train_s", "test_s", "error"]


def results_csv(results, columns, seed):
    """CSV text: one row per run with every metric, sizes, times, error, and the seed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "status", *columns, *TAIL_COLUMNS, "seed"])
    for row in _rows(results, columns, lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v):
        writer.writerow(row + [seed])
    return buffer.getvalue()


def _md_cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def results_markdown(results, columns):
    """A Markdown table, one row per run (train_s includes validation epochs; test_s includes checkpoint loading)."""
    head = ["model", "status", *columns, *TAIL_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in _rows(results, columns, lambda v: v):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_results(results, columns, path, title=""):
    """Grouped bar chart (one group per metric, one bar per successful run) written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.status == "ok"]
    metrics = [name for name in columns if name != "logloss"]  # lower-is-better and unbounded: not on this axis
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 2), 4.5))
    width = 0.8 / max(1, len(shown))
    for i, result in enumerate(shown):
        positions = [m + (i - (len(shown) - 1) / 2) * width for m in range(len(metrics))]
        axes.bar(positions, [result.test_result.get(name, math.nan) for name in metrics], width, label=result.spec.label)
    axes.set_xticks(range(len(metrics)), metrics)
    axes.set_ylabel("test score")
    axes.set_title(title, fontsize=9)
    failed = [r.spec.label for r in results if r.status != "ok"]
    if failed:
        figure.text(0.01, 0.01, "failed: " + ", ".join(failed), fontsize=8, color="red")
    if shown:
        axes.legend(fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".png", delete=False) as handle:
        figure.savefig(handle, format="png", dpi=120)
    plt.close(figure)
    os.replace(handle.name, path)


def _write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, encoding="utf-8", delete=False, newline="") as handle:
        handle.write(text)
    os.replace(handle.name, path)
