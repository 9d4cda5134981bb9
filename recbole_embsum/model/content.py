"""``ContentRecommender``: the shared frame of the content-based baselines; ``TwoTowerRecommender``: its two-tower
kind.

Each baseline is a news (item) encoder and a scorer of candidates for a history (the pattern of NewsRecLib and
Legommenders):

* ``ContentRecommender`` (CAUM, MINER): a subclass defines ``encode_items`` (item ids -> vectors) and
  ``score_candidates`` (history vectors + candidate vectors -> scores), so the user side may depend on the candidate.
* ``TwoTowerRecommender`` (NAML, NRMS, Fastformer, MINS, NAML-PLM): a subclass defines ``encode_items`` and
  ``encode_user`` (history vectors -> one user vector); the click predictor is a dot product (``click_score``), so
  a distinct history is encoded once per evaluation batch and full ranking is one matrix product.

This module does the rest the same way for all:

* **Inputs.** ``build_item_inputs`` turns the item text records (internal-id order) into tensors once, kept as
  non-persistent buffers: by default word ids of title/abstract, category ids and title entities
  (``recbole_embsum.text.features``); the PLM baselines (``plm_content.py``) override it with subword token
  tables.
* **History.** The latest ``history_len`` items of ``item_id_list``, oldest first, with a padding mask.
* **Training** as in the papers: each click against ``train_neg_num`` negatives drawn from its impression's
  ``neg_items`` (the same ones EmbSum trains on), softmax cross-entropy over the 1 + K scores (the NCE loss of
  EmbSum's Eq. (5)). Every distinct item of a batch (history and candidates) is encoded once.
* **Evaluation.** All item vectors are computed once per evaluation pass and cached until the weights change or
  ``train()`` is called; ``predict`` scores labeled (history, candidate) rows (two-tower: each distinct history
  encoded once), ``full_sort_predict`` scores every item.
"""
import abc
import logging
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_embsum.text.features import build_entity_embedding, build_item_features, entity_vectors_path
from recbole_embsum.text.items import item_text_path, load_item_texts, ordered_records
from recbole_embsum.text.words import build_word_embedding

from .eval_batching import ItemVectorCache, per_distinct_history
from .layers import TextSelfAttentionEncoder, history_length, latest_items
from .losses import impression_candidates, impression_negatives_count, nce_loss

logger = logging.getLogger(__name__)

CANDIDATE_CHUNK_ROWS = 1 << 15  # full ranking, candidate-aware: (user, candidate, click) rows per call


class ContentRecommender(SequentialRecommender, metaclass=abc.ABCMeta):
    """Base of the content recommenders trained with impression negatives: a news encoder and a (possibly
    candidate-aware) scorer.

    Subclasses set ``text_fields`` (which of title/abstract they read) and implement ``encode_items`` and
    ``score_candidates``; two-tower models derive from :class:`TwoTowerRecommender` instead.
    """

    input_type = InputType.POINTWISE
    training_negatives = "impression"  # trains on the impression's own neg_items (no RecBole negative sampling)
    accepts_empty_history = True  # an empty history is a fully masked one (compat.py)
    candidate_aware = True  # the user side depends on the candidate (no standalone user vector); False: two-tower
    text_fields = ("title",)  # text fields of the item text this model reads

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.history_len = history_length(config, self.max_seq_length)
        self.train_neg_num = impression_negatives_count(config, type(self).__name__)
        self.item_encode_batch_size = config["item_encode_batch_size"] or 1024
        self.data_path, self.dataset_name = config["data_path"], config["dataset"]

        text_path = item_text_path(config["data_path"], config["dataset"])
        records = ordered_records(dataset.field2id_token[self.ITEM_ID], load_item_texts(text_path), text_path)
        self.build_item_inputs(config, records)
        self._item_cache = ItemVectorCache(self.n_items, self.item_encode_batch_size)  # eval item vectors [n_items, D]

    # ----------------------------------------------------------------------------------------------- inputs
    def build_item_inputs(self, config, records: Sequence[dict]) -> None:
        """Item tensors from the text ``records`` (index = internal item id, 0 = padding ``{}``), registered as
        non-persistent buffers. Here: word ids of ``text_fields`` (``item_title`` / ``item_abstract`` [n_items,
        T]), category ids (``item_category`` / ``item_subcategory`` [n_items]) and title entities
        (``item_title_entities`` [n_items, E]) in ``self.features``."""
        max_words = {"title": config["title_max_words"], "abstract": config["abstract_max_words"]}
        self.features = build_item_features(
            records, f"{config['data_path']}/{config['dataset']}",
            {field: max_words[field] for field in self.text_fields}, config["word_vocab_size"],
            config["word_min_frequency"], config["word_lowercase"], config["max_title_entities"] or 5)
        for field, table in self.features.words.items():
            self.register_buffer(f"item_{field}", table, persistent=False)  # [n_items, T_field]
        for field, ids in self.features.categories.items():
            self.register_buffer(f"item_{field}", ids, persistent=False)  # [n_items]
        if self.features.entities is not None:
            self.register_buffer("item_title_entities", self.features.entities, persistent=False)  # [n_items, E]

    def word_embedding(self, config) -> nn.Embedding:
        """The word embedding table (``word_embedding_size``; GloVe / .npy vectors from ``word_embeddings``)."""
        return build_word_embedding(self.features.tokenizer, config["word_embedding_size"], config["word_embeddings"])

    def self_attention_text_encoder(self, config) -> TextSelfAttentionEncoder:
        """NRMS's text encoder over the word embeddings (``attention_heads`` x ``attention_head_size``, additive
        attention ``query_dim``, ``dropout_prob``); NRMS, CAUM and MINS read their texts with it."""
        return TextSelfAttentionEncoder(self.word_embedding(config), config["attention_heads"],
                                        config["attention_head_size"], config["query_dim"], config["dropout_prob"])

    def entity_embedding(self, config) -> Optional[nn.Embedding]:
        """Entity embeddings, or None (logged) when no item of the dataset has title entities."""
        if self.features.entities is None:
            logger.info("%s: the item text has no title_entities, so the entity branch is off", type(self).__name__)
            return None
        path = entity_vectors_path(self.data_path, self.dataset_name)
        return build_entity_embedding(self.features.entity_ids, config["entity_embedding_size"], path)

    def item_inputs(self, item_ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every stored feature of ``item_ids`` [N]: ``title``/``abstract`` [N, T], ``category``/``subcategory``
        [N], ``title_entities`` [N, E] (those the dataset has)."""
        names = list(self.features.words) + list(self.features.categories)
        if self.features.entities is not None:
            names.append("title_entities")
        return {name: getattr(self, f"item_{name}")[item_ids] for name in names}

    # ------------------------------------------------------------------------------------------- the model
    @abc.abstractmethod
    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """News encoder: ``item_ids`` [N] -> item vectors [N, D] (what evaluation caches per item)."""

    @abc.abstractmethod
    def score_candidates(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of candidates [B, C, D] for histories [B, L, D] (oldest first) / mask [B, L] -> [B, C]."""

    # ---------------------------------------------------------------------------------------------- training
    def _history(self, interaction) -> Tuple[torch.Tensor, torch.Tensor]:
        return latest_items(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], self.history_len)

    def training_vectors(self, interaction):
        """Item vectors of a training batch, each distinct item (history or candidate) encoded once: history
        [B, L, D], its mask [B, L], candidates [B, 1+K, D] (column 0 the click, then K impression negatives) and the
        negatives' validity [B, K]."""
        history, mask = self._history(interaction)  # [B, L]
        candidates, valid = impression_candidates(interaction, self.ITEM_ID, self.train_neg_num,
                                                  type(self).__name__)  # [B, 1+K], [B, K]
        unique, inverse = torch.unique(torch.cat([history.flatten(), candidates.flatten()]), return_inverse=True)
        vectors = self.encode_items(unique)[inverse]  # [B*L + B*(1+K), D]
        history_vectors = vectors[: history.numel()].view(*history.shape, -1)  # [B, L, D]
        candidate_vectors = vectors[history.numel():].view(*candidates.shape, -1)  # [B, 1+K, D]
        return history_vectors, mask, candidate_vectors, valid

    def calculate_loss(self, interaction):
        """Softmax cross-entropy of each click against K impression negatives (NCE, EmbSum's Eq. (5))."""
        history, mask, candidates, valid = self.training_vectors(interaction)
        return nce_loss(self.score_candidates(history, mask, candidates), valid)  # scores [B, 1+K]

    # -------------------------------------------------------------------------------------------- evaluation
    def train(self, mode: bool = True):
        """Switching between training and evaluation drops the cached item vectors."""
        self._item_cache.clear()
        return super().train(mode)

    def all_item_vectors(self) -> torch.Tensor:
        """Vectors of every item [n_items, D]: in evaluation each item is encoded once per pass (cached until the
        weights change), in training recomputed with gradients."""
        all_items = torch.arange(self.n_items, device=next(self.parameters()).device)
        if self.training:
            return self.encode_items(all_items)
        return self._item_cache.lookup(all_items, self.encode_items, self)

    def _item_rows(self, items: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Cached vectors of ``ids`` in the model's dtype (the cache keeps the dtype it was computed in, e.g.
        bfloat16 under autocast, and may be read outside autocast later)."""
        return items[ids].to(self.parameter_dtype)

    @property
    def parameter_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def predict(self, interaction):
        """Scores of (history, candidate) rows [R] (RecBole's labeled evaluation); the user side runs per row."""
        items = self.all_item_vectors()  # [n_items, D]
        history, mask = self._history(interaction)  # [R, L]
        candidates = self._item_rows(items, interaction[self.ITEM_ID])  # [R, D]
        return self.score_candidates(self._item_rows(items, history), mask, candidates[:, None]).squeeze(1)

    def full_sort_predict(self, interaction):
        """Scores of every history in the batch against all items -> [B, n_items], in candidate chunks."""
        items = self.all_item_vectors()  # [n_items, D]
        history, mask = self._history(interaction)  # [B, L]
        clicks = self._item_rows(items, history)  # [B, L, D]
        scores = []
        chunk_size = max(1, CANDIDATE_CHUNK_ROWS // max(1, history.numel()))  # B x chunk x L click rows at a time
        for chunk in items.split(chunk_size):  # candidate-aware: the user side runs once per (user, candidate)
            expanded = chunk[None].expand(history.size(0), -1, -1).to(clicks.dtype)  # [B, c, D]
            scores.append(self.score_candidates(clicks, mask, expanded))
        return torch.cat(scores, dim=1)


class TwoTowerRecommender(ContentRecommender):
    """A content recommender whose user vector does not depend on the candidate: ``encode_user`` (history vectors ->
    user vector) and ``click_score`` (dot product by default). Evaluation encodes each distinct history of a batch
    once, and full ranking is one product with all item vectors."""

    candidate_aware = False

    @abc.abstractmethod
    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """User encoder: history item vectors [B, L, D] (oldest first) and mask [B, L] -> user vectors [B, D]."""

    def click_score(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Click predictor: users [B, D], candidates [B, C, D] -> [B, C] (dot product)."""
        return torch.einsum("bd,bcd->bc", users, candidates)

    def score_candidates(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of candidates [B, C, D] for histories [B, L, D] / mask [B, L] -> [B, C]."""
        return self.click_score(self.encode_user(history, mask), candidates)

    def predict(self, interaction):
        """Scores of (history, candidate) rows [R]: labeled rows repeat an impression's history, so one user vector
        per distinct history."""
        items = self.all_item_vectors()  # [n_items, D]
        history, mask = self._history(interaction)  # [R, L]
        candidates = self._item_rows(items, interaction[self.ITEM_ID])  # [R, D]
        users = per_distinct_history(lambda seq, _: self.encode_user(self._item_rows(items, seq), seq != 0), history,
                                     mask.sum(dim=1))  # [R, D]
        return self.click_score(users, candidates[:, None]).squeeze(1)

    def full_sort_predict(self, interaction):
        """Scores of every history in the batch against all items -> [B, n_items]."""
        items = self.all_item_vectors()  # [n_items, D]
        history, mask = self._history(interaction)  # [B, L]
        users = self.encode_user(self._item_rows(items, history), mask)  # [B, D]
        return users @ items.T.to(users.dtype)
