"""Finished comparison runs kept on disk, keyed by the settings that produced them, so that a long comparison
(``compare --paper-table``) interrupted and re-run with the same command trains only what is missing.

One run (model label and seed) is two files in ``<output>/runs/<label>/``: ``seed<seed>-<key>.npz`` (its test rows)
and ``seed<seed>-<key>.json`` (metrics, sizes, times and the settings), written in that order, each to a temporary
file renamed into place: a run is finished exactly when its ``.json`` exists. ``<key>`` is the first 16 hex digits of
the SHA-256 of the run's settings: every value of its resolved RecBole Config that can change the result (runtime
values such as the device, the checkpoint folder or the progress bar are left out) plus the size and modification
time of the dataset's benchmark files. A run whose settings changed since a stored result is trained again, and the
log says which settings differ; the older result stays on disk under its own key. Failed runs are not stored, so they
run again.

Each run saves its checkpoints in ``<output>/checkpoints/<label>/seed<seed>-<key>/``; a run killed mid-training left
its last saved checkpoint there (RecBole saves when validation improves), and the next run resumes from it with the
checkpoint machinery (``resume``: weights, optimizer, epoch, random states; ``checkpoint.py``), continuing with the
epoch after the saved one.
"""
import dataclasses
import hashlib
import json
import logging
import os
import tempfile

import numpy as np

from recbole_embsum.checkpoint import RUNTIME_KEYS, plain_values

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
CHECKPOINTS_DIR = "checkpoints"
# Config values that change how a run is executed or reported, not its result.
EXECUTION_KEYS = frozenset(RUNTIME_KEYS) | {
    "device", "gpu_id", "use_gpu", "checkpoint_dir", "data_path", "show_progress", "state", "log_wandb",
    "wandb_project", "worker", "save_dataset", "save_dataloaders", "dataset_save_path", "dataloaders_save_path",
}
SCORE_FIELDS = ("impression_id", "item_id", "label", "score")


def _json_round_trip(value):
    return json.loads(json.dumps(value, sort_keys=True))


def _write_atomic(path, write):
    directory = os.path.dirname(path)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".", suffix=os.path.splitext(path)[1],
                                     delete=False) as handle:
        write(handle)
    os.replace(handle.name, path)


class RunStore:
    """The ``runs/`` folder of one comparison output folder."""

    def __init__(self, output):
        self.folder = os.path.join(output, RUNS_DIR)
        self.checkpoints = os.path.join(output, CHECKPOINTS_DIR)

    def exists(self):
        return os.path.isdir(self.folder)

    @staticmethod
    def settings(config):
        """What a run's result depends on: the resolved Config's plain values without ``EXECUTION_KEYS``, and the
        size and modification time of each benchmark file of the dataset (a re-converted dataset is new data)."""
        values = plain_values({key: value for key, value in config.final_config_dict.items()
                               if key not in EXECUTION_KEYS}, "run settings")
        files = {}
        for split in config["benchmark_filename"] or []:
            path = os.path.join(config["data_path"], f"{config['dataset']}.{split}.inter")
            if os.path.isfile(path):
                stat = os.stat(path)
                files[split] = [stat.st_size, stat.st_mtime_ns]
        return _json_round_trip({"config": values, "data_files": files})

    @staticmethod
    def key(settings):
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:16]

    def _paths(self, label, seed, settings):
        from recbole_embsum.evaluation.compare import _file_name

        stem = os.path.join(self.folder, _file_name(label), f"seed{seed}-{self.key(settings)}")
        return stem + ".json", stem + ".npz"

    def checkpoint_dir(self, label, seed, settings):
        """The run's own checkpoint folder (one per label, seed and settings)."""
        from recbole_embsum.evaluation.compare import _file_name

        return os.path.join(self.checkpoints, _file_name(label), f"seed{seed}-{self.key(settings)}")

    def unfinished_checkpoint(self, label, seed, settings):
        """The newest checkpoint an unfinished run of these settings left behind, else None."""
        folder = self.checkpoint_dir(label, seed, settings)
        if not os.path.isdir(folder):
            return None
        saved = [entry for entry in os.scandir(folder) if entry.name.endswith(".pth") and entry.is_file()]
        return max(saved, key=lambda entry: entry.stat().st_mtime_ns).path if saved else None

    def load(self, spec, seed, settings):
        """The stored RunResult of ``spec`` at ``seed`` made with exactly ``settings``, else None (logging why a
        result stored with other settings is not used)."""
        from recbole_embsum.evaluation.compare import RunResult, RunSpec

        record_path, scores_path = self._paths(spec.label, seed, settings)
        if not os.path.isfile(record_path):
            self._log_other_settings(spec.label, seed, settings)
            return None
        with open(record_path, encoding="utf-8") as handle:
            record = json.load(handle)
        with np.load(scores_path, allow_pickle=False) as data:
            scores = {name: data[name] for name in SCORE_FIELDS}
        logger.info("%s, seed %d: finished result found (%s), not trained again", spec.label, seed, record_path)
        fields = {name: record[name] for name in ("status", "test_result", "best_valid_score", "parameters",
                                                  "trainable_parameters", "train_seconds", "test_seconds",
                                                  "negatives")}
        return RunResult(RunSpec(**record["spec"]), seed=record["seed"], scores=scores, **fields)

    def _log_other_settings(self, label, seed, settings):
        folder = os.path.dirname(self._paths(label, seed, settings)[0])
        prefix = f"seed{seed}-"
        others = sorted((entry for entry in os.scandir(folder) if entry.name.startswith(prefix)
                         and entry.name.endswith(".json")), key=lambda entry: entry.stat().st_mtime) \
            if os.path.isdir(folder) else []
        if not others:
            return
        with open(others[-1].path, encoding="utf-8") as handle:
            old = json.load(handle).get("settings", {})
        changes = []
        for part in ("config", "data_files"):
            before, after = old.get(part, {}), settings.get(part, {})
            changes += [f"{key} ({before.get(key)!r} -> {after.get(key)!r})" for key in sorted(set(before) | set(after))
                        if before.get(key) != after.get(key)]
        logger.warning("%s, seed %d: the stored result %s was made with other settings (%s); training again",
                       label, seed, others[-1].path, ", ".join(changes) or "unreadable settings")

    def save(self, result, settings):
        """Store a finished (``ok``) run; a failed one is not stored, so it runs again."""
        if result.status != "ok" or result.scores is None:
            return
        record_path, scores_path = self._paths(result.spec.label, result.seed, settings)
        os.makedirs(os.path.dirname(record_path), exist_ok=True)
        _write_atomic(scores_path, lambda handle: np.savez_compressed(handle, **result.scores))
        record = {
            "spec": dataclasses.asdict(result.spec), "seed": result.seed, "status": result.status,
            "test_result": result.test_result, "best_valid_score": result.best_valid_score,
            "parameters": result.parameters, "trainable_parameters": result.trainable_parameters,
            "train_seconds": result.train_seconds, "test_seconds": result.test_seconds,
            "negatives": result.negatives, "settings": settings,
        }
        text = json.dumps(record, indent=1, sort_keys=True).encode("utf-8")
        _write_atomic(record_path, lambda handle: handle.write(text))
