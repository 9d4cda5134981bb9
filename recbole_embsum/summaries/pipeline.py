"""Summarise every training user of a converted dataset, resumably, into ``<dataset>.summaries.jsonl``.

Each training user's summary is written from the history before their first training impression, never from a
training click (``history.py``); every record says so in its ``source`` field, and a file written under another rule
(older versions also read the training clicks) is refused like one made with another prompt.

A user is skipped when the file already holds a record for them with the same prompt hash (the hash covers the exact
messages, the model and the backend), so a killed run resumes where it stopped and re-asks nothing already answered.
A file made with another backend, model or prompt is refused, never mixed: start a new file (``output``) or replace
it (``overwrite``). Users whose request failed are reported and, having no record, are asked again on the next run.
"""
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from recbole_embsum.preflight import check_converted_dataset
from recbole_embsum.text.records import load_item_texts
from recbole_embsum.validation import check_dataset_name

from .backends import SummaryJob, backend_identity, make_backend
from .history import ItemText, dataset_file, evaluation_histories, training_engagements
from .prompt import build_messages, domain_for, prompt_hash, resolve_template
from .store import SOURCES, SummaryAppender, check_own_file, load_records, make_record, summaries_path

logger = logging.getLogger(__name__)


class SummaryMismatchError(RuntimeError):
    """The output file holds summaries made with another prompt, model or backend."""


class TooManyFailures(RuntimeError):
    """Many users in a row failed: the backend is down or misconfigured."""


@dataclass
class SummaryReport:
    """What a run did: counts, where the summaries are, and why users failed."""

    path: Path
    backend: str
    model: str
    users: int = 0
    cached: int = 0
    asked: int = 0
    no_history: int = 0  # users with no item before their first training impression (test: in their history)
    no_text: int = 0  # users none of whose items has a line in <dataset>.text.jsonl: nothing to summarise
    failed: dict = field(default_factory=dict)  # user id -> reason
    seconds: float = 0.0


class _Prompts:
    """Builds each user's items, messages and prompt hash from the dataset and the template."""

    def __init__(self, texts, template, options, backend_name, model):
        self.texts = texts
        self.template = template
        self.max_items = options["max_items"]
        self.abstract_words = options["abstract_words"]
        self.backend_name = backend_name
        self.model = model
        self.missing_items = set()

    def job(self, user, engagement):
        known = [item for item in engagement if item in self.texts]
        self.missing_items.update(item for item in engagement if item not in self.texts)
        # Appendix A: the most recent max_items engaged items, most recent first
        items = [self.texts[item] for item in known[::-1][: max(self.max_items, 0)]]
        messages = build_messages(items, self.template, self.abstract_words)
        return SummaryJob(user, messages, items, prompt_hash(messages, self.model, self.backend_name))


def _check_not_mixed(path, records, current_hashes, backend_name, model, source):
    """Raise :class:`SummaryMismatchError` if ``records`` were made with another backend, model, prompt or history
    rule (``source``)."""
    hint = ("Summaries made with different prompts or models are not mixed in one file: pass --overwrite to replace "
            "it, or --output NEW_FILE to start a new one.")
    other_rule = [r for r in records if r.get("source") != source]
    if other_rule:
        found = other_rule[0].get("source", "no recorded source: an older summarize, which also read the users' "
                                            "training clicks, i.e. the training targets")
        raise SummaryMismatchError(
            f"{path} holds {len(other_rule)} summaries written from another history ({found}), but this run writes "
            f"them from the {source.replace('-', ' ')}. {hint}"
        )
    foreign = [r for r in records if (r["backend"], r["model"]) != (backend_name, model)]
    if foreign:
        first = foreign[0]
        raise SummaryMismatchError(
            f"{path} holds {len(foreign)} summaries made by backend {first['backend']!r} model {first['model']!r}, "
            f"but this run uses backend {backend_name!r} model {model!r}. {hint}"
        )
    changed = [r["user_id"] for r in records
               if r["user_id"] in current_hashes and r["prompt_hash"] != current_hashes[r["user_id"]]]
    if changed:
        raise SummaryMismatchError(
            f"{path} holds {len(changed)} summaries whose prompt differs from the one built now (e.g. user "
            f"{changed[0]!r}): the template, the prompt options (max_items, abstract_words) or the training histories "
            f"changed. {hint}"
        )


SPLITS = ("train", "test")


def summarize_dataset(data_path, dataset, options, split="train"):
    """Summarise the training users of ``<data_path>/<dataset>``; ``options`` as from ``resolve_options``.

    ``split="test"`` summarises instead the users of ``<dataset>.test.inter`` who are not in the training split,
    from their test-time history (the references of the paper's Table 3), into ``<dataset>.test.summaries.jsonl``
    by default.

    Returns a :class:`SummaryReport`. Raises :class:`SummaryMismatchError` before asking anything when the output
    file was made differently, :class:`TooManyFailures` or ``BackendFatalError`` when the backend cannot work.
    """
    started = time.monotonic()
    check_dataset_name(dataset)  # the files are <data_path>/<dataset>/<dataset>.*: no way out of data_path
    check_converted_dataset(str(data_path), dataset)  # else one line naming what is there, not a raw Errno 2
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(options["output"]) if options["output"] else summaries_path(data_path, dataset, split)
    records = load_item_texts(dataset_file(data_path, dataset, ".text.jsonl"))
    texts = {item: ItemText.from_record(record) for item, record in records.items()}
    engagements = training_engagements(dataset_file(data_path, dataset, ".train.inter"))
    if split == "test":
        engagements = evaluation_histories(dataset_file(data_path, dataset, ".test.inter"), engagements)
    users = list(engagements)[: options["max_users"]] if options["max_users"] else list(engagements)

    backend_name, model = backend_identity(options["backend"], options)
    template = resolve_template(domain_for(dataset, options["domain"]), options["template"])
    prompts = _Prompts(texts, template, options, backend_name, model)
    report = SummaryReport(path=path, backend=backend_name, model=model, users=len(users))

    # Hashes first (messages are rebuilt lazily below: holding every prompt of a large dataset would not fit).
    hashes = {}
    for user in tqdm(users, desc="building prompts", unit="user", mininterval=1.0, leave=False):
        job = prompts.job(user, engagements[user])
        if job.items:
            hashes[user] = job.prompt_hash
    report.no_history = sum(1 for user in users if not engagements[user])
    report.no_text = len(users) - len(hashes) - report.no_history
    users = [user for user in users if user in hashes]
    if path.exists() and options["overwrite"]:
        logger.warning("--overwrite: replacing %s", path)
        os.remove(path)
    check_own_file(path)  # before reading: a file of another program is refused, not taken for a torn write
    records = load_records(path) if path.exists() else []
    _check_not_mixed(path, records, hashes, backend_name, model, SOURCES[split])
    done = {r["user_id"] for r in records if hashes.get(r["user_id"]) == r["prompt_hash"]}
    report.cached = len(done)
    if prompts.missing_items:
        logger.warning("%d history items have no line in %s.text.jsonl and are left out of the prompts; %d users "
                       "have no item with text and get no summary", len(prompts.missing_items), dataset,
                       report.no_text)
    if report.no_history:
        logger.warning("%d of %d users have an empty history %s and get no summary (they train \"wo L_sum\")",
                       report.no_history, report.users,
                       "before their first training impression" if split == "train" else "at test time")
    pending = (prompts.job(user, engagements[user]) for user in users if user not in done)

    backend = make_backend(backend_name, options, corpus_items=texts.values(), noun=template["noun"])
    logger.info("summarising %d users with backend %s, model %s: %d already in %s",
                len(users), backend_name, model, report.cached, path)
    bar = tqdm(total=len(users), initial=report.cached, desc="summaries", unit="user")
    asking_since = time.monotonic()
    in_a_row = 0
    with SummaryAppender(path) as out:
        try:
            for answer in backend.run(pending):
                user = answer.job.user_id
                if answer.summary is not None:
                    out.append(make_record(user, answer.summary, backend_name, model, answer.job.prompt_hash,
                                           SOURCES[split]))
                    report.asked += 1
                    in_a_row = 0
                else:
                    report.failed[user] = answer.error
                    in_a_row += 1
                    logger.debug("user %s failed: %s", user, answer.error)
                bar.update(1)
                rate = (report.asked + len(report.failed)) / max(time.monotonic() - asking_since, 1e-9)
                bar.set_postfix(cached=report.cached, asked=report.asked, failed=len(report.failed),
                                users_per_s=f"{rate:.2f}", refresh=False)
                if in_a_row >= options["max_consecutive_failures"]:
                    raise TooManyFailures(
                        f"{in_a_row} users in a row failed; last error: {answer.error}. Summaries written so far are "
                        f"kept in {path}; fix the backend and rerun to continue."
                    )
        finally:
            bar.close()
            report.seconds = time.monotonic() - started
    if report.failed:
        sample = "; ".join(f"{user}: {reason}" for user, reason in list(report.failed.items())[:5])
        logger.warning("%d users failed (rerun the same command to retry them). First: %s", len(report.failed), sample)
    logger.info("%s: %d cached, %d asked, %d failed in %.1fs", path, report.cached, report.asked,
                len(report.failed), report.seconds)
    return report
