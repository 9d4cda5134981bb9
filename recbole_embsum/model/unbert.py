"""
UNBERT
################################################

Reference:
    Qi Zhang, Jingjie Li, Qinglin Jia, Chuyuan Wang, Jieming Zhu, Zhaowei Wang and Xiuqiang He. "UNBERT: User-News
    Matching BERT for News Recommendation." IJCAI 2021.

Reference implementation: reczoo/RecZoo ``pretraining/news/UNBERT`` (the authors' code, which the EmbSum paper ran):
``src/data_loader.py`` (``pack_bert_features``: input layout), ``src/unbert.py`` (``UNBertEmbeddings``,
``UNBertModel``: word- and news-level encoders), ``src/model.py`` (``UNBERT``: the head), ``run.py`` (loss,
optimiser, schedule).

One sequence per (user, candidate) pair (``pack_bert_features``)::

    [CLS] candidate tokens [SEP] history item 1 tokens ... history item n tokens [SEP]

token type 0 up to the first [SEP], 1 after it; a "news segment" embedding (64 rows, new) is added to the token
embeddings: 1 on the candidate's tokens, i + 2 on history item i's, 0 on [CLS]/[SEP]. The whole sequence is cut at
``pair_max_tokens`` (reference: 300), the history after the candidate (reference: the titles of the first 20
history items, each <= 20 subwords).

* Word level: the language model's state at [CLS] (``UNBERT.forward``: ``output[0][:, 0, :]``).
* Item (news) level: a second transformer encoder over [CLS state; candidate vector; history item vectors], its
  output at position 0 (``UNBertModel.encoder_news``, randomly initialised, as many layers as the language model).
  Here an item's vector is the mean of its tokens' word-level states; the reference's default ``nseg`` mode gathers
  token positions 0 .. 2 + n instead (``sentence_ids`` is a plain range, not item boundaries), which does not select
  items, so its item level is not reproduced literally.
* Head: linear -> 2 logits on the word-level vector, the item-level one, or both concatenated (``unbert_level``;
  ``model.py`` defaults to both, ``run.py`` to word). The ranking score is softmax(logits)[1] (``src/eval.py``).
* Loss (``run.py``): pointwise 2-class cross-entropy over (user, candidate, click) pairs; the data loader keeps each
  impression's clicks and 4 negatives per click (``sampling``). Here each training row is a click and
  ``train_neg_num`` negatives of its impression: the 1 + K pairs, labels 1, 0, ..., 0, averaged over the batch's
  pairs. Not the softmax over 1 + K of the other models; ``unbert_loss: nce`` trains with that one instead, on the
  click log-odds (with tiny models trained from scratch it learns the synthetic data's planted interests several
  times faster than the pointwise loss, which first fits the 1 : K click rate).

Differences from the reference: the latest ``history_len`` history items, most recent first (the reference keeps
the oldest 20, in order), so the token budget drops the oldest; titles are neither lower-cased nor stripped of stop
words (the tokenizer's own normalisation applies, e.g. bert-base-uncased lower-cases); the new news-segment
embedding starts at zero (the reference: BERT's normal(0, 0.02)), so a pretrained model first sees its own inputs,
as UniTRec does with its new local positions (a random segment vector, shared by all tokens of an item, otherwise
dominates an item's mean state in a model trained from scratch); RoBERTa checkpoints have a single token type, so
their token-type table is grown to two rows (the new row a copy of the old, logged).

Candidate-aware: every (user, candidate) pair is one full language-model pass, in training and in evaluation; no
item or user vector can be cached (``pair_text.py`` logs the measured cost per pair).
"""
import logging
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from recbole_embsum.text.sequences import concat, pack_items, special

from .losses import nce_loss
from .pair_text import PairTextRecommender

logger = logging.getLogger(__name__)

LEVELS = ("word", "item", "both")
LOSSES = ("pointwise", "nce")
NEWS_SEGMENTS = 64  # rows of the news-segment embedding (UNBertEmbeddings.segment_embeddings)


class PairInputs(NamedTuple):
    """One (history, candidate) sequence per row, all [N, W]: ``tokens``, ``mask`` (True = real token),
    ``token_types`` (0 up to the first [SEP], then 1), ``segments`` (news segment ids: 1 candidate, i + 2 history item
    i, 0 otherwise) and ``item_of_token`` (0 candidate, i + 1 history item i, -1 special tokens and padding)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    token_types: torch.Tensor
    segments: torch.Tensor
    item_of_token: torch.Tensor


class ItemLevelEncoder(nn.Module):
    """UNBERT's news-level encoder: post-norm transformer layers (BERT's layout) over item vectors [N, S, d] with a
    padding mask [N, S] (True = real) -> [N, S, d]."""

    def __init__(self, d_model: int, heads: int, ffn: int, layers: int, dropout: float, eps: float):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, activation="gelu", layer_norm_eps=eps,
                                       batch_first=True)
            for _ in range(layers)])
        self.gradient_checkpointing = False

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        padding = ~mask
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                vectors = checkpoint(layer, vectors, None, padding, use_reentrant=False)
            else:
                vectors = layer(vectors, src_key_padding_mask=padding)
        return vectors


class UNBERT(PairTextRecommender):
    r"""UNBERT: a language model reads candidate and history together; word- and item-level matching heads."""

    plm_kind = "encoder"
    eval_cost_note = "one full language-model pass per (history, candidate) pair, nothing cached"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.level = config["unbert_level"] or "both"
        if self.level not in LEVELS:
            raise ValueError(f"unbert_level must be one of {LEVELS}, got {self.level!r}")
        self.loss = config["unbert_loss"] or "pointwise"
        if self.loss not in LOSSES:
            raise ValueError(f"unbert_loss must be one of {LOSSES}, got {self.loss!r}")
        plm_config = self.plm.config
        d_model = plm_config.hidden_size
        self.max_tokens = config["pair_max_tokens"]
        limit = plm_config.max_position_embeddings
        if "roberta" in plm_config.model_type:  # RoBERTa positions start after the padding index
            limit -= plm_config.pad_token_id + 1
        if self.max_tokens is None or not 4 <= self.max_tokens <= limit:
            raise ValueError(f"UNBERT: pair_max_tokens must be in [4, {limit}] (the language model's positions), "
                             f"got {self.max_tokens}")
        if self.history_len + 2 > NEWS_SEGMENTS:
            raise ValueError(f"UNBERT: history_len {self.history_len} needs {self.history_len + 2} news segments; "
                             f"the news-segment embedding has {NEWS_SEGMENTS}: use history_len <= {NEWS_SEGMENTS - 2}")
        self._two_token_types()
        self.news_segments = nn.Embedding(NEWS_SEGMENTS, d_model)  # new (UNBertEmbeddings.segment_embeddings)
        nn.init.zeros_(self.news_segments.weight)  # starts as the language model's own input (see the docstring)
        self.item_encoder = None
        if self.level != "word":
            layers = config["unbert_item_layers"] or plm_config.num_hidden_layers
            self.item_encoder = ItemLevelEncoder(d_model, plm_config.num_attention_heads,
                                                 plm_config.intermediate_size, layers,
                                                 plm_config.hidden_dropout_prob, plm_config.layer_norm_eps)
            self.item_encoder.gradient_checkpointing = bool(config["gradient_checkpointing"])
        self.head = nn.Linear(d_model * (2 if self.level == "both" else 1), 2)  # UNBERT._dense

    def _two_token_types(self) -> None:
        """Token types 0 (candidate) and 1 (history) need two rows; RoBERTa checkpoints have one: grow the table,
        the new row a copy of the old (so a pretrained model starts unchanged on history tokens)."""
        old = self.plm.embeddings.token_type_embeddings
        if old.num_embeddings >= 2:
            return
        grown = nn.Embedding(2, old.embedding_dim).to(old.weight.device, old.weight.dtype)
        grown.weight.data[:] = old.weight.data[0]
        self.plm.embeddings.token_type_embeddings = grown
        self.plm.config.type_vocab_size = 2
        logger.info("UNBERT: %s has %d token type(s); grown to 2 for candidate / history", self.plm.config.model_type,
                    old.num_embeddings)

    # ------------------------------------------------------------------------------------------- the model
    def pair_inputs(self, history: torch.Tensor, candidates: torch.Tensor) -> PairInputs:
        """The language model's input for (history, candidate) pairs (``pack_bert_features``): history [N, L] item
        ids (most recent first, 0-padded), candidates [N]."""
        n = history.size(0)
        tokenizer, device = self.tokenizer, history.device
        candidate = pack_items(candidates[:, None], self.item_tokens, self.item_token_lengths,
                               self.max_tokens - 3)  # [N, Wc]
        past = pack_items(history, self.item_tokens, self.item_token_lengths,
                          self.max_tokens - 3 - candidate.lengths)  # the rest of the budget: [N, Wh]
        sequence = concat([special(tokenizer.cls_token_id, n, device), candidate,
                           special(tokenizer.sep_token_id, n, device), past, special(tokenizer.sep_token_id, n, device)],
                          tokenizer.pad_token_id)  # [N, W]
        is_candidate, is_history = sequence.part == 1, sequence.part == 3
        token_types = (sequence.part >= 3).long()  # 0: [CLS] candidate [SEP]; 1: history [SEP]; padding 0
        segments = torch.where(is_candidate, 1, torch.where(is_history, sequence.slot + 2, 0))  # news segment ids
        item_of_token = torch.where(is_candidate, 0, torch.where(is_history, sequence.slot + 1, -1))
        return PairInputs(sequence.tokens, sequence.mask, token_types, segments, item_of_token)

    def pair_logits(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Match logits of (history, candidate) pairs: history [N, L] item ids (most recent first, 0-padded),
        candidates [N] -> [N, 2] (class 1 = click)."""
        n, length = history.shape
        inputs = self.pair_inputs(history, candidates)
        embeddings = self.plm.get_input_embeddings()(inputs.tokens) + self.news_segments(inputs.segments)  # [N,W,d]
        states = self.plm(inputs_embeds=embeddings, attention_mask=inputs.mask.long(),
                          token_type_ids=inputs.token_types).last_hidden_state  # [N, W, d]
        word = states[:, 0]  # [CLS]: word-level matching vector [N, d]
        if self.item_encoder is None:
            return self.head(word)

        # item level: [CLS] state, then the mean token state of the candidate (item 0) and of each history item
        slots = torch.arange(length + 1, device=history.device)
        one_hot = (inputs.item_of_token[..., None] == slots).to(states.dtype)  # [N, W, 1+L]
        counts = one_hot.sum(dim=1)  # [N, 1+L]
        items = torch.einsum("nwi,nwd->nid", one_hot, states) / counts.clamp(min=1)[..., None]  # [N, 1+L, d]
        vectors = torch.cat([word[:, None], items], dim=1)  # [N, 2+L, d]
        mask = torch.cat([counts.new_ones(n, 1, dtype=torch.bool), counts > 0], dim=1)  # [N, 2+L]
        item = self.item_encoder(vectors, mask)[:, 0]  # [N, d]
        hidden = item if self.level == "item" else torch.cat([word, item], dim=-1)
        return self.head(hidden)

    def score_pairs(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Click probability softmax(logits)[1] of each pair (the reference's evaluation score) -> [N]."""
        return self.pair_logits(history, candidates).float().softmax(dim=-1)[:, 1]

    # ---------------------------------------------------------------------------------------------- training
    def calculate_loss(self, interaction):
        """``unbert_loss: pointwise`` (``run.py``): 2-class cross-entropy over each click's 1 + K (history,
        candidate) pairs, labels 1, 0, ..., 0, averaged over the batch's pairs. ``nce``: softmax cross-entropy of the
        click against its K negatives on the click log-odds logit[1] - logit[0] (EmbSum's Eq. (5), the other
        baselines' loss)."""
        history = self._history(interaction)  # [B, L]
        candidates, valid = self._training_candidates(interaction)  # [B, 1+K], [B, K]
        batch, count = candidates.shape
        keep = torch.cat([valid.new_ones(batch, 1), valid], dim=1)  # [B, 1+K]
        if self.loss == "nce":
            logits = self.pair_logits(history.repeat_interleave(count, dim=0), candidates.flatten())  # [B*(1+K), 2]
            return nce_loss((logits[:, 1] - logits[:, 0]).view(batch, count), valid)
        labels = torch.zeros_like(candidates)
        labels[:, 0] = 1  # the click
        keep = keep.flatten()  # only real negatives become pairs
        logits = self.pair_logits(history.repeat_interleave(count, dim=0)[keep], candidates.flatten()[keep])  # [P, 2]
        return F.cross_entropy(logits.float(), labels.flatten()[keep])
