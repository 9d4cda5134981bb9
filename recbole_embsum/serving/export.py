"""``recbole-embsum export``: precompute every CPE and UPE of a trained EmbSum and write them to an export folder.

What is exported (format: :mod:`recbole_embsum.serving.layout`):

* default: every item of the dataset (CPE ``B`` and ``gelu(B W^s)``) and every user with an interaction, whose UPE
  ``A`` is computed from the history of their latest row (by timestamp; the last row wins a tie) over all splits;
* cold start, ``items_file`` and/or ``users_file`` given: only those. New items are tokenized with the trained
  model's tokenizer, template and token caps and appended to its item table for the run, so new users' histories
  may mention them; history items known to neither the dataset nor ``items_file`` are dropped (counted in a
  warning). No weight changes: the same encoders embed unseen text.

Users' embeddings are those ``EmbSum.predict`` uses (``user_poly_embeddings`` without a reference summary), so scores
from the export match the model's. With ``summaries`` each user's greedy interest summary
(``EmbSum.generate_summary``) is stored as well, for explanations.

Sharded export: ``num_workers`` processes (ranks of a torch.distributed group, or independent processes/machines
sharing ``output``) each compute every ``num_workers``-th shard; the plan is deterministic, so all agree on it, and
the last to finish writes the manifest (format: :mod:`recbole_embsum.serving.layout`).
"""
import contextlib
import hashlib
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from recbole_embsum.distributed import _rank_and_world
from recbole_embsum.outputs import check_writable_folder
from recbole_embsum.text.items import build_item_token_table

from .inputs import read_histories, read_items
from .writer import ExportWriter, file_sha256, make_plan

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
DEFAULT_SHARD_ROWS = 4096


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and persistent buffers (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@contextlib.contextmanager
def appended_items(model, config, records: Dict[str, dict], source_path: str) -> Iterator[Dict[str, int]]:
    """Append the token rows of unseen items (``records``: raw id -> text record) to ``model``'s item table for the
    duration of the block; yields raw id -> the internal id each new row gets (``n_items``, ``n_items + 1``, ...)."""
    if not records:
        yield {}
        return
    raw_ids = list(records)
    tokens, lengths = build_item_token_table(  # row 0 is the table's [PAD]; rows 1.. are the new items
        ["[PAD]"] + raw_ids, records, source_path, model.tokenizer, config["item_template"],
        config["title_max_tokens"], config["abstract_max_tokens"])
    old_tokens, old_lengths = model.item_tokens, model.item_token_lengths
    width = max(old_tokens.size(1), tokens.size(1))
    pad = model.tokenizer.pad_token_id
    model.item_tokens = torch.cat([  # [n_items + N, width]
        torch.nn.functional.pad(old_tokens, (0, width - old_tokens.size(1)), value=pad),
        torch.nn.functional.pad(tokens[1:].to(old_tokens.device), (0, width - tokens.size(1)), value=pad)])
    model.item_token_lengths = torch.cat([old_lengths, lengths[1:].to(old_lengths.device)])
    try:
        yield {raw: old_tokens.size(0) + i for i, raw in enumerate(raw_ids)}
    finally:
        model.item_tokens, model.item_token_lengths = old_tokens, old_lengths


def dataset_items(dataset, item_field: str) -> Tuple[List[str], torch.Tensor]:
    """Raw ids and internal ids [N] of every dataset item ([PAD] excluded)."""
    raw = [str(token) for token in dataset.field2id_token[item_field][1:]]
    return raw, torch.arange(1, len(raw) + 1)


def dataset_histories(dataset, model) -> Tuple[List[str], torch.Tensor, torch.Tensor]:
    """Raw ids, histories [U, L] and lengths [U] of every user with an interaction, from their latest row."""
    inter = dataset.inter_feat
    users = inter[model.USER_ID].numpy()
    times = inter[dataset.time_field].numpy() if dataset.time_field in inter else np.zeros(len(users))
    order = np.lexsort((np.arange(len(users)), times, users))  # by user, then time, then file order
    last = order[np.r_[users[order][1:] != users[order][:-1], True]]  # each user's latest row
    last = last[users[last] != 0]
    raw = [str(token) for token in dataset.field2id_token[model.USER_ID][users[last]]]
    rows = dataset[torch.as_tensor(last)]  # through Dataset.join, which attaches item_id_list in either data layout
    return raw, rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN]


def file_histories(histories: Dict[str, List[str]], item_index: Dict[str, int],
                   k: int) -> Tuple[List[str], torch.Tensor, torch.Tensor]:
    """Raw ids, histories [U, L] (latest ``k`` known items, chronological) and lengths [U] of cold-start users."""
    raw, rows, dropped = [], [], 0
    for user, history in histories.items():
        known = [item_index[item] for item in history if item in item_index]
        dropped += len(history) - len(known)
        raw.append(user)
        rows.append(known[-k:] if k else [])
    if dropped:
        logger.warning("dropped %d history entries whose items are in neither the dataset nor --items", dropped)
    seq = torch.zeros(len(rows), max([1] + [len(row) for row in rows]), dtype=torch.long)
    for i, row in enumerate(rows):
        seq[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return raw, seq, torch.tensor([len(row) for row in rows], dtype=torch.long)


def worker_slot(num_workers: Optional[int] = None, worker_index: Optional[int] = None) -> Tuple[int, int]:
    """``(num_workers, worker_index)`` of a sharded export, checked; both default to the torch.distributed world
    size and rank when a process group is initialised, else to a single worker (1, 0)."""
    if (num_workers is None) != (worker_index is None) and not (dist.is_available() and dist.is_initialized()):
        raise ValueError("give both num_workers and worker_index (or neither) outside a torch.distributed group")
    worker_index, num_workers = _rank_and_world(worker_index, num_workers)
    if num_workers < 1 or not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, num_workers), got worker {worker_index} of {num_workers}")
    return num_workers, worker_index


def _write_section(writer: ExportWriter, section: str, compute, batch_size: int, num_workers: int,
                   worker_index: int) -> None:
    """Compute and write the pending shards of ``section`` that are this worker's (``index % num_workers ==
    worker_index``); ``compute(start, stop)`` -> (tensors, summaries)."""
    todo = writer.pending(section)
    total = len(writer.shards(section))
    if len(todo) < total:
        logger.info("%s: %d of %d %s shards already written, resuming", writer.folder, total - len(todo), total,
                    section)
    pending = [shard for shard in todo if shard[0] % num_workers == worker_index]
    with tqdm(total=sum(stop - start for _, start, stop in pending), desc=f"exporting {section}",
              unit=section[:-1]) as bar:
        for index, start, stop in pending:
            parts, summaries = [], []
            for lo in range(start, stop, batch_size):
                hi = min(lo + batch_size, stop)
                tensors, texts = compute(lo, hi)
                parts.append(tensors)
                summaries.extend(texts or [])
                bar.update(hi - lo)
            writer.write_shard(section, index, {key: torch.cat([p[key] for p in parts]) for key in parts[0]},
                               summaries if writer.plan["summaries"] and section == "users" else None)


def export_model(model, config, dataset, output: str, items_file: Optional[str] = None,
                 users_file: Optional[str] = None, summaries: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
                 shard_rows: int = DEFAULT_SHARD_ROWS, dtype: str = "float32", overwrite: bool = False,
                 checkpoint: Optional[str] = None, num_workers: Optional[int] = None,
                 worker_index: Optional[int] = None) -> str:
    """Export ``model`` (an EmbSum built on ``dataset``) into ``output``; see the module docstring.

    Resumes an interrupted export of the same plan; returns ``output``. Sharded: worker ``worker_index`` of
    ``num_workers`` (defaults: :func:`worker_slot`) writes only the shards whose index modulo ``num_workers`` is
    ``worker_index``; the manifest is written by whichever run finds every shard present.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    num_workers, worker_index = worker_slot(num_workers, worker_index)
    model.eval()
    device = next(model.parameters()).device
    cold = items_file is not None or users_file is not None
    new_items = read_items(items_file) if items_file else {}
    with appended_items(model, config, new_items, items_file or "") as new_index:
        if cold:
            item_raw, item_ids = list(new_index), torch.tensor(list(new_index.values()), dtype=torch.long)
        else:
            item_raw, item_ids = dataset_items(dataset, model.ITEM_ID)
        if users_file:
            item_index = {**dataset.field2token_id[model.ITEM_ID], **new_index}
            item_index.pop("[PAD]", None)
            user_raw, seqs, lengths = file_histories(read_histories(users_file), item_index, model.max_seq_length)
        elif cold:
            user_raw, seqs, lengths = [], torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        else:
            user_raw, seqs, lengths = dataset_histories(dataset, model)

        with torch.no_grad():
            probe = model.item_poly_embeddings(torch.tensor([1], device=device))  # [1, n, d]
        sizes = {"m": model.upe.codes.size(0), "n": probe.size(1), "d": probe.size(2)}
        inputs = {name: {"file": os.path.basename(path), "sha256": file_sha256(path)}
                  for name, path in (("items", items_file), ("users", users_file)) if path}
        source = {"checkpoint": os.path.basename(checkpoint) if checkpoint else None,
                  "model_sha256": model_fingerprint(model), "inputs": inputs}
        plan = make_plan(source, sizes, item_raw, user_raw, dtype, shard_rows, summaries)
        writer = ExportWriter(output, plan, overwrite=overwrite)
        if writer.complete:
            logger.info("%s already holds this export, complete; nothing to do", output)
            return output

        def items(lo, hi):
            with torch.no_grad():
                poly = model.item_poly_embeddings(item_ids[lo:hi].to(device))  # B: [c, n, d]
                return {"poly": poly, "keys": model.scorer.item_keys(poly)}, None  # gelu(B W^s), Eq. (4)

        def users(lo, hi):
            seq, seq_len = seqs[lo:hi].to(device), lengths[lo:hi].to(device)
            with torch.no_grad():
                poly = model.user_poly_embeddings(seq, seq_len)  # A: [c, m, d]
            texts = model.generate_summary(seq, seq_len) if summaries else None
            return {"poly": poly}, texts

        _write_section(writer, "items", items, batch_size, num_workers, worker_index)
        _write_section(writer, "users", users, batch_size, num_workers, worker_index)
    missing = writer.missing()
    if missing:
        logger.info("worker %d of %d done; %d shards left to other workers, whose run (or a final unsharded "
                    "export over %s) writes the manifest", worker_index, num_workers, len(missing), output)
        return output
    writer.finish(model.scorer.w_s.weight, summary_model=os.path.basename(checkpoint) if checkpoint else "")
    logger.info("exported %d items and %d users to %s", len(item_raw), len(user_raw), output)
    return output


def export_checkpoint(checkpoint: str, output: str, **options) -> str:
    """Load a checkpoint of EmbSum (with its dataset; read weights-only, see :mod:`recbole_embsum.checkpoint`) and
    :func:`export_model` it."""
    from recbole_embsum.checkpoint import load_data_and_model

    check_writable_folder(output)  # before minutes of loading
    config, model, dataset, _, _, _ = load_data_and_model(checkpoint)
    return export_model(model, config, dataset, output, checkpoint=checkpoint, **options)
