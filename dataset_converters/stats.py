"""The stats report of a converted dataset, shaped like the paper's Table 4 (Appendix C).

Per split: items, users, new users (users absent from train), positives, negatives, impressions, rows and history
length; per dataset: items, categories, average whitespace tokens per title / abstract, history per user; plus what
was skipped or dropped (bad lines, unknown ids, empty histories).
"""
import collections

# How many distinct unknown ids are kept as examples per kind.
_UNKNOWN_EXAMPLES = 5


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

    def to_dict(self, train_users):
        return {
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
        return {
            "source": self.source,
            "options": dict(self.options),
            "splits": {name: split.to_dict(None if name == "train" else train_users)
                       for name, split in self.splits.items()},
            "items": self.items,
            "categories": len(self.categories - {""}),
            "subcategories": len(self.subcategories - {""}),
            "tokens_per_title": _mean(self.title_tokens, self.items),
            "tokens_per_abstract": _mean(self.abstract_tokens, self.items),
            "history_per_user": _mean(sum(self.user_history.values()), len(self.user_history)),
            "unknown_ids": self.unknown.to_dict(),
            "bad_lines": dict(self.bad_lines),
            **self.notes,
        }


def _mean(total, count):
    return round(total / count, 2) if count else 0.0


def format_table(report):
    """The report as a small text table (rows of Table 4, one column per split)."""
    splits = list(report["splits"])
    rows = [("", splits)]
    for key, label in (("items", "# items"), ("users", "# users"), ("new_users", "# new users"),
                       ("impressions", "# impressions"), ("positives", "# positive"), ("negatives", "# negative"),
                       ("rows", "# rows written"), ("history_len_mean", "history len / row"),
                       ("empty_history_rows", "# rows, empty history"),
                       ("dropped_empty_history", "# dropped, empty history")):
        rows.append((label, ["-" if report["splits"][s][key] is None else report["splits"][s][key] for s in splits]))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  " + "  ".join(f"{value!s:>12}" for value in values) for label, values in rows]
    lines += [
        f"{'# items (all)':<{width}}  {report['items']:>12}",
        f"{'# category':<{width}}  {report['categories']:>12}",
        f"{'# history/user':<{width}}  {report['history_per_user']:>12}",
        f"{'# tokens/title':<{width}}  {report['tokens_per_title']:>12}",
        f"{'# tokens/abstract':<{width}}  {report['tokens_per_abstract']:>12}",
    ]
    for kind, info in report["unknown_ids"].items():
        lines.append(f"unknown {kind} ids dropped: {info['count']} (e.g. {', '.join(info['examples'])})")
    for path, count in report["bad_lines"].items():
        lines.append(f"bad lines skipped in {path}: {count}")
    return "\n".join(lines)
