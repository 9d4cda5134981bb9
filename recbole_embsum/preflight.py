"""Checks a training run can start, made before any data is loaded (loading MIND takes minutes).

``check_run(config)`` takes the RecBole ``Config`` of the run and stops with a one-line :class:`PreflightError` saying
what to do when:

* ``data_path`` does not exist, or holds no converted folder of that name (the converted folders found are listed);
* EmbSum's item text (``<dataset>.text.jsonl``) or a configured ``summary_path`` is missing;
* the backbone ``plm`` (EmbSum's T5, the PLM baselines' encoder) is neither a local folder, nor in the Hugging Face
  cache, nor reachable on the hub.

It then estimates the memory of one training step and of the loaded data (``recbole_embsum.memory``) and logs a
warning naming the knobs when the estimate exceeds the machine's memory. ``run_recbole`` (``quick_start.run``) and
``compare`` (``check_plan``) call it.
"""
import glob
import logging
import os

logger = logging.getLogger(__name__)

CONVERT_HINT = "recbole-embsum convert mind --input RAW_MIND --output {data_path} --name {dataset}"


class PreflightError(ValueError):
    """A run that cannot start; the message is one line saying what to do."""


def _is_embsum(config):
    from recbole_embsum.model.embsum import EmbSum

    model_class = getattr(config, "model_class", None)
    return isinstance(model_class, type) and issubclass(model_class, EmbSum)


def _reads_plm(config):
    """EmbSum, or a model that loads a ``plm`` backbone (class attribute ``plm_kind``, e.g. NAMLPLM, MINER)."""
    model_class = getattr(config, "model_class", None)
    return _is_embsum(config) or getattr(model_class, "plm_kind", None) is not None


def _recbole_can_download(dataset):
    """RecBole downloads the datasets named in its ``url.yaml`` into a missing folder (ml-100k, ...)."""
    import recbole
    import yaml

    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(path, encoding="utf-8") as handle:
        return dataset in (yaml.safe_load(handle) or {})


def _inter_files(folder, dataset):
    return glob.glob(os.path.join(folder, f"{glob.escape(dataset)}*.inter"))


def converted_datasets(data_path):
    """Names of the folders under ``data_path`` that hold RecBole atomic files ``<name>/<name>*.inter``."""
    if not os.path.isdir(data_path):
        return []
    return sorted(entry.name for entry in os.scandir(data_path)
                  if entry.is_dir() and _inter_files(entry.path, entry.name))


def check_dataset(config):
    """``data_path`` exists and holds ``<dataset>/<dataset>*.inter`` (or RecBole can download ``dataset``)."""
    dataset = config["dataset"]
    folder = config["data_path"]  # RecBole's <data_path>/<dataset>
    if not os.path.exists(folder) and _recbole_can_download(dataset):
        return
    check_converted_dataset(os.path.dirname(os.path.normpath(folder)) or ".", dataset)


def check_converted_dataset(data_path, dataset):
    """``data_path`` (``run_recbole --data_path=``, ``compare --data-path``) holds ``<dataset>/<dataset>*.inter``, or a one-line
    :class:`PreflightError` says what to do: which converted datasets are there and how to convert this one."""
    if _inter_files(os.path.join(data_path, dataset), dataset):
        return
    hint = CONVERT_HINT.format(data_path=data_path, dataset=dataset)
    if not os.path.isdir(data_path):
        raise PreflightError(f"data_path {data_path!r} does not exist; use the --output folder of "
                             f"`{hint}`")
    found = converted_datasets(data_path)
    listing = f"found: {', '.join(found)}" if found else "found none"
    raise PreflightError(f"no converted dataset {dataset!r} under {data_path}/ ({listing}); convert first with "
                         f"`{hint}`" + (f" or pick one with --dataset={found[0]}" if found else ""))


def check_embsum_files(config):
    """EmbSum's item text exists, and so does ``summary_path`` when the user set one."""
    from recbole_embsum.text.items import item_text_path

    dataset, folder = config["dataset"], config["data_path"]
    text_path = item_text_path(folder, dataset)
    if not os.path.isfile(text_path):
        raise PreflightError(f"EmbSum reads item text from {text_path}, which does not exist; convert the raw data "
                             f"with `recbole-embsum convert` (it writes <name>.text.jsonl beside the .inter files)")
    summary_path = config["summary_path"]
    if summary_path and not os.path.isfile(summary_path):
        raise PreflightError(
            f"summary_path {summary_path!r} does not exist; write it with `recbole-embsum summarize --dataset "
            f"{dataset} --data-path {os.path.dirname(os.path.normpath(folder))}`, or drop summary_path to read "
            f"<data_path>/{dataset}/{dataset}.summaries.jsonl when present (users without one train without L_sum)")


def resolve_backbone(plm, cache_dir=None):
    """Where ``from_pretrained(plm)`` will read from: ``"local"``, ``"cache"`` or ``"hub"``; else PreflightError.

    ``cache_dir``: the Hugging Face hub cache (default: ``HF_HUB_CACHE`` / ``HF_HOME`` / ``~/.cache/huggingface``).
    """
    what_to_do = (f"run with plm=/path/to/{os.path.basename(str(plm).rstrip('/')) or 't5-small'} (a folder written "
                  f"by save_pretrained), or plm_init=scratch (the same architecture of plm_config size, trained "
                  f"from scratch offline; on a CPU: --config_files=cpu-small, a small backbone built from scratch, "
                  f"as the packaged t5-small sizes need far more memory than a CPU machine has)")
    if os.path.isdir(plm):
        if not os.path.isfile(os.path.join(plm, "config.json")):
            raise PreflightError(f"plm folder {plm!r} has no config.json (not written by save_pretrained); "
                                 f"{what_to_do}")
        return "local"
    if os.path.isabs(plm) or plm.startswith((".", "~")) or plm.count("/") > 1:
        raise PreflightError(f"plm {plm!r}: no such folder; {what_to_do}")
    from huggingface_hub import constants, file_exists, try_to_load_from_cache

    cached = try_to_load_from_cache(plm, "config.json", cache_dir=cache_dir)
    if isinstance(cached, str):
        return "cache"
    if constants.HF_HUB_OFFLINE:
        raise PreflightError(f"plm {plm!r} is not in the Hugging Face cache and the hub is off (HF_HUB_OFFLINE); "
                             f"{what_to_do}")
    try:
        exists = file_exists(plm, "config.json")
    except Exception as error:  # noqa: BLE001  (any network failure means the same thing to the user)
        raise PreflightError(f"plm {plm!r} is not a local folder or in the Hugging Face cache, and the hub cannot be "
                             f"reached ({type(error).__name__}); {what_to_do}") from None
    if not exists:
        raise PreflightError(f"plm {plm!r}: no such model on the Hugging Face hub; {what_to_do}")
    return "hub"


def check_backbone(config):
    if config["plm_init"] == "pretrained":
        where = resolve_backbone(str(config["plm"]))
        logger.info("preflight: backbone plm=%s from the %s", config["plm"],
                    {"local": "local folder", "cache": "Hugging Face cache", "hub": "Hugging Face hub"}[where])


def check_memory(config, embsum=True, describe_data=True):
    """Log the estimate (``describe_data=False``: without the loaded data, when an earlier line of the same run
    said it, as for the second and later models of a comparison), and a warning naming the knobs when one training
    step plus the loaded data exceed the machine's memory."""
    from recbole_embsum import memory

    estimate = memory.estimate_run(config, embsum=embsum)
    line = estimate.describe(data=describe_data)
    if line:
        logger.info("preflight: %s", line)
    if estimate.exceeds_device():
        logger.warning("preflight: %s", estimate.advice())


def check_run(config, describe_data=True):
    """Every check above for the run ``config`` describes; raises PreflightError, logs warnings.
    ``describe_data``: see :func:`check_memory`."""
    check_dataset(config)
    embsum = _is_embsum(config)
    if embsum:
        check_embsum_files(config)
    if _reads_plm(config):
        check_backbone(config)
    check_memory(config, embsum=embsum, describe_data=describe_data)


def check(model, dataset, config_file_list=None, config_dict=None):
    """Build the run's RecBole ``Config`` (files, ``config_dict`` and the command line, no data) and check it."""
    from recbole.config import Config

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_run(config)
    return config
