"""Writing an export folder (format in :mod:`recbole_embsum.serving.layout`) resumably and atomically.

:class:`ExportWriter` writes ``plan.json`` first, then each shard under a temporary name renamed into place, then
``scorer.safetensors``, the optional ``summaries.jsonl`` and, last, ``manifest.json``. Rerunning the same plan in the
same folder skips every shard already written (its metadata carries the plan's hash); a folder holding another plan
is refused unless ``overwrite`` is set, and then only the export's own files are removed. Several writers of the
same plan may share a folder at once (sharded export): each writes disjoint shards, and ``plan.json``, the scorer,
summaries and manifest they may both write have identical bytes and are renamed into place.
"""
import hashlib
import json
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from safetensors import SafetensorError, safe_open

from dataset_converters.atomic import JsonlFile, write_json
from recbole_embsum.outputs import naming
from recbole_embsum.summaries.store import make_record

from .layout import (DTYPES, FORMAT, MANIFEST_FILE, PLAN_FILE, SCORER_FILE, SECTIONS, SUMMARIES_FILE, VERSION,
                     ExportFormatError, plan_hash, read_json, save_tensors_atomic, shard_bounds, shard_name)

logger = logging.getLogger(__name__)

_OWN_FILE = re.compile(r"^((items|users)-\d{5}\.safetensors|plan\.json|manifest\.json|scorer\.safetensors|"
                       r"summaries\.jsonl)$")
SUMMARY_BACKEND = "embsum"


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes (the fingerprint of a checkpoint or input file in the plan)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_plan(source: dict, sizes: Dict[str, int], items: Sequence[str], users: Sequence[str], dtype: str,
              shard_rows: int, summaries: bool) -> dict:
    """The plan of an export: everything that decides the bytes of its shards.

    Args:
        source: where the embeddings come from (checkpoint and input files with their SHA-256), for people and for
            telling two exports apart.
        sizes: ``{"m": UPE codes, "n": CPE codes, "d": model width}``.
        items, users: raw ids, in row order.
        dtype: storage dtype, one of ``layout.DTYPES``.
        shard_rows: rows per shard file.
        summaries: whether user shards carry generated interest summaries.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    for section, ids in (("items", items), ("users", users)):
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate {section[:-1]} ids in the export plan")
    return {"format": FORMAT, "version": VERSION, "source": source, "sizes": dict(sizes), "dtype": dtype,
            "shard_rows": shard_rows, "summaries": bool(summaries), "items": [str(i) for i in items],
            "users": [str(u) for u in users]}


class ExportWriter:
    """Writes the shards of one plan into ``folder``; see the module docstring for resuming and overwriting."""

    def __init__(self, folder: str, plan: dict, overwrite: bool = False):
        self.folder = os.fspath(folder)
        self.plan = plan
        self.hash = plan_hash(plan)
        self.dtype = getattr(torch, plan["dtype"])
        os.makedirs(self.folder, exist_ok=True)
        plan_path = os.path.join(self.folder, PLAN_FILE)
        orphans = not os.path.exists(plan_path) and any(_OWN_FILE.match(name) for name in os.listdir(self.folder))
        # Checked after listing: a concurrent worker writes plan.json before any shard, so files listed while no
        # plan.json exists even now are leftovers, not that worker's.
        if os.path.exists(plan_path) and plan_hash(read_json(plan_path, "the export's plan")) != self.hash:
            if not overwrite:
                raise FileExistsError(f"{self.folder} holds another export (its {PLAN_FILE} differs: other "
                                      "checkpoint, inputs, ids or options); choose another --output or pass "
                                      "--overwrite to replace it")
            self._remove_own_files()
        elif orphans and not os.path.exists(plan_path):
            if not overwrite:
                raise FileExistsError(f"{self.folder} holds export files without a {PLAN_FILE}; pass --overwrite "
                                      "to replace them")
            self._remove_own_files()
        if not os.path.exists(plan_path):  # concurrent workers write identical bytes, each renamed into place
            with naming(plan_path):
                write_json(plan_path, plan)

    def _remove_own_files(self) -> None:
        for name in os.listdir(self.folder):
            if _OWN_FILE.match(name):
                os.unlink(os.path.join(self.folder, name))

    @property
    def complete(self) -> bool:
        """Whether ``manifest.json`` of this plan is already there."""
        path = os.path.join(self.folder, MANIFEST_FILE)
        return os.path.exists(path) and read_json(path, "the export's manifest").get("plan_hash") == self.hash

    def shards(self, section: str) -> List[Tuple[int, int, int]]:
        """``[(index, start, stop), ...]`` of every shard of ``section``."""
        bounds = shard_bounds(len(self.plan[section]), self.plan["shard_rows"])
        return [(index, start, stop) for index, (start, stop) in enumerate(bounds)]

    def _shard_metadata(self, section: str, index: int) -> Optional[dict]:
        path = os.path.join(self.folder, shard_name(section, index))
        if not os.path.exists(path):
            return None
        try:
            with safe_open(path, framework="pt") as handle:
                return handle.metadata() or {}
        except (SafetensorError, OSError) as err:  # unreadable: written by something else, redo it
            logger.warning("%s is unreadable (%s); it will be rewritten", path, err)
            return None

    def pending(self, section: str) -> List[Tuple[int, int, int]]:
        """The shards of ``section`` not yet written for this plan."""
        todo = []
        for index, start, stop in self.shards(section):
            metadata = self._shard_metadata(section, index)
            if metadata is None or metadata.get("plan_hash") != self.hash:
                todo.append((index, start, stop))
        return todo

    def missing(self) -> List[Tuple[str, int]]:
        """``[(section, index), ...]`` of every shard not yet written; empty once the manifest can be written."""
        return [(section, index) for section in SECTIONS for index, _, _ in self.pending(section)]

    def write_shard(self, section: str, index: int, tensors: Dict[str, torch.Tensor],
                    summaries: Optional[Sequence[str]] = None) -> None:
        """Write shard ``index`` of ``section`` (tensors cast to the plan's dtype) atomically."""
        start, stop = shard_bounds(len(self.plan[section]), self.plan["shard_rows"])[index]
        for key, tensor in tensors.items():
            if tensor.shape[0] != stop - start:
                raise ValueError(f"{section} shard {index}: '{key}' has {tensor.shape[0]} rows, expected {stop - start}")
        metadata = {"plan_hash": self.hash, "section": section, "start": str(start)}
        if summaries is not None:
            metadata["summaries"] = json.dumps(list(summaries), ensure_ascii=False)
        save_tensors_atomic(os.path.join(self.folder, shard_name(section, index)),
                            {key: tensor.detach().to("cpu", self.dtype) for key, tensor in tensors.items()},
                            metadata)

    def finish(self, w_s: torch.Tensor, summary_model: str = "") -> None:
        """Write ``scorer.safetensors``, ``summaries.jsonl`` (if planned) and then ``manifest.json``.

        Args:
            w_s: W^s of Eq. (4), [d, d] (the ``nn.Linear`` weight).
            summary_model: recorded as the ``model`` field of each summary record (e.g. the checkpoint name).
        """
        missing = self.missing()
        if missing:
            raise ExportFormatError(f"{self.folder}: cannot finish, shards not written: {missing[:5]}")
        save_tensors_atomic(os.path.join(self.folder, SCORER_FILE), {"w_s": w_s.detach().to("cpu", torch.float32)},
                            {"plan_hash": self.hash})
        if self.plan["summaries"]:
            summaries_file = os.path.join(self.folder, SUMMARIES_FILE)
            with naming(summaries_file), JsonlFile(summaries_file) as out:
                for index, start, _ in self.shards("users"):
                    summaries = json.loads(self._shard_metadata("users", index)["summaries"])
                    for user, summary in zip(self.plan["users"][start:], summaries):
                        out.write(make_record(user, summary, SUMMARY_BACKEND, summary_model, ""))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "plan_hash": self.hash,
            "sizes": self.plan["sizes"],
            "dtype": self.plan["dtype"],
            "scorer": SCORER_FILE,
            "summaries": SUMMARIES_FILE if self.plan["summaries"] else None,
        }
        for section in SECTIONS:
            manifest[section] = {"count": len(self.plan[section]),
                                 "shards": [shard_name(section, index) for index, _, _ in self.shards(section)]}
        with naming(os.path.join(self.folder, MANIFEST_FILE)):
            write_json(os.path.join(self.folder, MANIFEST_FILE), manifest)
