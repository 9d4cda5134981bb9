"""Quality of EmbSum-generated interest summaries (paper Section 4, Table 3).

From a trained checkpoint, the test users who are not in the training split get a summary written by EmbSum's
decoder from their test-time history (``summaries.history.evaluation_histories``: the same history the model reads
when it scores their test rows, and the one ``recbole-embsum summarize --split test`` gives the reference LLM), and
ROUGE-1/2/L (``rouge.rouge_report``) compares them with those reference summaries. Users without history or without a
reference are left out and counted.
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from dataset_converters.atomic import JsonlFile, write_json
from recbole_embsum.checkpoint import load_data_and_model
from recbole_embsum.outputs import check_writable_folder, naming
from recbole_embsum.summaries.history import dataset_file, evaluation_histories, training_engagements
from recbole_embsum.summaries.store import load_summaries, make_record

from .rouge import ROUGE_TYPES, rouge_report

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("summaries.jsonl", "rouge.json")
BACKEND_NAME = "embsum"  # the "backend" field of the generated records
_ROUGE_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}


@dataclass
class SummaryEvaluation:
    """What ``evaluate_summaries`` did: the users scored, those left out, the ROUGE scores and the output files."""

    users: list
    generated: dict  # user id -> generated summary
    rouge: dict  # rouge type -> RougeScore
    skipped: dict = field(default_factory=dict)  # reason -> number of users
    files: dict = field(default_factory=dict)  # name -> path


def evaluation_users(data_path, dataset, references, max_users=None):
    """``(histories, skipped)``: ``{user: [raw item ids]}`` of the test users not in training that have a history
    and a reference (file order, at most ``max_users``), and ``{reason: count}`` of the others."""
    training = training_engagements(dataset_file(data_path, dataset, ".train.inter"))
    candidates = evaluation_histories(dataset_file(data_path, dataset, ".test.inter"), training)
    skipped = {
        "empty history": sum(1 for items in candidates.values() if not items),
        "no reference summary": sum(1 for user, items in candidates.items() if items and user not in references),
    }
    histories = {user: items for user, items in candidates.items() if items and user in references}
    if max_users:
        histories = dict(list(histories.items())[:max_users])
    return histories, skipped


def history_batch(dataset, histories, max_length):
    """Raw histories -> ``(item_seq [B, L] internal ids, chronological, 0-padded at the end; item_seq_len [B])``,
    each cut to its latest ``max_length`` items."""
    rows = [items[-max_length:] for items in histories]
    width = max(len(row) for row in rows)
    item_seq = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        item_seq[i, : len(row)] = torch.as_tensor(dataset.token2id(dataset.iid_field, row))
    return item_seq, torch.tensor([len(row) for row in rows])


def generate_summaries(model, dataset, histories, batch_size=32, max_new_tokens=None):
    """``{user: summary}`` written greedily by ``model.generate_summary`` for each raw history of ``histories``."""
    model.eval()
    device = next(model.parameters()).device
    users = list(histories)
    generated = {}
    for start in tqdm(range(0, len(users), batch_size), desc="generating summaries", unit="batch", leave=False):
        chunk = users[start : start + batch_size]
        item_seq, item_seq_len = history_batch(dataset, [histories[u] for u in chunk], model.max_seq_length)
        texts = model.generate_summary(item_seq.to(device), item_seq_len.to(device), max_new_tokens)
        generated.update(zip(chunk, (text.strip() for text in texts)))
    return generated


def rouge_table(rouge):
    """Markdown table of ROUGE precision / recall / F1 (in %, as the paper's Table 3 reports them)."""
    lines = ["| metric | precision | recall | F1 |", "|---|---|---|---|"]
    for name in ROUGE_TYPES:
        score = rouge[name]
        lines.append(f"| {_ROUGE_LABELS[name]} | {100 * score.precision:.2f} | {100 * score.recall:.2f} | "
                     f"{100 * score.fmeasure:.2f} |")
    return "\n".join(lines) + "\n"


def _history_hash(items):
    """sha256 of the history a summary was generated from (the records' ``prompt_hash`` field)."""
    return hashlib.sha256(" ".join(items).encode("utf-8")).hexdigest()


def evaluate_summaries(checkpoint, references_path, output, max_users=None, batch_size=32, overwrite=False):
    """Generate summaries for the evaluation users of ``checkpoint``'s dataset and score them against
    ``references_path`` (a summaries JSONL). Writes ``summaries.jsonl`` and ``rouge.json`` to ``output``
    atomically and returns a :class:`SummaryEvaluation`. Refuses to replace those files unless ``overwrite``.
    The checkpoint is read weights-only (:mod:`recbole_embsum.checkpoint`)."""
    paths = {name: os.path.join(output, name) for name in OUTPUT_FILES}
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist; pass --overwrite or another --output")
    if not os.path.exists(references_path):
        raise FileNotFoundError(f"--references: {references_path} does not exist (write it with `recbole-embsum "
                                f"summarize --split test`)")
    references = load_summaries(references_path)
    check_writable_folder(output)  # before minutes of loading and generating

    config, model, dataset, _, _, _ = load_data_and_model(checkpoint)
    if not hasattr(model, "generate_summary"):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}, which writes no summaries (EmbSum does)")
    data_path = os.path.dirname(os.path.normpath(config["data_path"]))  # RecBole's data_path ends in <dataset>
    histories, skipped = evaluation_users(data_path, config["dataset"], references, max_users)
    if not histories:
        raise ValueError(f"no test user outside the training split has both a history and a reference summary in "
                         f"{references_path} (left out: {skipped})")
    generated = generate_summaries(model, dataset, histories, batch_size)
    users = list(histories)
    rouge = rouge_report([generated[u] for u in users], [references[u] for u in users])

    os.makedirs(output, exist_ok=True)
    model_name = os.path.basename(checkpoint)
    with naming(paths["summaries.jsonl"]), JsonlFile(paths["summaries.jsonl"]) as out:
        for user in users:
            out.write(make_record(user, generated[user], BACKEND_NAME, model_name, _history_hash(histories[user])))
    try:
        with naming(paths["rouge.json"]):
            write_json(paths["rouge.json"], {
                "checkpoint": os.path.abspath(checkpoint),
                "references": os.path.abspath(references_path),
                "users": len(users),
                "skipped": skipped,
                **{name: vars(rouge[name]) for name in ROUGE_TYPES},
            })
    except BaseException:  # both files or neither: a rerun must not find half a result and ask for --overwrite
        os.unlink(paths["summaries.jsonl"])
        raise
    logger.info("ROUGE of %d generated summaries written to %s", len(users), paths["rouge.json"])
    return SummaryEvaluation(users, generated, rouge, skipped, paths)
