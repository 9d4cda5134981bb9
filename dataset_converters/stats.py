"""The stats report of a converted dataset, shaped like the paper's Table 4 (Appendix C).

Per split: items, users, new users (users absent from train), positives, negatives, impressions, rows and history
length; per dataset: items, categories, average whitespace tokens per title / abstract, history per user; plus what
was skipped or dropped (bad lines, unknown ids, empty histories); and, beside ours, the paper's own Table 4 numbers
for the same source, so a conversion can be compared with the paper's splits at a glance.
"""
import collections

# How many distinct unknown ids are kept as examples per kind.
_UNKNOWN_EXAMPLES = 5
# Table 4 of the paper (Appendix C, "Dataset Statistics"); its Dev column is our valid split. Its token counts are
# RoBERTa-base tokens, ours are whitespace-separated words, so those rows compare only roughly.
_TABLE4_SPLIT_ROWS = ("items", "users", "new_users", "positives", "negatives")  # Table 4's per-split rows, in order
_TABLE4_DATASET_ROWS = ("history_per_user", "categories", "tokens_per_title", "tokens_per_abstract")


def _table4(splits, dataset):
    """One source's Table 4 column group: ``splits`` maps a split to its values in ``_TABLE4_SPLIT_ROWS`` order,
    ``dataset`` holds the values in ``_TABLE4_DATASET_ROWS`` order."""
    return {"splits": {name: dict(zip(_TABLE4_SPLIT_ROWS, values)) for name, values in splits.items()},
            **dict(zip(_TABLE4_DATASET_ROWS, dataset))}


PAPER_TABLE4 = {  # split: (items, users, new users, positives, negatives); then history/user, categories, tokens
    "mind": _table4({"train": (51283, 50000, None, 236344, 5607100),
                     "valid": (21352, 6679, 5862, 10775, 249607),
                     "test": (41496, 46549, 41020, 100608, 2380008)}, (22, 18, 17, 50)),
    "goodreads": _table4({"train": (309047, 21450, None, 198403, 458435),
                          "valid": (234232, 16339, 2930, 75445, 141977),
                          "test": (247242, 17967, 3199, 93156, 154016)}, (47, 11, 18, 128)),
}


class SplitStats:
    """Counters for one output split, updated as rows are written."""

    def __init__(self):
        self.items = set()
        self.users = set()
        self.impressions = 0
        self.rows = 0
        self.positives = 0
        self.negatives = 0
        self.history_total = 0  # sum over written rows of the (truncated) history length
        self.empty_history_rows = 0
        self.dropped_empty_history = 0  # rows not written because of --empty-history drop
        self.dropped_impressions = 0  # impressions left without a candidate (or, in train, a click) after unknown ids
        self.dropped_reasons = collections.Counter()
        self.read = 0  # impressions read for this split (written, dropped, or all rows dropped for empty history)
        self.sampled_negative_impressions = 0  # train impressions without negatives that got sampled ones
        self.sampled_negatives = 0

    def to_dict(self, train_users):
        return {
            "impressions_read": self.read,
            "items": len(self.items),
            "users": len(self.users),
            "new_users": None if train_users is None else len(self.users - train_users),
            "impressions": self.impressions,
            "rows": self.rows,
            "positives": self.positives,
            "negatives": self.negatives,
            "history_len_mean": _mean(self.history_total, self.rows),
            "empty_history_rows": self.empty_history_rows,
            "dropped_empty_history": self.dropped_empty_history,
            "dropped_impressions": self.dropped_impressions,
            "dropped_reasons": dict(sorted(self.dropped_reasons.items())),
            "sampled_negative_impressions": self.sampled_negative_impressions,
            "sampled_negatives": self.sampled_negatives,
        }


class UnknownIds:
    """Ids referenced by interactions but missing from the item file, per kind (e.g. "history", "candidate")."""

    def __init__(self):
        self.counts = collections.Counter()
        self.examples = collections.defaultdict(list)

    def add(self, kind, item_id):
        self.counts[kind] += 1
        examples = self.examples[kind]
        if len(examples) < _UNKNOWN_EXAMPLES and item_id not in examples:
            examples.append(item_id)

    def to_dict(self):
        return {kind: {"count": self.counts[kind], "examples": self.examples[kind]} for kind in sorted(self.counts)}


class DatasetStats:
    """Everything the report needs; the converters and `ImpressionWriter` update it."""

    def __init__(self, source, options):
        self.source = source
        self.options = options
        self.splits = collections.OrderedDict()
        self.items = 0
        self.categories = set()
        self.subcategories = set()
        self.title_tokens = 0
        self.abstract_tokens = 0
        self.user_history = {}  # user -> longest (untruncated) history in any written row
        self.unknown = UnknownIds()
        self.bad_lines = {}
        self.notes = {}  # converter-specific facts, e.g. the Goodreads split dates

    def split(self, name):
        if name not in self.splits:
            self.splits[name] = SplitStats()
        return self.splits[name]

    def add_item(self, title, abstract, category, subcategory):
        self.items += 1
        self.categories.add(category)
        self.subcategories.add(subcategory)
        self.title_tokens += len(title.split())
        self.abstract_tokens += len(abstract.split())

    def observe_history(self, user, length):
        if length > self.user_history.get(user, -1):
            self.user_history[user] = length

    def to_dict(self):
        train_users = self.splits["train"].users if "train" in self.splits else set()
        splits = {name: split.to_dict(None if name == "train" else train_users) for name, split in self.splits.items()}
        return {
            "source": self.source,
            "options": dict(self.options),
            "splits": splits,
            "positive_shares": _positive_shares(splits),
            "items": self.items,
            "categories": len(self.categories - {""}),
            "subcategories": len(self.subcategories - {""}),
            "tokens_per_title": _mean(self.title_tokens, self.items),
            "tokens_per_abstract": _mean(self.abstract_tokens, self.items),
            "history_per_user": _mean(sum(self.user_history.values()), len(self.user_history)),
            "unknown_ids": self.unknown.to_dict(),
            "bad_lines": dict(self.bad_lines),
            **self.notes,
            **({"paper_table4": _paper_table4(self.source)} if self.source in PAPER_TABLE4 else {}),
        }


def _mean(total, count):
    return round(total / count, 2) if count else 0.0


def _positive_shares(splits):
    """Share of all train/valid/test positives that each split holds (the proportions Table 4's splits have)."""
    names = [name for name in ("train", "valid", "test") if name in splits]
    total = sum(splits[name]["positives"] for name in names)
    return {name: round(splits[name]["positives"] / total, 4) if total else 0.0 for name in names}


def _paper_table4(source):
    paper = PAPER_TABLE4[source]
    return {**paper, "positive_shares": _positive_shares(paper["splits"]),
            "source": "Zhang et al. 2024, Table 4 (Appendix C); Dev = our valid; tokens are RoBERTa-base tokens"}


def drop_warnings(report):
    """Lines for the console about input that was read but left out: per split and reason, with the counts."""
    lines = []
    unknown = "; ".join(f"{info['count']:,} unknown {kind} ids" for kind, info in report["unknown_ids"].items())
    for name, split in report["splits"].items():
        for reason, count in split["dropped_reasons"].items():
            lines.append(f"{count:,} of {split['impressions_read']:,} {name} impressions dropped: {reason}"
                         + (f" ({unknown})" if "missing" in reason and unknown else ""))
    bad = sum(report["bad_lines"].values())
    if bad:
        lines.append(f"{bad:,} bad lines skipped (--skip-bad-lines); per file in the stats report")
    return lines


def format_table(report):
    """The report as a small text table (rows of Table 4, one column per split, then the paper's columns)."""
    splits = list(report["splits"])
    paper = report.get("paper_table4")
    paper_splits = list(paper["splits"]) if paper else []
    rows = [("", splits + [f"paper {'dev' if s == 'valid' else s}" for s in paper_splits])]

    def cell(value):
        return "-" if value is None else value

    for key, label in (("items", "# items"), ("users", "# users"), ("new_users", "# new users"),
                       ("impressions", "# impressions"), ("positives", "# positive"), ("negatives", "# negative"),
                       ("rows", "# rows written"), ("history_len_mean", "history len / row"),
                       ("empty_history_rows", "# rows, empty history"),
                       ("dropped_empty_history", "# dropped, empty history"),
                       ("sampled_negative_impressions", "# imp. w/ sampled negs")):
        ours = [cell(report["splits"][s].get(key)) for s in splits]
        theirs = [cell(paper["splits"][s].get(key, "")) for s in paper_splits]
        rows.append((label, ours + theirs))
    shares = report.get("positive_shares", {})
    rows.append(("share of positives", [f"{shares[s]:.1%}" if s in shares else "" for s in splits] +
                 [f"{paper['positive_shares'][s]:.1%}" for s in paper_splits]))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  " + "  ".join(f"{value!s:>12}" for value in values) for label, values in rows]
    for key, label in (("items", "# items (all)"), ("categories", "# category"), ("history_per_user", "# history/user"),
                       ("tokens_per_title", "# tokens/title"), ("tokens_per_abstract", "# tokens/abstract")):
        theirs = f"  (paper: {paper[key]})" if paper and key in paper else ""
        lines.append(f"{label:<{width}}  {report[key]:>12}{theirs}")
    repeated = report.get("repeated_ratings")
    if repeated and repeated["count"]:
        lines.append(f"repeated ratings of a (user, book) left out, the latest kept: {repeated['count']}")
    held = report.get("history_only")
    if held:
        lines.append(f"history-only train positives (earliest of each user, not rows): {held['positives']} of "
                     f"{held['users']} users (share {held['share']})")
    for kind, info in report["unknown_ids"].items():
        lines.append(f"unknown {kind} ids dropped: {info['count']} (e.g. {', '.join(info['examples'])})")
    for path, count in report["bad_lines"].items():
        lines.append(f"bad lines skipped in {path}: {count}")
    return "\n".join(lines)
