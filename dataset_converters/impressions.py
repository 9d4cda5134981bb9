"""Turning impressions into the rows of the data contract (docs/design.md), shared by every converter.

* train: one row per click; `neg_items` = at most `max_negatives` non-clicked items of the same impression, chosen by
  `sample_negatives` (deterministic: it depends only on the seed and the impression id).
* valid / test / predict: one row per candidate with its label (predict: label 0); `neg_items` empty.
* `item_id_list`: the history, chronological, the most recent `history_len` items kept.
* `--empty-history drop` leaves out rows whose history is empty (in train, valid and test; predict keeps them all,
  since every candidate needs a score), counted in the stats either way.
* Layout (`--layout`): "store" (default, format 2) writes `item_id_list` and `neg_items` once per group of rows that
  share them into `<name>.store/` (dataset_converters/store.py) and only the scalar columns into the `.inter` files;
  "inline" (format 1) writes both as token_seq columns of every row, files that RecBole reads without this plugin.
* A training impression without any non-clicked item would add a zero to the NCE mean (Eq. (5) has nothing to
  contrast the click with): it gets `fill_negatives` items the user never engaged with (`sample_unseen`: uniform over
  the catalogue, deterministic per seed and impression id), counted in the stats as `sampled_negative_impressions`.
* Every split of train/valid/test must end with rows; an input that leaves one empty (an empty file, every id
  unknown) stops the conversion with the counts, before anything is written.
"""
import dataclasses
import os
import random
import sys
import zlib

from .atomic import (INTER_FIELDS, ITEM_FIELDS, STORE_INTER_FIELDS, AtomicFile, AtomicTable, JsonlFile, clean_cell,
                     format_float, write_json)
from .outputs import describe_output_error
from .reading import BadLineError
from .recbole_yaml import dataset_yaml_text
from .staging import StagedFolder, check_name
from .stats import DatasetStats, drop_warnings, format_table
from .store import StoreWriter

BENCHMARK_SPLITS = ("train", "valid", "test")
LAYOUTS = ("store", "inline")


@dataclasses.dataclass
class ConvertOptions:
    """Options shared by every converter (the CLI flags of the same names)."""

    name: str
    history_len: int = 60
    max_negatives: int = 50
    empty_history: str = "keep"  # "keep" or "drop"
    skip_bad_lines: bool = False
    overwrite: bool = False
    seed: int = 0
    layout: str = "store"  # "store" (format 2) or "inline" (format 1)
    fill_negatives: int = 10

    def __post_init__(self):
        check_name(self.name)
        if self.empty_history not in ("keep", "drop"):
            raise ValueError(f"empty_history must be 'keep' or 'drop', got {self.empty_history!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.history_len < 1 or self.max_negatives < 0 or self.fill_negatives < 0:
            raise ValueError("--history-len must be >= 1, --max-negatives and --fill-negatives >= 0")


def sample_negatives(negatives, k, key, seed=0):
    """At most `k` of `negatives`, kept in their original order; which ones depends only on `(seed, key)`."""
    if len(negatives) <= k:
        return list(negatives)
    rng = random.Random(zlib.crc32(f"{seed}:{key}".encode("utf-8")))
    chosen = sorted(rng.sample(range(len(negatives)), k))
    return [negatives[i] for i in chosen]


def sample_unseen(catalogue, seen, k, key, seed=0):
    """At most `k` distinct items of `catalogue` (a list) not in `seen`, uniform; depends only on `(seed, key)`.

    Rejection sampling with a bounded number of draws, so a user who has seen nearly everything gets fewer.
    """
    rng = random.Random(zlib.crc32(f"{seed}:unseen:{key}".encode("utf-8")))
    chosen, picked = [], set()
    for _ in range(20 * k):
        if len(chosen) == k or not catalogue:
            break
        item = catalogue[rng.randrange(len(catalogue))]
        if item not in seen and item not in picked:
            picked.add(item)
            chosen.append(item)
    return chosen


class ImpressionWriter:
    """Owns one output folder: the split `.inter` files, `.item`, `.text.jsonl`, `<name>.yaml` and the stats report.

    Use as a context manager. Everything is written into a staging folder (`staging.StagedFolder`) that replaces
    `<output>/<name>/` only when the block ends without an exception; until then an existing dataset is untouched.
    """

    def __init__(self, output, options, source):
        self.options = options
        self.source = source
        self.output = os.fspath(output)
        self._stage = StagedFolder(output, options.name, options.overwrite)
        self.folder = self._stage.path
        recorded = dataclasses.asdict(options)
        del recorded["overwrite"]  # not a property of the output: same input + options -> same bytes
        self.stats = DatasetStats(source, recorded)
        self._tables = {}
        self._handles = []
        self._catalogue = []  # item ids in written order: the pool of sampled negatives

    def path(self, suffix):
        return os.path.join(self.folder, self.options.name + suffix)

    def __enter__(self):
        self._stage.__enter__()
        try:
            self._items = self._open(AtomicTable(self.path(".item"), ITEM_FIELDS))
            self._texts = self._open(JsonlFile(self.path(".text.jsonl")))
            self._store = self._open(StoreWriter(self.folder, self.options.name)) \
                if self.options.layout == "store" else None
            for split in BENCHMARK_SPLITS:
                self._table(split)
                self.stats.split(split)  # report order: train, valid, test (then predict)
        except BaseException as error:
            self.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def _open(self, handle):
        handle.__enter__()
        self._handles.append(handle)
        return handle

    def _table(self, split):
        if split not in self._tables:
            fields = STORE_INTER_FIELDS if self._store is not None else INTER_FIELDS
            self._tables[split] = self._open(AtomicTable(self.path(f".{split}.inter"), fields))
        return self._tables[split]

    def __exit__(self, exc_type, exc, tb):
        error = exc
        for handle in self._handles:  # all of them, even after one fails (e.g. a full disk while flushing)
            try:
                handle.__exit__(type(error) if error else None, error, None)
            except Exception as close_error:  # noqa: PERF203
                error = error or close_error
        try:
            if error is None:
                self._stage.commit()
        except Exception as commit_error:
            error = commit_error
        finally:
            self._stage.__exit__(type(error) if error else None, error, None)
        if error is not None and error is not exc:
            raise error
        return False

    # -- items ---------------------------------------------------------------------------------------------------
    def item(self, item_id, title, abstract, category, subcategory, **extra):
        """One item: categorical features to `.item`, exact text to `.text.jsonl` (with `extra` fields, e.g. MIND's
        title/abstract entity ids)."""
        self._catalogue.append(item_id)
        self._items.write((item_id, category, subcategory))
        self._texts.write({"item_id": item_id, "title": title, "abstract": abstract,
                           "category": category, "subcategory": subcategory, **extra})
        self.stats.add_item(title, abstract, category, subcategory)

    # -- rows ----------------------------------------------------------------------------------------------------
    def _kept_history(self, split, user, history, rows):
        """The history kept for `rows` rows (the most recent `history_len`), or None when they are dropped."""
        stats = self.stats.split(split)
        if not history:
            if self.options.empty_history == "drop" and split != "predict":
                stats.dropped_empty_history += rows
                return None
            stats.empty_history_rows += rows
        self.stats.observe_history(user, len(history))
        kept = history[-self.options.history_len:]
        stats.history_total += len(kept) * rows
        return kept

    def _group(self, split, history, negatives, rows):
        """The rows' `item_id_list` and `neg_items` cells: written to the store once (empty cells), or joined."""
        if self._store is not None:
            self._store.group(split, history, negatives, rows)
            return None, None
        return " ".join(history), " ".join(negatives)

    def train_impression(self, impression_id, user, clicks, negatives, seen=()):
        """Train rows: `clicks` = [(item, timestamp, history)], `negatives` = the impression's non-clicked items.

        `seen`: the items the user engaged with (clicked, rated, or in the history), which sampled negatives avoid.
        """
        stats = self.stats.split("train")
        stats.read += 1
        table = self._table("train")
        sampled = []
        if not negatives and self.options.fill_negatives:
            excluded = set(seen)
            excluded.update(x for item, _, history in clicks for x in (item, *history))
            sampled = sample_unseen(self._catalogue, excluded, self.options.fill_negatives, impression_id,
                                    self.options.seed)
        neg_items = sample_negatives(negatives, self.options.max_negatives, impression_id, self.options.seed) \
            if negatives else sampled
        written, rows, group_history = 0, [], None
        for item, timestamp, history in clicks:
            kept = self._kept_history("train", user, history, 1)
            if kept is None:
                continue
            if rows and kept != group_history:  # consecutive clicks with one history share a store group
                self._write_train_group(table, rows, group_history, neg_items)
                rows = []
            group_history = kept
            rows.append((impression_id, user, item, "1", format_float(timestamp)))
            stats.items.add(item)
            written += 1
        if rows:
            self._write_train_group(table, rows, group_history, neg_items)
        if written:
            stats.impressions += 1
            stats.users.add(user)
            stats.rows += written
            stats.positives += written
            stats.negatives += len(negatives)
            stats.items.update(negatives)
            if sampled:
                stats.sampled_negative_impressions += 1
                stats.sampled_negatives += len(sampled)

    def _write_train_group(self, table, rows, history, negatives):
        history_cell, negatives_cell = self._group("train", history, negatives, len(rows))
        for row in rows:
            table.write(row if history_cell is None else row + (history_cell, negatives_cell))

    def eval_impression(self, split, impression_id, user, history, candidates):
        """Valid/test/predict rows: one per candidate; `candidates` = [(item, label, timestamp)]."""
        self.stats.split(split).read += 1
        kept = self._kept_history(split, user, history, len(candidates))
        if kept is None or not candidates:
            return
        history_cell, _ = self._group(split, kept, (), len(candidates))
        impression_cell, user_cell = clean_cell(impression_id), clean_cell(user)
        tail = () if history_cell is None else (history_cell, "")
        rows = [(impression_cell, user_cell, clean_cell(item), "1" if label else "0", format_float(timestamp)) + tail
                for item, label, timestamp in candidates]
        self._table(split).write_formatted(rows)
        stats = self.stats.split(split)
        stats.items.update(item for item, _, _ in candidates)
        positives = sum(1 for _, label, _ in candidates if label)
        stats.positives += positives
        stats.negatives += len(candidates) - positives
        stats.impressions += 1
        stats.users.add(user)
        stats.rows += len(candidates)

    def drop_impression(self, split, reason):
        """Counts an impression that yields no row, with the reason (e.g. no candidate left after unknown ids)."""
        stats = self.stats.split(split)
        stats.read += 1
        stats.dropped_impressions += 1
        stats.dropped_reasons[reason] += 1

    # -- report --------------------------------------------------------------------------------------------------
    def finish(self, bad_lines, inputs):
        """Checks that every benchmark split has rows, writes `<name>.stats.json` and `<name>.yaml`; returns the report.

        `inputs`: `{split: description of the input read for it}`, named when a split ends up empty.
        """
        self.stats.bad_lines = bad_lines
        if not self._catalogue:
            raise ValueError(f"no items were read from {inputs['items']}: nothing to convert (empty file, or every "
                             f"line skipped as bad)")
        for split in BENCHMARK_SPLITS:
            stats = self.stats.split(split)
            if not stats.rows:
                raise ValueError(f"no {split} rows left from {inputs[split]} ({stats.read} impressions read, "
                                 f"{stats.dropped_impressions} dropped, "
                                 f"{stats.dropped_empty_history} rows dropped for an empty history); RecBole cannot "
                                 f"train or evaluate on an empty split: check the input files and options")
        report = self.stats.to_dict()
        write_json(self.path(".stats.json"), report)
        with AtomicFile(self.path(".yaml")) as handle:
            handle.write(dataset_yaml_text(self.source, self.options.name, self.options.history_len))
        return {**report, "removed_leftovers": list(self._stage.removed)}  # for the console, not the stats file


def run_conversion(convert, output, name):
    """Runs `convert()` for a CLI: prints the stats table and any large drop, or one error line (exit status 2)."""
    try:
        report = convert()
    except (FileExistsError, FileNotFoundError, BadLineError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable, under-a-file or full --output
        print(f"error: {describe_output_error(error, os.path.join(output, name))}", file=sys.stderr)
        return 2
    print(format_table(report))
    for path in report.get("removed_leftovers", ()):
        print(f"warning: removed {path}, left by an interrupted conversion", file=sys.stderr)
    for line in drop_warnings(report):
        print(f"warning: {line}", file=sys.stderr)
    print(f"written to {os.path.join(output, name)}")
    return 0


def add_common_arguments(parser, default_name):
    """The CLI flags of ConvertOptions, shared by `convert mind` and `convert goodreads`."""
    parser.add_argument("--input", required=True, help="folder holding the raw files as published")
    parser.add_argument("--output", required=True, help="folder that receives <name>/ (RecBole's data_path)")
    parser.add_argument("--name", default=default_name, help="dataset name: folder and file prefix (default: %(default)s)")
    parser.add_argument("--history-len", type=int, default=60,
                        help="most recent history items kept per row (default: %(default)s)")
    parser.add_argument("--max-negatives", type=int, default=50,
                        help="non-clicked items kept per training click, sampled deterministically (default: %(default)s)")
    parser.add_argument("--empty-history", choices=("keep", "drop"), default="keep",
                        help="keep or drop rows whose history is empty; SASRec/GRU4Rec need 'drop' (default: %(default)s)")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="count and report malformed lines instead of stopping at the first one")
    parser.add_argument("--overwrite", action="store_true", help="replace the converted files in an existing folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the negative sampling (default: %(default)s)")
    parser.add_argument("--layout", choices=LAYOUTS, default="store",
                        help="store: histories and negatives once per impression in <name>.store/ (compact, needs "
                             "recbole-embsum to load); inline: in every .inter row, as plain RecBole reads them "
                             "(default: %(default)s)")
    parser.add_argument("--fill-negatives", type=int, default=10,
                        help="a training impression without any non-clicked item gets this many negatives sampled "
                             "from items the user never engaged with; 0 leaves it without (default: %(default)s)")


def options_from_args(args):
    return ConvertOptions(name=args.name, history_len=args.history_len, max_negatives=args.max_negatives,
                          empty_history=args.empty_history, skip_bad_lines=args.skip_bad_lines,
                          overwrite=args.overwrite, seed=args.seed, layout=args.layout,
                          fill_negatives=args.fill_negatives)


def converter_main(dataset, argv=None):
    """`python -m dataset_converters.<dataset> ARGS` is `recbole-embsum convert <dataset> ARGS` (one parser, so the
    same flags, spellings and messages); logs to stderr."""
    import logging

    import recbole_embsum_cli  # the console script: parses without registering EmbSum with RecBole (not needed here)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return recbole_embsum_cli.main(["convert", dataset, *(sys.argv[1:] if argv is None else argv)])
