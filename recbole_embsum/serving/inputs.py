"""Cold-start inputs of ``recbole-embsum export``: item text and user histories from files the model never saw.

* Items (``--items``): a MIND ``news.tsv`` (news_id, category, subcategory, title, abstract, ...) or a converted
  ``<name>.text.jsonl`` (``{"item_id", "title", "abstract", "category", "subcategory"}`` per line), chosen by the
  file name ending in ``.jsonl``.
* Users (``--users``): a MIND ``behaviors.tsv`` (impression_id, user_id, time, history, impressions). A user's
  history is the History column of their latest impression (by time; a later line wins a tie), oldest first.
Malformed lines raise an error naming the file, the line and the field (the converters' parsers are reused).
"""
import logging
from typing import Dict, List, Tuple

from dataset_converters.mind import parse_behavior, parse_news
from dataset_converters.reading import LineErrors, Source
from recbole_embsum.text.items import ITEM_TEXT_FIELDS, load_item_texts

logger = logging.getLogger(__name__)


def read_items(path: str) -> Dict[str, dict]:
    """Raw item id -> text record (the ``.text.jsonl`` fields), in file order; the first record of an id wins."""
    if path.endswith(".jsonl"):
        return load_item_texts(path)
    source = Source(path)
    records: Dict[str, dict] = {}
    for news_id, category, subcategory, title, abstract, *_ in LineErrors().parse(  # (+ entities)
            source, source.lines("reading items"), parse_news):
        if news_id not in records:
            records[news_id] = dict(zip(ITEM_TEXT_FIELDS, (news_id, title, abstract, category, subcategory)))
    return records


def read_histories(path: str) -> Dict[str, List[str]]:
    """Raw user id -> raw item ids of the user's latest history (oldest first), in order of first appearance."""
    source = Source(path)
    latest: Dict[str, Tuple[float, List[str]]] = {}

    def parse(label, line_no, text):
        return parse_behavior(label, line_no, text, labeled=False)  # labels, if any, are not needed

    for _, user, timestamp, history, _ in LineErrors().parse(source, source.lines("reading behaviors"), parse):
        if user not in latest or timestamp >= latest[user][0]:
            latest[user] = (timestamp, history)
    return {user: history for user, (_, history) in latest.items()}
