"""Item inputs of the word-level content models (the baselines trained from scratch): word ids of title and abstract, category ids and title-entity ids, one
row per RecBole internal item id (row 0 = the padding item, all zeros), built once from the item text store
(records in internal-id order from ``items.ordered_records``).

* Words: the word-level tokenizer of ``words.py``, trained on the titles and abstracts of all items.
* Categories: ``category`` and ``subcategory`` strings of the text records, numbered in sorted order from 1
  (0 = none). A dataset whose records have no subcategory (Goodreads) reports it as absent, so models drop that view.
* Entities (MIND): ``title_entities`` in the text records (WikiData ids, kept by the MIND converter), numbered from 1,
  with pretrained vectors from ``<dataset>.entity_embedding.vec`` (MIND's ``entity_embedding.vec``: an id and its
  numbers, tab separated) when that file is there; ids without a vector keep random ones.
"""
import logging
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from tokenizers import Tokenizer

from .words import encode_words, load_or_train_word_tokenizer, text_corpus

logger = logging.getLogger(__name__)

TEXT_FIELDS = ("title", "abstract")
CATEGORY_FIELDS = ("category", "subcategory")
ENTITY_FIELDS = ("title_entities",)


def entity_vectors_path(data_path: str, dataset: str) -> str:
    """``<data_path>/<dataset>.entity_embedding.vec``."""
    return os.path.join(data_path, f"{dataset}.entity_embedding.vec")


class ItemFeatures(NamedTuple):
    """Tensors indexed by internal item id; absent features are None."""

    words: Dict[str, torch.Tensor]  # field -> [n_items, T_field] word ids, 0 = padding
    categories: Dict[str, torch.Tensor]  # field -> [n_items] ids, 0 = none; only fields some item has
    category_counts: Dict[str, int]  # field -> number of ids including 0
    entities: Optional[torch.Tensor]  # [n_items, E] entity ids, 0 = padding; None when no item has entities
    entity_ids: List[str]  # entity id i -> WikiData id (index 0 = padding)
    tokenizer: Tokenizer


def category_ids(records: Sequence[dict], field: str) -> Tuple[torch.Tensor, int]:
    """``field`` (category / subcategory) strings of ``records`` numbered in sorted order from 1 (0 = none): ([n] ids,
    number of ids including 0)."""
    values = sorted({str(r.get(field) or "").strip() for r in records} - {""})
    index = {value: i + 1 for i, value in enumerate(values)}
    ids = torch.tensor([index.get(str(r.get(field) or "").strip(), 0) for r in records], dtype=torch.long)
    return ids, len(values) + 1


def _entity_ids(records: Sequence[dict], max_entities: int):
    lists = [[str(e) for e in (r.get("title_entities") or [])][:max_entities] for r in records]
    names = sorted({e for entities in lists for e in entities})
    if not names:
        return None, ["[PAD]"]
    index = {name: i + 1 for i, name in enumerate(names)}
    table = torch.zeros(len(records), max_entities, dtype=torch.long)
    for row, entities in enumerate(lists):
        table[row, : len(entities)] = torch.tensor([index[e] for e in entities], dtype=torch.long)
    return table, ["[PAD]"] + names


def build_item_features(records: Sequence[dict], cache_prefix: str, max_words: Dict[str, int], vocab_size: int,
                        min_frequency: int, lowercase: bool, max_entities: int) -> ItemFeatures:
    """Word, category and entity tables of ``records`` (from ``ordered_records``).

    Args:
        cache_prefix: ``<data_path>/<dataset>``; the tokenizer is cached as ``<cache_prefix>.words-<key>.json``.
        max_words: text field -> word cap (e.g. {"title": 30, "abstract": 50}); only these fields are encoded.
    """
    tokenizer = load_or_train_word_tokenizer(cache_prefix, text_corpus(records[1:], TEXT_FIELDS), vocab_size,
                                             min_frequency, lowercase)
    words = {field: encode_words(tokenizer, [str(r.get(field) or "") for r in records], cap)
             for field, cap in max_words.items()}
    for table in words.values():
        table[0] = 0  # the padding item has no text
    categories, counts = {}, {}
    for field in CATEGORY_FIELDS:
        ids, count = category_ids(records, field)
        if count > 1:
            categories[field], counts[field] = ids, count
    entities, entity_ids = _entity_ids(records, max_entities)
    return ItemFeatures(words, categories, counts, entities, entity_ids, tokenizer)


def build_entity_embedding(entity_ids: Sequence[str], dim: int, path: str) -> torch.nn.Embedding:
    """Entity embeddings (row 0 = padding): pretrained from ``path`` (MIND ``entity_embedding.vec``) when it exists,
    else random; ids the file lacks keep random vectors (counted in the log).

    Raises:
        ValueError: naming the file and line when a vector's width is not ``dim``.
    """
    embedding = torch.nn.Embedding(len(entity_ids), dim, padding_idx=0)
    torch.nn.init.normal_(embedding.weight, std=0.1)
    index = {name: i for i, name in enumerate(entity_ids) if i > 0}
    found = 0
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle, torch.no_grad():
            for line_no, line in enumerate(handle, start=1):
                fields = line.strip().split()
                if not fields or fields[0] not in index:
                    continue
                if len(fields) != dim + 1:
                    raise ValueError(f"{path}:{line_no}: {len(fields) - 1} numbers for entity {fields[0]}, expected "
                                     f"{dim} (set entity_embedding_size: {len(fields) - 1})")
                embedding.weight[index[fields[0]]] = torch.tensor([float(x) for x in fields[1:]])
                found += 1
        logger.info("entities: %d of %d have a pretrained vector in %s", found, len(index), path)
    else:
        logger.info("entities: no %s; %d entity embeddings start random", path, len(index))
    with torch.no_grad():
        embedding.weight[0].zero_()
    return embedding


__all__ = ["ItemFeatures", "build_entity_embedding", "build_item_features", "category_ids", "entity_vectors_path"]
