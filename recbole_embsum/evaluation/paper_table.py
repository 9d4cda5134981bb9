"""The paper's Tables 1 and 2 in one command: ``recbole-embsum compare --paper-table``.

Trains and tests EmbSum and the nine baselines of Table 1 and EmbSum's four ablations of Table 2 (the ablation rows
of ``compare.ABLATIONS``; Table 2's "Ours" is Table 1's EmbSum run) with the settings of a preset
(``properties/paper_table.yaml``: ``paper`` = the paper's, ``cpu-small`` = small scratch backbones offline), through
``compare.compare`` with a ``RunStore`` (finished runs are not trained again), and writes ``paper_tables.md``: our
numbers beside the paper's (transcribed in the same yaml) and, per table, each model against the best with compare's
paired bootstrap interval and Wilcoxon test. A model this installed version does not register is one line in the log
and a row with the paper's numbers only.
"""
import logging
import os

import yaml

from recbole_embsum.evaluation import compare
from recbole_embsum.evaluation.run_store import RunStore

logger = logging.getLogger(__name__)

TABLE_FILE = "paper_table.yaml"
OUTPUT_FILE = "paper_tables.md"
PAPER_DATASETS = {"mind": "MIND-small", "goodreads": "Goodreads"}


def load_table():
    """The packaged ``paper_table.yaml`` as a dict."""
    from recbole_embsum.registry import properties_dir

    with open(os.path.join(properties_dir(), TABLE_FILE), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def paper_dataset(dataset, given=None):
    """Which of the paper's datasets (``mind`` / ``goodreads``) a converted dataset stands for: ``given``, else the
    one its name starts with; ValueError (one line) when neither says."""
    if given:
        if given not in PAPER_DATASETS:
            raise ValueError(f"--paper-dataset must be one of {', '.join(PAPER_DATASETS)}, got {given!r}")
        return given
    for name in PAPER_DATASETS:
        if str(dataset).lower().startswith(name):
            return name
    raise ValueError(f"dataset {dataset!r}: which of the paper's tables is it? pass --paper-dataset mind or "
                     f"--paper-dataset goodreads")


UNAVAILABLE = "not in this installed version of recbole-embsum (RecBole finds no model of that name)"


def available(model):
    """Whether RecBole finds a model class named ``model`` here."""
    from recbole_embsum import compat

    try:
        compat.check_model_name(model)
    except compat.UnknownModelError:
        return False
    return True


def plan(table, preset):
    """``(specs, unavailable)``: a RunSpec per Table 1 model (the paper's row order) and per Table 2 ablation with
    the preset's settings as ``defaults``; ``unavailable`` lists the models this installed version lacks."""
    presets = table["presets"]
    if preset not in presets:
        raise ValueError(f"--preset: no paper-table settings named {preset!r}; choose one of {', '.join(presets)}")
    common, per_model = presets[preset].get("common") or {}, presets[preset].get("models") or {}
    models = list(table["table1"]["mind"])  # the paper's row order
    unavailable = [name for name in models if not available(name)]

    def settings(model):
        return {**common, **(per_model.get(model) or {})}

    specs = [compare.RunSpec(name, name, defaults=settings(name)) for name in models if name not in unavailable]
    if "EmbSum" not in unavailable:  # Table 2's first row is Table 1's EmbSum run
        specs += [compare.RunSpec(label, "EmbSum", dict(switches), defaults=settings("EmbSum"))
                  for label, switches in compare.ABLATIONS if switches]
    return specs, unavailable


def run_paper_table(dataset, data_path, output, preset="paper", which=None, config_file_list=None, overrides=None,
                    seed=compare.DEFAULT_SEED, seeds=1, title=None, overwrite=False):
    """Run (or resume) both tables and write compare's files plus ``paper_tables.md`` in ``output``; returns
    ``(results, unavailable)``."""
    table = load_table()
    which = paper_dataset(dataset, which)
    specs, unavailable = plan(table, preset)
    for name in unavailable:
        logger.warning("%s: %s; its row shows the paper's numbers only", name, UNAVAILABLE)
    title = title or f"{PAPER_DATASETS[which]}, preset {preset}"
    results = compare.compare(specs, dataset, data_path, output, config_file_list=config_file_list,
                              overrides=overrides, seed=seed, overwrite=overwrite, seeds=seeds, title=title,
                              store=RunStore(output))
    text = tables_markdown(results, table, which, unavailable, header=f"# The paper's Tables 1 and 2: dataset "
                           f"{dataset} ({PAPER_DATASETS[which]} in the paper), preset {preset}, "
                           f"{'seed ' + str(seed) if seeds == 1 else f'{seeds} seeds from {seed} (mean ± std)'}")
    compare._write_atomic(os.path.join(output, OUTPUT_FILE), text)
    return results, unavailable


def _ours(runs, metric):
    return compare._mean_std([100 * run.test_result[metric] for run in runs
                              if run.status == "ok" and run.test_result.get(metric) is not None], 2)


def table_markdown(results, paper_rows, metrics, names, unavailable):
    """One table: a row per paper row, each metric as ours (x 100, mean ± std over seeds) then the paper's."""
    runs = {spec.label: group for spec, group in compare.by_model(results)}
    head = ["model"] + [f"{column} {who}" for column in metrics for who in ("ours", "paper")] + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, paper in paper_rows.items():
        group = runs.get(label, [])
        cells = [names.get(label, label)]
        for metric, value in zip(metrics.values(), paper):
            cells += [_ours(group, metric), f"{value:.2f}"]
        status = compare._status(group) if group else (
            "not in this version" if label in unavailable else "not run")
        cells.append(status)
        lines.append("| " + " | ".join(compare._md(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def tables_markdown(results, table, which, unavailable, header=""):
    """``paper_tables.md``: Table 1 and Table 2, each followed by its models against its best (imp_auc)."""
    metrics, names = table["metrics"], table.get("paper_names") or {}
    parts = [header, "",
             "Test split, metrics x 100 (the paper's unit); \"paper\" columns are the paper's numbers for "
             f"{PAPER_DATASETS[which]}, transcribed in properties/{TABLE_FILE}. Our metrics are MIND's "
             "per-impression definitions (imp_auc, imp_mrr, imp_ndcg@5, imp_ndcg@10)."]
    for number, key, what in ((1, "table1", "EmbSum and the baselines"), (2, "table2", "EmbSum's ablations")):
        rows = table[key][which]
        parts += ["", f"## Table {number}: {what}", "", table_markdown(results, rows, metrics, names, unavailable)]
        members = [result for result in results if result.spec.label in rows]
        significance = compare.significance_markdown(members)
        if significance:
            parts.append(significance.replace("## imp_auc against", f"### Table {number}: imp_auc against", 1))
    if unavailable:
        parts += ["", f"{', '.join(unavailable)}: {UNAVAILABLE}; their rows show the paper's numbers only."]
    return "\n".join(parts).rstrip("\n") + "\n"
