"""The paper's Appendix A prompt (Figure 2) for LLM-written user-interest summaries.

A prompt is one user message: an instruction framing the task, the user's engaged items from the most recent to the
oldest (at most 60), each with its title, abstract/description (condensed to 100 words) and category, and a closing
request to condense the user's interests into three sentences. There is one template for news (MIND) and one for
books (Goodreads); any part can be overridden from a mapping (config) or a YAML file.

Template keys:
  ``instruction``  text before the list;
  ``item``         one list entry, a ``str.format`` pattern over ``{index}`` (1 = most recent), ``{title}``,
                   ``{abstract}``, ``{category}``, ``{subcategory}``, ``{item_id}``;
  ``closing``      text after the list;
  ``system``       optional system message (empty: none; Mixtral-Instruct has no system role);
  ``noun``         what the items are called, used by the heuristic backend's sentences.
"""
import hashlib
import json
import string
from pathlib import Path

import yaml

TEMPLATES = {
    "news": {
        "system": "",
        "instruction": (
            "You are given the browsing history of a user of a news website: the news articles the user clicked, "
            "listed from the most recent to the oldest. Each article comes with its title, abstract and category. "
            "Read the history and work out what the user is interested in.\n\nHistorical clicked news:"
        ),
        "item": "({index}) Title: {title}\nAbstract: {abstract}\nCategory: {category}",
        "closing": (
            "Based on the news history above, condense the user's interests into three sentences. "
            "Answer with the three sentences only."
        ),
        "noun": "news articles",
    },
    "books": {
        "system": "",
        "instruction": (
            "You are given the reading history of a user of a book-reviewing website: the books the user engaged "
            "with, listed from the most recent to the oldest. Each book comes with its title, description and "
            "genre. Read the history and work out what the user is interested in.\n\nHistorical books:"
        ),
        "item": "({index}) Title: {title}\nDescription: {abstract}\nGenre: {category}",
        "closing": (
            "Based on the reading history above, condense the user's interests into three sentences. "
            "Answer with the three sentences only."
        ),
        "noun": "books",
    },
}
TEMPLATE_KEYS = tuple(TEMPLATES["news"])
ITEM_FIELDS = ("index", "title", "abstract", "category", "subcategory", "item_id")


class TemplateError(ValueError):
    """A template override that cannot be used; the message names its source and key."""


def domain_for(dataset, domain="auto"):
    """``news`` or ``books``: ``auto`` picks ``books`` when the dataset name contains ``goodreads``."""
    if domain == "auto":
        return "books" if "goodreads" in dataset.lower() else "news"
    if domain not in TEMPLATES:
        raise TemplateError(f"unknown summary domain {domain!r}; expected 'auto' or one of {sorted(TEMPLATES)}")
    return domain


def resolve_template(domain, override=None):
    """The template for ``domain`` with ``override`` applied: a mapping, a path to a YAML file, or None."""
    template = dict(TEMPLATES[domain])
    if override is None:
        return template
    source = "template override"
    if isinstance(override, (str, Path)):
        source = str(override)
        with open(override, "r", encoding="utf-8") as handle:
            override = yaml.safe_load(handle)
    if not isinstance(override, dict):
        raise TemplateError(f"{source}: expected a mapping with keys {list(TEMPLATE_KEYS)}")
    for key, value in override.items():
        if key not in TEMPLATE_KEYS:
            raise TemplateError(f"{source}: unknown key '{key}'; expected some of {list(TEMPLATE_KEYS)}")
        if not isinstance(value, str):
            raise TemplateError(f"{source}, key '{key}': expected a string, got {type(value).__name__}")
        template[key] = value
    for _, field, _, _ in string.Formatter().parse(template["item"]):
        if field is not None and field not in ITEM_FIELDS:
            raise TemplateError(f"{source}, key 'item': unknown placeholder {{{field}}}; use some of {ITEM_FIELDS}")
    return template


def condense(text, max_words=100):
    """The first ``max_words`` whitespace-separated words of ``text``, with ``...`` when words were cut (Appendix A)."""
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    return " ".join(words[:max_words]) + " ..."


def build_messages(items, template, abstract_words=100):
    """Chat messages for one user; ``items`` are :class:`ItemText` already ordered most recent first.

    Returns ``[{"role": "system", ...}?, {"role": "user", "content": instruction + items + closing}]``.
    """
    entries = [
        template["item"].format(
            index=index,
            title=" ".join(item.title.split()),
            abstract=condense(item.abstract, abstract_words),
            category=item.category,
            subcategory=item.subcategory,
            item_id=item.item_id,
        )
        for index, item in enumerate(items, start=1)
    ]
    content = "\n\n".join([template["instruction"], *entries, template["closing"]])
    messages = [{"role": "system", "content": template["system"]}] if template["system"] else []
    messages.append({"role": "user", "content": content})
    return messages


def prompt_hash(messages, model, backend):
    """sha256 (hex) of the exact messages, the model name and the backend name."""
    payload = json.dumps({"backend": backend, "model": model, "messages": messages}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
