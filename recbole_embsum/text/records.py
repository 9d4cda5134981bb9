"""Reading ``<dataset>.text.jsonl``, the item text every content model and the summary prompts start from (no torch,
so the summarize command stays light). Tokenisation lives in :mod:`.items`."""
import os
from typing import Dict

from .jsonl import parse_object

ITEM_TEXT_FIELDS = ("item_id", "title", "abstract", "category", "subcategory")


def item_text_path(data_path: str, dataset: str) -> str:
    """``<data_path>/<dataset>.text.jsonl`` (``data_path`` is RecBole's per-dataset folder)."""
    return os.path.join(data_path, f"{dataset}.text.jsonl")


class ItemTextError(ValueError):
    """A ``.text.jsonl`` line that does not follow the contract; the message names file, line and field."""


def load_item_texts(path) -> Dict[str, dict]:
    """Map raw item id -> its text record from a ``.text.jsonl`` file (blank lines skipped).

    Each record has ``item_id`` (a non-empty string) and ``title``, ``abstract``, ``category``, ``subcategory`` as
    strings (missing or null read as ""); any other fields (e.g. entities) are kept as they are.

    Raises:
        ItemTextError: naming the file, line and field of a malformed line.
    """
    texts = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = parse_object(line, path, line_no, ItemTextError)
            if not isinstance(record.get("item_id"), str) or not record["item_id"]:
                raise ItemTextError(f"{path}, line {line_no}, field 'item_id': missing or not a non-empty string")
            for field in ITEM_TEXT_FIELDS[1:]:
                value = record.get(field) or ""
                if not isinstance(value, str):
                    raise ItemTextError(f"{path}, line {line_no}, field '{field}': expected a string, "
                                        f"got {type(value).__name__}")
                record[field] = value
            texts[record["item_id"]] = record
    return texts
