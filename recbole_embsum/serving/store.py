"""Scoring from exported poly-embeddings: :class:`EmbeddingStore` opens export folders and ranks candidates.

Only Eqs. (3)-(4) run online: the UPE ``A`` [m, d] of the user, and for each candidate its CPE ``B`` [n, d] and the
precomputed ``gelu(B W^s)`` [n, d], go through :func:`recbole_embsum.model.scorer.poly_score_grid`, a block of
candidates at a time for all users together. Shards are memory-mapped
(safetensors), so opening a store reads only JSON, and :meth:`EmbeddingStore.topk` streams the catalogue in chunks
of ``chunk_size`` items with a running top-k: memory grows with the chunk, not with the catalogue.

Several folders can be opened together (``EmbeddingStore(main_dir, cold_start_dir)``): a later folder adds items and
users and overrides earlier embeddings of the same raw id. All must come from the same model (same ``W^s``).
"""
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from recbole_embsum.model.scorer import poly_score_grid
from recbole_embsum.summaries.store import load_summaries

from .layout import (FORMAT, MANIFEST_FILE, PLAN_FILE, SCORER_FILE, SECTIONS, VERSION, ExportFormatError, plan_hash,
                     open_tensors, read_json, shard_bounds, shard_name)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 8192


class RunningTopK:
    """The ``k`` best (score, position) pairs seen so far over a stream of score chunks; memory O(k + chunk)."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.scores = torch.empty(0)  # [<= k], best first
        self.positions = torch.empty(0, dtype=torch.long)  # [<= k], global positions in the stream

    def update(self, scores: torch.Tensor, first_position: int) -> None:
        """Merge a chunk of ``scores`` [c] whose first element is stream position ``first_position``.

        ``-inf`` scores (masked rows) are never kept.
        """
        positions = torch.arange(first_position, first_position + scores.numel())
        keep = scores > float("-inf")
        scores = torch.cat([self.scores, scores[keep]])
        positions = torch.cat([self.positions, positions[keep]])
        best = torch.topk(scores, min(self.k, scores.numel()), sorted=True)
        self.scores, self.positions = best.values, positions[best.indices]


class ExportFolder:
    """One complete export folder (see :mod:`recbole_embsum.serving.layout`), memory-mapped."""

    def __init__(self, folder: str):
        self.folder = os.fspath(folder)
        manifest_path = os.path.join(self.folder, MANIFEST_FILE)
        if not os.path.exists(manifest_path):
            hint = " (an export was started here but has not finished; rerun it to resume)" if os.path.exists(
                os.path.join(self.folder, PLAN_FILE)) else ""
            raise ExportFormatError(f"{manifest_path}: missing, {self.folder} is not a complete export{hint}")
        self.manifest = read_json(manifest_path, "the export's manifest")
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise ExportFormatError(f"{manifest_path}: format {self.manifest.get('format')!r} version "
                                    f"{self.manifest.get('version')!r}, expected {FORMAT!r} version {VERSION}")
        self.plan = read_json(os.path.join(self.folder, PLAN_FILE), "the export's plan")
        if plan_hash(self.plan) != self.manifest["plan_hash"]:
            raise ExportFormatError(f"{os.path.join(self.folder, PLAN_FILE)}: does not match {manifest_path} "
                                    "(plan_hash differs); the folder mixes two exports")
        self.sizes = self.plan["sizes"]  # {"m", "n", "d"}
        self.ids = {section: self.plan[section] for section in SECTIONS}
        self._shards = {section: self._open_shards(section) for section in SECTIONS}
        self._index: Dict[str, Dict[str, int]] = {}
        with open_tensors(os.path.join(self.folder, SCORER_FILE)) as handle:
            self.w_s = handle.get_tensor("w_s").float()  # W^s, [d, d]
        summaries = self.manifest.get("summaries")
        self.summaries = load_summaries(os.path.join(self.folder, summaries)) if summaries else {}

    def _open_shards(self, section: str) -> List[Dict[str, torch.Tensor]]:
        """Memory-map every shard of ``section``; checks file names, plan hash and row counts."""
        expected = shard_bounds(len(self.ids[section]), self.plan["shard_rows"])
        names = self.manifest[section]["shards"]
        if names != [shard_name(section, i) for i in range(len(expected))]:
            raise ExportFormatError(f"{os.path.join(self.folder, MANIFEST_FILE)}: {section} shards {names} do not "
                                    f"match the {len(expected)} shards of the plan")
        shards = []
        for name, (start, stop) in zip(names, expected):
            path = os.path.join(self.folder, name)
            with open_tensors(path) as handle:
                if (handle.metadata() or {}).get("plan_hash") != self.manifest["plan_hash"]:
                    raise ExportFormatError(f"{path}: written by another export (plan_hash differs)")
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # mmap-backed, nothing read yet
            if tensors["poly"].shape[0] != stop - start:
                raise ExportFormatError(f"{path}: {tensors['poly'].shape[0]} rows, the plan says {stop - start}")
            shards.append(tensors)
        return shards

    def index(self, section: str) -> Dict[str, int]:
        """Raw id -> row of ``section`` (built on first use)."""
        if section not in self._index:
            self._index[section] = {raw: row for row, raw in enumerate(self.ids[section])}
        return self._index[section]

    def rows(self, section: str, key: str, rows: Sequence[int]) -> torch.Tensor:
        """Tensor ``key`` of the given rows of ``section``, as float32 [len(rows), codes, d]."""
        shard_rows = self.plan["shard_rows"]
        out = torch.empty(len(rows), self.sizes["n" if section == "items" else "m"], self.sizes["d"])
        rows = torch.as_tensor(list(rows), dtype=torch.long)
        for shard in torch.unique(rows // shard_rows).tolist():
            where = (rows // shard_rows == shard).nonzero(as_tuple=True)[0]
            out[where] = self._shards[section][shard][key][rows[where] - shard * shard_rows].float()
        return out

    def item_chunks(self, chunk_size: int) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(first row, B [c, n, d], gelu(B W^s) [c, n, d])`` over all items, at most ``chunk_size`` rows."""
        start = 0
        for shard in self._shards["items"]:
            rows = shard["poly"].shape[0]
            for lo in range(0, rows, chunk_size):
                hi = min(lo + chunk_size, rows)
                yield start + lo, shard["poly"][lo:hi].float(), shard["keys"][lo:hi].float()
            start += rows


class EmbeddingStore:
    """Score users against items from one or more export folders (later folders override earlier raw ids).

    Example::

        store = EmbeddingStore("exports/mind")
        store.score("U13740", ["N55189", "N42782"])   # tensor of 2 scores, Eqs. (3)-(4)
        store.topk("U13740", k=10)                     # [(item id, score), ...] best first
    """

    def __init__(self, *folders: str):
        if not folders:
            raise ValueError("EmbeddingStore needs at least one export folder")
        self.folders = [ExportFolder(folder) for folder in folders]
        first = self.folders[0]
        for other in self.folders[1:]:
            if other.sizes != first.sizes or not torch.equal(other.w_s, first.w_s):
                raise ExportFormatError(f"{other.folder} and {first.folder} come from different models "
                                        f"(sizes {other.sizes} vs {first.sizes}, or a different W^s)")
        self.sizes = first.sizes
        self._shadowed: Dict[int, Optional[torch.Tensor]] = {}
        self.n_items = len(set().union(*(folder.ids["items"] for folder in self.folders)))  # distinct item ids

    def _locate(self, section: str, raw_id: str) -> Optional[Tuple[ExportFolder, int]]:
        for folder in reversed(self.folders):
            row = folder.index(section).get(raw_id)
            if row is not None:
                return folder, row
        return None

    def _unknown(self, section: str, raw_ids: Sequence[str]) -> KeyError:
        kind, option = ("item", "--items news.tsv") if section == "items" else ("user", "--users behaviors.tsv")
        where = ", ".join(folder.folder for folder in self.folders)
        return KeyError(f"unknown {kind}(s) {', '.join(map(repr, raw_ids[:5]))}"
                        f"{' and more' if len(raw_ids) > 5 else ''}: not in the export(s) {where}; embed new "
                        f"{kind}s with `recbole-embsum export {option}`")

    def user_poly(self, user: str) -> torch.Tensor:
        """The stored UPE ``A`` of ``user``: [m, d] float32."""
        return self.user_polys([user])[0]

    def user_polys(self, users: Sequence[str]) -> torch.Tensor:
        """The stored UPEs ``A`` of ``users``: [U, m, d] float32."""
        return self._gather("users", users, ("poly",))[0]

    def item_poly(self, items: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The stored CPE ``B`` and ``gelu(B W^s)`` of ``items``: two [N, n, d] float32 tensors."""
        poly, keys = self._gather("items", items, ("poly", "keys"))
        return poly, keys

    def _gather(self, section: str, raw_ids: Sequence[str], keys: Sequence[str]) -> List[torch.Tensor]:
        """Tensors ``keys`` of the rows of ``raw_ids`` in ``section``, each [N, codes, d] float32, read per folder."""
        raw_ids = [str(raw) for raw in raw_ids]
        located = [self._locate(section, raw) for raw in raw_ids]
        missing = [raw for raw, found in zip(raw_ids, located) if found is None]
        if missing:
            raise self._unknown(section, missing)
        codes = self.sizes["n" if section == "items" else "m"]
        out = [torch.empty(len(raw_ids), codes, self.sizes["d"]) for _ in keys]
        for folder in self.folders:
            picks = [(i, row) for i, (owner, row) in enumerate(located) if owner is folder]
            if picks:
                where, rows = zip(*picks)
                for tensor, key in zip(out, keys):
                    tensor[list(where)] = folder.rows(section, key, rows)
        return out

    def score(self, user: str, candidates: Sequence[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
        """Relevance scores s (Eqs. (3)-(4)) of ``candidates`` for ``user``: [len(candidates)], float32.

        Candidates are gathered ``chunk_size`` at a time, so a long list costs one chunk of embeddings in memory.
        """
        user_poly = self.user_poly(user)  # A: [m, d]
        scores = []
        for start in range(0, len(candidates), chunk_size):
            item_poly, item_keys = self.item_poly(candidates[start:start + chunk_size])  # B, gelu(B W^s): [c, n, d]
            scores.append(poly_score_grid(user_poly[None], item_poly, item_keys)[0])  # [c]
        return torch.cat(scores) if scores else torch.empty(0)

    def iter_scores(self, users: Sequence[str],
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[Tuple[int, torch.Tensor]]:
        """Stream the scores of ``users`` against the whole catalogue, ``chunk_size`` items at a time.

        Yields ``(first position, scores [U, c])``; positions run over the folders' items in order (see
        :meth:`item_at`), and an item overridden by a later folder scores ``-inf`` at its earlier position.
        Each chunk is read from the shards once, for all users.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        user_polys = self.user_polys(users)  # A of each user: [U, m, d]
        offset = 0
        for i, folder in enumerate(self.folders):
            shadowed = self._shadowed_rows(i)
            for start, item_poly, item_keys in folder.item_chunks(chunk_size):
                scores = poly_score_grid(user_polys, item_poly, item_keys)  # Eqs. (3)-(4): [U, c]
                if shadowed is not None:
                    scores[:, shadowed[start:start + scores.size(1)]] = float("-inf")
                yield offset + start, scores
            offset += len(folder.ids["items"])

    def item_at(self, position: int) -> str:
        """The raw item id at a stream position of :meth:`iter_scores`."""
        for folder in self.folders:
            if position < len(folder.ids["items"]):
                return folder.ids["items"][position]
            position -= len(folder.ids["items"])
        raise IndexError(f"item position out of range: {position}")

    def topk(self, user: str, k: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> List[Tuple[str, float]]:
        """The ``k`` best items of the catalogue for ``user``, best first, streaming ``chunk_size`` items at a time
        (memory: one chunk plus ``k``)."""
        best = RunningTopK(k)
        for position, scores in self.iter_scores([user], chunk_size):
            best.update(scores[0], position)
        return [(self.item_at(pos), score) for score, pos in zip(best.scores.tolist(), best.positions.tolist())]

    def _shadowed_rows(self, i: int) -> Optional[torch.Tensor]:
        """Bool mask [rows] of folder ``i``'s items that a later folder overrides (None when there are none)."""
        if i not in self._shadowed:
            later = set().union(*(folder.ids["items"] for folder in self.folders[i + 1:]))
            self._shadowed[i] = torch.tensor([raw in later for raw in self.folders[i].ids["items"]],
                                             dtype=torch.bool) if later else None
        return self._shadowed[i]

    def summary(self, user: str) -> Optional[str]:
        """The interest summary stored with ``user``'s embedding by ``export --summaries``, or None."""
        found = self._locate("users", str(user))
        if found is None:
            raise self._unknown("users", [str(user)])
        return found[0].summaries.get(str(user))
