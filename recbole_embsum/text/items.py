"""Item text and user summaries for content models: reading, templating, truncation and one-time tokenization.

* Item text comes from ``<data_path>/<dataset>.text.jsonl`` (one ``{"item_id", "title", "abstract", "category",
  "subcategory"}`` object per line) and is rendered with the dataset's ``item_template`` (paper Section 3, "Content
  Formatting"), after cutting title and abstract to their token caps (``title_max_tokens``, ``abstract_max_tokens``).
  Those are the only cuts, as in the paper (Section 3, "Implementation"): MIND titles 32 and abstracts 72 tokens,
  Goodreads titles 24 and descriptions 85, "approximately 20 additional tokens for the news category and template"
  (up to 7,440 MIND / 7,740 Goodreads tokens for 60 items). So an item row holds at most title_max_tokens +
  abstract_max_tokens + the template with its category tokens, plus [SOS] and </s>; category and genre are never cut.
* Every item segment starts with the dedicated ``[SOS]`` token (T5 has none; Section 2.3 represents an item by the
  encoder state of its [SOS]) and ends with the tokenizer's EOS.
* Summaries come from ``<data_path>/<dataset>.summaries.jsonl`` (``{"user_id", "summary", ...}``, raw user ids).

Everything is tokenized once into padded ``[rows, L]`` tables; the model keeps them as non-persistent buffers.
"""
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from .records import ITEM_TEXT_FIELDS, ItemTextError, item_text_path, load_item_texts  # noqa: F401 (reading side)

logger = logging.getLogger(__name__)

ITEM_START_TOKEN = "[SOS]"
_TOKENIZE_CHUNK = 4096


def default_summary_path(data_path: str, dataset: str) -> str:
    """``<data_path>/<dataset>.summaries.jsonl``."""
    return os.path.join(data_path, f"{dataset}.summaries.jsonl")


def _chunks(items: Sequence, desc: str) -> Iterator[Sequence]:
    starts = range(0, len(items), _TOKENIZE_CHUNK)
    for start in tqdm(starts, desc=desc, disable=len(starts) < 2, leave=False):
        yield items[start : start + _TOKENIZE_CHUNK]


def truncate_to_tokens(texts: Sequence[str], tokenizer, max_tokens: int) -> List[str]:
    """Cut each text after its ``max_tokens``-th token (character offsets from a fast tokenizer, so text is kept
    verbatim); texts within the cap are returned unchanged."""
    out = []
    for chunk in _chunks(list(texts), "truncating"):
        enc = tokenizer(list(chunk), add_special_tokens=False, return_offsets_mapping=True)
        for text, offsets in zip(chunk, enc["offset_mapping"]):
            out.append(text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]])
    return out


def render_items(records: Sequence[dict], template: str, tokenizer, title_max_tokens: int,
                 abstract_max_tokens: int) -> List[str]:
    """Render each record with ``template`` (e.g. "News Title: {title}; News Abstract: {abstract}; ..."),
    title and abstract cut to their token caps."""
    titles = truncate_to_tokens([str(r.get("title") or "") for r in records], tokenizer, title_max_tokens)
    abstracts = truncate_to_tokens([str(r.get("abstract") or "") for r in records], tokenizer, abstract_max_tokens)
    return [fill_template(template, record, title=title, abstract=abstract)
            for record, title, abstract in zip(records, titles, abstracts)]


def fill_template(template: str, record: dict, **overrides: str) -> str:
    """``template`` filled with the record's text fields (missing ones empty), ``overrides`` taking precedence."""
    fields = {key: str(record.get(key) or "") for key in ITEM_TEXT_FIELDS}
    fields.update(overrides)
    try:
        return template.format_map(fields)
    except KeyError as err:
        raise ValueError(f"item_template {template!r} uses unknown field {err}; "
                         f"available: {', '.join(ITEM_TEXT_FIELDS)}") from None


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows into ([N, L] LongTensor, [N] lengths); L >= 1."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    table = torch.full((len(rows), max(1, int(lengths.max()) if len(rows) else 1)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        table[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return table, lengths


def tokenize_rows(texts: Sequence[str], tokenizer, desc: str) -> List[List[int]]:
    """The token ids of each text, without special tokens, uncut."""
    rows = []
    for chunk in _chunks(list(texts), desc):
        rows.extend(tokenizer(list(chunk), add_special_tokens=False)["input_ids"])
    return rows


def ordered_records(item_tokens: Sequence[str], texts: Dict[str, dict], text_path: str) -> List[dict]:
    """The text record of each RecBole internal item id; index 0 (the padding item "[PAD]") gets ``{}``.

    Args:
        item_tokens: ``dataset.field2id_token["item_id"]``.
        texts: raw item id -> record (from ``load_item_texts(text_path)``).

    Raises:
        ValueError: naming ``text_path`` when dataset items have no text record.
    """
    raw_ids = [str(token) for token in item_tokens[1:]]
    missing = [raw for raw in raw_ids if raw not in texts]
    if missing:
        raise ValueError(f"{text_path}: no text for {len(missing)} of {len(raw_ids)} dataset items "
                         f"(e.g. item_id {', '.join(missing[:5])})")
    return [{}] + [texts[raw] for raw in raw_ids]


def build_item_token_table(item_tokens: Sequence[str], texts: Dict[str, dict], text_path: str, tokenizer,
                           template: str, title_max_tokens: int,
                           abstract_max_tokens: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tokenize every item once: row i is ``[SOS] rendered-text </s>`` for RecBole internal id i, title and abstract
    cut to their caps and nothing else cut (module docstring).

    Args:
        item_tokens: ``dataset.field2id_token["item_id"]`` (index 0 is "[PAD]", which gets ``[SOS] </s>``).
        texts: raw item id -> record (from ``load_item_texts(text_path)``).

    Returns:
        ([n_items, L] token ids, [n_items] lengths).

    Raises:
        ValueError: naming ``text_path`` when dataset items have no text record.
    """
    records = ordered_records(item_tokens, texts, text_path)[1:]
    rendered = [""] + render_items(records, template, tokenizer, title_max_tokens, abstract_max_tokens)
    start_id = tokenizer.convert_tokens_to_ids(ITEM_START_TOKEN)
    rows = [[start_id] + row + [tokenizer.eos_token_id] for row in tokenize_rows(rendered, tokenizer, "tokenizing items")]
    return pad_rows(rows, tokenizer.pad_token_id)


def build_plm_token_table(records: Sequence[dict], tokenizer, field: str, max_tokens: int,
                          pair_field: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tokenize every item once for a PLM encoder, with the family's special tokens: row i is ``[CLS] field [SEP]``
    (BERT; RoBERTa ``<s> field </s>``), or with ``pair_field`` the text pair ``[CLS] field [SEP] pair_field [SEP]``,
    for the records of ``ordered_records`` (row 0, the padding item, holds only the special tokens).

    ``field`` (e.g. the title) is cut to ``max_tokens`` tokens (character offsets: the kept text is verbatim);
    ``pair_field`` (e.g. the category) is never cut.

    Returns:
        ([n_items, L] token ids padded with ``pad_token_id``, [n_items] lengths).
    """
    firsts = truncate_to_tokens([str(r.get(field) or "") for r in records], tokenizer, max_tokens)
    seconds = [str(r.get(pair_field) or "") for r in records] if pair_field else None
    rows = []
    for start in range(0, len(firsts), _TOKENIZE_CHUNK):
        chunk = slice(start, start + _TOKENIZE_CHUNK)
        rows.extend(tokenizer(firsts[chunk], seconds[chunk] if seconds else None)["input_ids"])
    return pad_rows(rows, tokenizer.pad_token_id)


def build_summary_token_table(user_tokens: Sequence[str], summaries: Dict[str, str], tokenizer,
                              max_tokens: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tokenize each user's summary once as decoder labels: ``tokens </s>`` when that fits in ``max_tokens``, else
    the first ``max_tokens`` tokens without ``</s>`` (a cut summary has not ended: the decoder must not learn to stop
    there).

    Row i belongs to RecBole internal user id i; users without a summary (and "[PAD]") get length 0.
    """
    if max_tokens < 1:
        raise ValueError(f"summary_max_tokens must be >= 1, got {max_tokens}")
    texts = [summaries.get(str(token), "") for token in user_tokens]
    rows = tokenize_rows(texts, tokenizer, "tokenizing summaries")
    rows = [(row + [tokenizer.eos_token_id] if len(row) < max_tokens else row[:max_tokens]) if text else []
            for row, text in zip(rows, texts)]
    return pad_rows(rows, tokenizer.pad_token_id)
