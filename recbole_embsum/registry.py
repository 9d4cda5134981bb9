"""How RecBole finds our model, trainer, metrics, collector and packaged yaml defaults, without editing RecBole.

RecBole 1.2.1 has no plugin registry; it looks things up by module path and attribute name
(``recbole.utils.get_model``, ``get_trainer``, the metric registry in ``recbole.evaluator.register``).
``register()`` puts our classes where those lookups look:

* models:  ``get_model("EmbSum")`` imports ``recbole.model.sequential_recommender.embsum`` -> our module is aliased
           in ``sys.modules`` under that name; the same for each content baseline (``MODELS``).
* trainer: ``get_trainer(type, "EmbSum")`` reads ``recbole.trainer.EmbSumTrainer`` -> set as an attribute; the
           baselines train with the same trainer (``<Model>Trainer``): its loop is generic for any single or tuple
           loss, and it gives them AdamW/Adam, warm-up options, non-finite-loss stops and exact resume alike.
* metrics: RecBole's metric registry is built once at import from ``recbole.evaluator.metrics``; our metric
           classes are added to the same shared dictionaries in place.
* collector: every ``Trainer`` builds ``recbole.trainer.trainer.Collector(config)``; that name is bound to our
           ``ImpressionCollector``, which behaves exactly like RecBole's unless a metric needs ``impression_id``.
* defaults: ``Config._load_internal_config_dict`` also reads ``properties/overall.yaml``, ``properties/model/<class>.yaml``
           for the model class and each of its bases (e.g. ``ContentRecommender.yaml`` then ``NRMS.yaml``) and
           ``properties/dataset/<dataset>.yaml`` shipped with this package, then ``<data_path>/<dataset>/<dataset>.yaml``
           written by the converter (so a dataset converted under any name loads), at RecBole's internal-default
           priority (after its quick-start yaml), so the user's yaml, ``config_dict`` and command line still win; then
           ``compat.default_negative_sampling`` picks a training-sampling default every model can train with.
           A named preset (``embsum_preset: cpu-small``, ``presets.py``) is read just above those defaults.
* checks:  ``validation.install()`` makes every Config refuse a missing yaml file, a dataset name that is not a plain
           folder name and counts below 1 (``epochs``, batch sizes, ...), in one line each.
* DDP:     ``distributed.install()`` replaces RecBole's nccl-only process group, DDP wrapper and per-rank evaluation
           (see that module); the single-process path is unchanged.
"""
import functools
import importlib.resources
import os
import sys

import recbole.config.configurator
import recbole.model.sequential_recommender
import recbole.trainer
import recbole.trainer.trainer

from recbole_embsum import compat, distributed, presets, validation
from recbole_embsum.evaluation.collector import ImpressionCollector
from recbole_embsum.evaluation.metrics import register_metrics
from recbole_embsum.model import caum, embsum, fastformer, miner, mins, naml, naml_plm, nrms, unbert, unitrec
from recbole_embsum.trainer import EmbSumTrainer

MODEL_PACKAGE = "recbole.model.sequential_recommender"
MODEL_ALIAS = f"{MODEL_PACKAGE}.embsum"
# Model class name -> its module; RecBole finds each as recbole.model.sequential_recommender.<lower-case name>.
MODELS = {"EmbSum": embsum, "NAML": naml, "NRMS": nrms, "Fastformer": fastformer, "CAUM": caum, "MINS": mins,
          "NAMLPLM": naml_plm, "MINER": miner, "UNBERT": unbert, "UniTRec": unitrec}


def properties_dir():
    """The folder of packaged yaml defaults (``properties/`` in the source tree)."""
    return str(importlib.resources.files("recbole_embsum.properties"))


def converted_dataset_yaml(data_path, dataset):
    """``<data_path>/<dataset>/<dataset>.yaml``: the RecBole settings the converter wrote beside the files."""
    return os.path.join(data_path, dataset, f"{dataset}.yaml")


def default_config_files(model, dataset, data_path=None, model_class=None):
    """Yaml files that apply to ``model`` on ``dataset``, lowest priority first (only those that exist).

    The packaged ones (overall; one per class from the most general base of ``model_class``, or of ``model`` given
    as a class, down to the model itself; the dataset), then (when ``data_path`` is given, RecBole's folder of
    datasets) the converted dataset's own.
    """
    model_class = model_class or (None if isinstance(model, str) else model)
    names = [cls.__name__ for cls in reversed(model_class.__mro__)] if model_class is not None else [model]
    candidates = [
        os.path.join(properties_dir(), "overall.yaml"),
        *(os.path.join(properties_dir(), "model", f"{name}.yaml") for name in names),
        os.path.join(properties_dir(), "dataset", f"{dataset}.yaml"),
    ]
    if data_path and dataset not in (".", "..") and not set("/\\") & set(str(dataset)):  # only <data_path>/<name>/
        candidates.append(converted_dataset_yaml(data_path, dataset))
    return [path for path in candidates if os.path.isfile(path)]


def _data_path(config):
    """The ``data_path`` a Config will use (user settings over RecBole's default), before RecBole appends the dataset."""
    return config.external_config_dict.get("data_path", config.internal_config_dict.get("data_path"))


def _with_packaged_defaults(load_internal_config_dict):
    if getattr(load_internal_config_dict, "_embsum_defaults", False):
        return load_internal_config_dict

    @functools.wraps(load_internal_config_dict)
    def wrapper(self, model, model_class, dataset):
        load_internal_config_dict(self, model, model_class, dataset)
        packaged_datasets = os.path.join(properties_dir(), "dataset")
        for path in default_config_files(model, dataset, _data_path(self), model_class):
            values = self._update_internal_config_dict(path) or {}
            if os.path.dirname(path) == packaged_datasets or not path.startswith(properties_dir()):
                self.parameters["Dataset"] += [key for key in values if key not in self.parameters["Dataset"]]
        preset = self.external_config_dict.get(presets.PRESET_KEY)
        if preset:
            self._update_internal_config_dict(presets.preset_path(preset))
        compat.default_negative_sampling(self)

    wrapper._embsum_defaults = True
    return wrapper


def register():
    """Make RecBole find everything of ours by name (idempotent; run by ``import recbole_embsum``)."""
    for name, module in MODELS.items():
        sys.modules[f"{MODEL_PACKAGE}.{name.lower()}"] = module
        setattr(recbole.model.sequential_recommender, name.lower(), module)
        setattr(recbole.trainer, f"{name}Trainer", EmbSumTrainer)
    register_metrics()
    recbole.trainer.trainer.Collector = ImpressionCollector
    config_cls = recbole.config.configurator.Config
    config_cls._load_internal_config_dict = _with_packaged_defaults(config_cls._load_internal_config_dict)
    compat.apply()
    validation.install()
    presets.install()  # after validation: preset names become paths before the file check
    distributed.install()
