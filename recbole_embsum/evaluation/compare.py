"""Train and test several models on the same converted dataset and tabulate them side by side (paper Tables 1-2).

Every model reads the same benchmark files (``<dataset>.{train,valid,test}.inter``), so all are tested on the same
candidate rows, with the same seeds and the same metrics. Each run follows ``recbole.quick_start.run_recbole`` step
for step (Config with our packaged yaml, seeded data preparation, model, trainer with ImpressionCollector, fit on
valid, test with the best checkpoint) and adds what a comparison needs: parameter counts, train/test wall times, the
score of every test row (``scores/<model>.npz``) and how sure the table is (``significance.py``: each model against
the best one, impression by impression). It skips run_recbole's ``get_flops``, which deep-copies the model (a T5 for
EmbSum) only to log a number.

Before anything trains, every model's Config is resolved: a misspelled model name, or models that would read
different history lengths (``MAX_ITEM_LIST_LENGTH``) or different rows (``drop_empty_history``), stop the comparison
with one line. A model that fails while training is reported with its error in the table; the others still run.
"""
import csv
import gc
import io
import logging
import math
import os
import re
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import ModelType, get_model, get_trainer, init_seed

import recbole_embsum  # noqa: F401  (registers EmbSum, the imp_* metrics, ImpressionCollector and packaged yaml)
from recbole_embsum.evaluation import significance
from recbole_embsum.evaluation.collector import ImpressionCollector

logger = logging.getLogger(__name__)

DEFAULT_SEED = 2020
# What `compare` runs when no --models are given: EmbSum and RecBole baselines that read the same files.
DEFAULT_MODELS = ("EmbSum", "SASRec", "GRU4Rec", "BPR", "Pop")
# The paper's Table 2: EmbSum and its ablations, as (row label, config switches).
ABLATIONS = (
    ("EmbSum", {}),
    ("EmbSum wo CPE", {"use_cpe": False}),
    ("EmbSum wo grouping", {"session_grouping": False}),
    ("EmbSum wo UPE", {"upe_codes": 1}),
    ("EmbSum wo L_sum", {"use_summary_loss": False}),
)
RESULT_FILES = ("results.csv", "results.md", "results.png")
SCORES_DIR = "scores"
# RecBole's LogLoss reads every score as a click probability: a number only for models whose predict returns one
# (context-aware models trained with BCE); for ranking scores (EmbSum, Pop, BPR, SASRec ...) the cell stays blank.
PROBABILITY_METRICS = ("logloss",)
PROBABILITY_MODEL_TYPES = (ModelType.CONTEXT, ModelType.DECISIONTREE)


@dataclass
class RunSpec:
    """One row of the comparison: a label, the RecBole model name and its extra config. ``config`` wins over every
    other setting (the ablation switches); ``defaults`` sits below the run's ``--key=value`` overrides (per-model
    settings of ``--paper-table``)."""

    label: str
    model: str
    config: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)


@dataclass
class RunResult:
    """One training run (one spec, one seed). ``scores`` holds the test rows: impression_id, item_id (raw tokens),
    label and score arrays, in evaluation order; a metric meaningless for the model is None in test_result."""

    spec: RunSpec
    seed: int = DEFAULT_SEED
    status: str = "ok"
    test_result: dict = field(default_factory=dict)
    best_valid_score: float = math.nan
    parameters: int = None  # None: the model was never built
    trainable_parameters: int = None
    train_seconds: float = math.nan
    test_seconds: float = math.nan
    error: str = ""
    negatives: str = ""
    scores: dict = None

    @property
    def blank_metrics(self):
        """Metrics RecBole computed that mean nothing for this model (None in test_result)."""
        return [name for name, value in self.test_result.items() if value is None]


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


def _config(spec, dataset, config_file_list, config_dict):
    return Config(model=spec.model, dataset=dataset, config_file_list=config_file_list,
                  config_dict={**spec.defaults, **config_dict, **spec.config})


def training_negatives(config):
    """What the model of ``config`` trains on besides the clicks, in words for the table."""
    model_class = config.model_class
    if getattr(model_class, "training_negatives", None) == "impression":
        return f"impression negatives ({config['train_neg_num']} per click, from neg_items)"
    sampling = config["train_neg_sample_args"] or {}
    if sampling.get("distribution", "none") != "none" and sampling.get("sample_num", "none") != "none":
        return f"{sampling['distribution']} sampled ({sampling['sample_num']} per click)"
    if getattr(model_class, "trains_on_negatives", True) is False:
        return "none (counts clicks)"
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and config["loss_type"] == "CE":
        return "none (softmax over all items)"
    return "none (label field)" if config["MODEL_TYPE"] in PROBABILITY_MODEL_TYPES else "none"


def reads_history(config):
    return config["MODEL_TYPE"] == ModelType.SEQUENTIAL


def check_plan(specs, dataset, config_file_list, config_dict):
    """Resolve every spec's Config before anything trains; returns ``{label: training negatives}``.

    Raises ValueError (one line) for an unknown model name, for a run that cannot start (``preflight.check_run``:
    missing data, item text, summaries or backbone), for models that would read different history lengths (a table
    compares models on the same most recent items) and for models that would drop different rows.
    """
    from recbole_embsum import preflight

    negatives, histories, drops = {}, {}, {}
    configs = [_config(spec, dataset, config_file_list, config_dict) for spec in specs]
    for spec, config in zip(specs, configs):
        negatives[spec.label] = training_negatives(config)
        if reads_history(config):
            histories[spec.label] = config["MAX_ITEM_LIST_LENGTH"]
        drops[spec.label] = bool(config["drop_empty_history"])
    for key, values in (("MAX_ITEM_LIST_LENGTH", histories), ("drop_empty_history", drops)):
        if len(set(values.values())) > 1:
            listed = ", ".join(f"{label} {value}" for label, value in values.items())
            raise ValueError(
                f"{key} differs between models ({listed}); every model of a table must read the same "
                f"{'history' if key.startswith('MAX') else 'rows'}: set it once for all, e.g. "
                f"--{key}={min(values.values())}"
            )
    for position, config in enumerate(configs):  # the same data for every model: its estimate is logged once
        preflight.check_run(config, describe_data=position == 0)
    return negatives


class ScoreRecorder(ImpressionCollector):
    """The ImpressionCollector that also keeps every evaluation row's impression, item, label and score."""

    def __init__(self, config):
        super().__init__(config)
        self.fields = {"impression_id": self.impression_field, "item_id": config["ITEM_ID_FIELD"],
                       "label": config["LABEL_FIELD"]}
        self.chunks = {name: [] for name in (*self.fields, "score")}

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        for name, field_name in self.fields.items():
            self.chunks[name].append(interaction[field_name].detach().cpu())
        self.chunks["score"].append(scores_tensor.detach().float().cpu())  # [B] (labeled mode: one per row)

    def recorded(self, dataset):
        """Rows seen so far as numpy arrays, ids mapped back to the dataset's raw tokens."""
        rows = {name: torch.cat(chunks).numpy() for name, chunks in self.chunks.items()}
        for name in ("impression_id", "item_id"):
            rows[name] = dataset.id2token(self.fields[name], rows[name]).astype(str)
        rows["label"] = rows["label"].astype(np.int8)
        rows["score"] = rows["score"].astype(np.float64)
        return rows


def train_and_test(spec, dataset, config_file_list, config_dict, saved=True):
    """Train ``spec`` on ``dataset`` and test its best-validation checkpoint; returns a RunResult (never raises)."""
    result = RunResult(spec, seed=config_dict.get("seed", DEFAULT_SEED))
    try:
        config = _config(spec, dataset, config_file_list, config_dict)
        result.negatives = training_negatives(config)
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
        trainer.eval_collector = recorder = ScoreRecorder(config)
        test_result = dict(
            trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        )
        result.test_seconds = time.perf_counter() - started
        if config["MODEL_TYPE"] not in PROBABILITY_MODEL_TYPES:
            test_result.update({name: None for name in PROBABILITY_METRICS if name in test_result})
        result.test_result = test_result
        result.scores = recorder.recorded(test_data._dataset)
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
            overwrite=False, seeds=1, title=None, store=None):
    """Run every spec on the same splits, ``seeds`` times (seeds ``seed``, ``seed + 1`` ...), and write
    ``results.csv`` (one row per run), ``results.md`` (mean and std over seeds, and each model against the best),
    ``results.png`` (titled ``title``, default the dataset name) and ``scores/<model>.npz`` in ``output``.

    With a ``store`` (``run_store.RunStore``), a run whose finished result is stored for the same settings is read
    instead of trained, and every finished run is stored as soon as it ends, so an interrupted comparison re-run
    with the same command trains only what is missing; the tables are then rewritten from all runs.

    Returns the list of RunResult, model by model. Refuses to replace existing results unless ``overwrite`` (or the
    folder is the store's own); stops before training on a plan that cannot give a comparable table (`check_plan`).
    """
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    existing = [name for name in (*RESULT_FILES, SCORES_DIR) if os.path.exists(os.path.join(output, name))]
    if existing and not overwrite and not (store is not None and store.exists()):
        raise FileExistsError(f"{output} already holds {', '.join(existing)}; pass --overwrite or another --output")
    config_dict = {
        "data_path": data_path,
        "checkpoint_dir": os.path.join(output, "checkpoints"),
        **(overrides or {}),
        "reproducibility": True,
    }
    check_plan(specs, dataset, config_file_list, {**config_dict, "seed": seed})
    os.makedirs(output, exist_ok=True)
    run_seeds = [seed + i for i in range(seeds)]
    results = []
    for spec in specs:
        for run_seed in run_seeds:
            logger.info("=== %s (%s), seed %d ===", spec.label, spec.model, run_seed)
            run_config = {**config_dict, "seed": run_seed}
            if seeds > 1:
                run_config["checkpoint_dir"] = os.path.join(output, "checkpoints", f"seed{run_seed}")
            if store is None:
                results.append(train_and_test(spec, dataset, config_file_list, run_config))
                continue
            settings = store.settings(_config(spec, dataset, config_file_list, run_config))
            result = store.load(spec, run_seed, settings)
            if result is None:
                run_config["checkpoint_dir"] = store.checkpoint_dir(spec.label, run_seed, settings)
                unfinished = store.unfinished_checkpoint(spec.label, run_seed, settings)
                if unfinished:
                    logger.info("%s, seed %d: resuming the unfinished run from %s", spec.label, run_seed, unfinished)
                    run_config["resume"] = unfinished
                result = train_and_test(spec, dataset, config_file_list, run_config)
                store.save(result, settings)
            results.append(result)
    write_results(results, dataset, data_path, output, seed, seeds, title)
    return results


def write_results(results, dataset, data_path, output, seed=DEFAULT_SEED, seeds=1, title=None):
    """``results.csv``, ``results.md``, ``results.png`` and ``scores/`` of ``results`` in ``output`` (atomically)."""
    run_seeds = [seed + i for i in range(seeds)]
    columns = metric_columns(results)
    seed_text = f"seed {seed}" if seeds == 1 else f"seeds {', '.join(map(str, run_seeds))} (mean ± std)"
    header = f"dataset {dataset}, {seed_text}, test split of {data_path}"
    write_scores(os.path.join(output, SCORES_DIR), results)
    _write_atomic(os.path.join(output, "results.csv"), results_csv(results, columns))
    _write_atomic(os.path.join(output, "results.md"), f"# Comparison: {header}\n\n" + results_markdown(results, columns))
    plot_results(results, columns, os.path.join(output, "results.png"),
                 title=f"{f'{title} ({dataset})' if title else f'dataset {dataset}'}: test split, {seed_text}")


def metric_columns(results):
    """Test metric names in first-seen order over all successful runs."""
    columns = []
    for result in results:
        columns += [name for name in result.test_result if name not in columns]
    return columns


def by_model(results):
    """``[(spec, [runs])]`` in the order the models were given."""
    groups = {}
    for result in results:
        groups.setdefault(result.spec.label, (result.spec, []))[1].append(result)
    return list(groups.values())


TAIL_COLUMNS = ["parameters", "trainable_parameters", "train_s", "test_s", "error"]


def results_csv(results, columns):
    """CSV text: one row per run (model and seed) with every metric, training negatives, sizes, times and error;
    a metric meaningless for the model is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "status", "train_negatives", *columns, *TAIL_COLUMNS, "seed"])
    for r in results:
        values = [r.test_result.get(name) for name in columns]
        values += [r.parameters, r.trainable_parameters, r.train_seconds, r.test_seconds]
        cells = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
        writer.writerow([r.spec.label, r.status, r.negatives, *cells, r.error, r.seed])
    return buffer.getvalue()


def _mean_std(values, digits=4):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _md(text):
    return str(text).replace("|", "\\|")


def _status(runs):
    ok = sum(run.status == "ok" for run in runs)
    return "ok" if ok == len(runs) else "failed" if ok == 0 else f"{ok}/{len(runs)} ok"


def results_markdown(results, columns):
    """Markdown: the table (one row per model; mean ± std over seeds when several), what each model trained on,
    and each model against the best by imp_auc (train_s includes validation epochs; test_s checkpoint loading)."""
    head = ["model", "status", *columns, "train negatives", *TAIL_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, runs in by_model(results):
        ok = [run for run in runs if run.status == "ok"]
        first = (ok or runs)[0]
        cells = [spec.label, _status(runs)]
        cells += [_mean_std([run.test_result.get(name) for run in ok]) for name in columns]
        cells += [first.negatives, "" if first.parameters is None else first.parameters,
                  "" if first.trainable_parameters is None else first.trainable_parameters,
                  _mean_std([run.train_seconds for run in ok], 1), _mean_std([run.test_seconds for run in ok], 1),
                  "; ".join(sorted({run.error for run in runs if run.error}))]
        lines.append("| " + " | ".join(_md(cell) for cell in cells) + " |")
    text = "\n".join(lines) + "\n"
    notes = []
    for name in columns:
        blank = [spec.label for spec, runs in by_model(results) if any(name in run.blank_metrics for run in runs)]
        if blank:
            notes.append(f"{name} is blank for {', '.join(blank)}: it reads scores as click probabilities, and these "
                         f"models output ranking scores.")
    return text + "".join(f"\n{note}\n" for note in notes) + "\n" + significance_markdown(results)


def per_impression_auc_by_model(results):
    """``{label: {impression: AUC}}`` of each model, averaged over its successful seeds (per impression)."""
    aucs = {}
    for spec, runs in by_model(results):
        per_seed = [significance.per_impression_auc(run.scores["impression_id"], run.scores["label"],
                                                    run.scores["score"])
                    for run in runs if run.status == "ok" and run.scores is not None]
        if per_seed:
            common = set.intersection(*(set(values) for values in per_seed))
            aucs[spec.label] = {key: statistics.fmean(values[key] for values in per_seed) for key in common}
    return aucs


def significance_markdown(results):
    """Each model against the best one (highest mean imp_auc): paired over impressions (significance.py)."""
    aucs = per_impression_auc_by_model(results)
    if len(aucs) < 2:
        return ""
    means = {label: statistics.fmean(values.values()) for label, values in aucs.items() if values}
    best = max(means, key=means.get)
    lines = [
        f"## imp_auc against the best model ({best})",
        "",
        f"Per impression: this model's AUC minus {best}'s, over the impressions both score (AUC averaged over seeds "
        f"first). Mean difference with its 95% paired-bootstrap interval (impressions resampled, "
        f"{significance.N_RESAMPLES} resamples) and the two-sided Wilcoxon signed-rank test; significant: "
        f"p < {significance.ALPHA}.",
        "",
        "| model | Δ imp_auc | 95% interval | Wilcoxon p | impressions | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for label in aucs:
        if label == best:
            lines.append(f"| {_md(label)} | best | | | {len(aucs[label])} | |")
            continue
        paired = significance.paired_comparison(aucs[label], aucs[best])
        verdict = "significant" if paired.significant else "not significant"
        lines.append(f"| {_md(label)} | {paired.difference:+.4f} | [{paired.low:+.4f}, {paired.high:+.4f}] | "
                     f"{paired.p_value:.3g} | {paired.impressions} | {verdict} |")
    return "\n".join(lines) + "\n"


def _file_name(label):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def write_scores(folder, results):
    """``<folder>/<model>.npz`` per model: impression_id, item_id, label, score and seed of every test row of every
    successful run (one row per run and candidate), written atomically."""
    os.makedirs(folder, exist_ok=True)
    for entry in os.scandir(folder):  # an earlier comparison's files (compare refused unless --overwrite)
        if entry.name.endswith(".npz"):
            os.remove(entry.path)
    for spec, runs in by_model(results):
        runs = [run for run in runs if run.status == "ok" and run.scores is not None]
        if not runs:
            continue
        arrays = {name: np.concatenate([run.scores[name] for run in runs]) for name in runs[0].scores}
        arrays["seed"] = np.concatenate([np.full(len(run.scores["score"]), run.seed, dtype=np.int64) for run in runs])
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as handle:
            np.savez_compressed(handle, **arrays)
        os.replace(handle.name, os.path.join(folder, _file_name(spec.label) + ".npz"))


def load_scores(path):
    """The arrays of one ``scores/<model>.npz`` file as a dict."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def plot_results(results, columns, path, title=""):
    """Grouped bar chart written atomically as PNG: one group per metric, one bar per model in the order given
    (mean over seeds, with the std as an error bar when several), each bar labelled with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(spec, [run for run in runs if run.status == "ok"]) for spec, runs in by_model(results)]
    shown = [(spec, runs) for spec, runs in groups if runs]
    metrics = [name for name in columns if name not in PROBABILITY_METRICS]  # other scale: not on this axis
    figure, axes = plt.subplots(figsize=(max(7, 1.9 * len(metrics) + 2), 4.8))
    width = 0.8 / max(1, len(shown))
    for i, (spec, runs) in enumerate(shown):
        positions = [m + (i - (len(shown) - 1) / 2) * width for m in range(len(metrics))]
        values = [[run.test_result.get(name, math.nan) for run in runs] for name in metrics]
        heights = [statistics.fmean(v) for v in values]
        errors = [statistics.stdev(v) for v in values] if len(runs) > 1 else None
        bars = axes.bar(positions, heights, width, yerr=errors, capsize=2, label=spec.label, color=f"C{i % 10}")
        axes.bar_label(bars, fmt="%.3f", fontsize=6, padding=2, rotation=90 if len(shown) > 3 else 0)
    axes.set_xticks(range(len(metrics)), metrics)
    axes.set_ylabel("test score")
    axes.set_ylim(0, 1.12)
    axes.set_title(title, fontsize=10)
    failed = [spec.label for spec, runs in groups if not runs]
    if failed:
        figure.text(0.01, 0.01, "failed: " + ", ".join(failed), fontsize=8, color="red")
    if shown:
        axes.legend(fontsize=8, loc="upper right", ncols=min(len(shown), 5))
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
