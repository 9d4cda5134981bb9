"""Masked attention layers shared by the content-based baselines (NAML, NRMS, Fastformer, CAUM, MINS).

Every layer takes a boolean ``mask`` (True = real position) and guarantees two things the reference
implementations do not (see each model's docstring):

* padding gets exactly zero attention weight, so padding changes nothing in the output of real positions;
* a fully padded row (a user without history, an item without abstract) gives a zero vector, not NaN.

All layers are batch-first: inputs are ``[B, L, D]``; attention never mixes rows of the batch.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def masked_softmax(scores: torch.Tensor, mask: Optional[torch.Tensor], dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is True; masked entries get weight 0 and a row without any
    True entry gets all zeros (instead of the NaN a plain ``-inf`` fill gives)."""
    if mask is None:
        return torch.softmax(scores, dim=dim)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau-style) attention pooling: ``a_i = softmax_i(q^T tanh(W h_i + b))``, output ``sum_i a_i h_i``
    (NRMS/NAML, Wu et al. 2019, "additive attention"; Fastformer's attention pooling with ``query_dim = D``)."""

    def __init__(self, input_dim: int, query_dim: int):
        super().__init__()
        self.projection = nn.Linear(input_dim, query_dim)  # W, b
        self.query = nn.Linear(query_dim, 1, bias=False)  # q

    def forward(self, inputs: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` [B, L, D], ``mask`` [B, L] -> (pooled [B, D], weights [B, L])."""
        scores = self.query(torch.tanh(self.projection(inputs))).squeeze(-1)  # [B, L]
        weights = masked_softmax(scores, mask)  # [B, L]
        return torch.einsum("bl,bld->bd", weights, inputs), weights


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention as in NRMS (Wu et al. 2019, Eqs. (1)-(3)): ``heads`` heads of
    ``head_dim`` each, output width ``heads * head_dim``; keys at padded positions get zero weight and padded query
    positions output zeros."""

    def __init__(self, input_dim: int, heads: int, head_dim: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.output_dim = heads * head_dim
        self.query = nn.Linear(input_dim, self.output_dim)
        self.key = nn.Linear(input_dim, self.output_dim)
        self.value = nn.Linear(input_dim, self.output_dim)
        self.dropout = nn.Dropout(dropout)  # on the attention weights

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, inputs: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``inputs`` [B, L, D_in], ``mask`` [B, L] -> [B, L, heads * head_dim]."""
        q, k, v = self._split(self.query(inputs)), self._split(self.key(inputs)), self._split(self.value(inputs))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B, H, L, L]
        key_mask = None if mask is None else mask[:, None, None, :]  # [B, 1, 1, L]
        weights = self.dropout(masked_softmax(scores, key_mask))
        out = (weights @ v).transpose(1, 2).flatten(2)  # [B, L, H*d]
        return out if mask is None else out * mask[..., None].to(out.dtype)


class FastSelfAttention(nn.Module):
    """Fastformer's additive attention (Wu et al. 2021, Eqs. (2)-(6); layer as in the authors' wuch15/Fastformer and
    Legommenders ``model/common/fastformer.py``): per head, a global query pooled from the queries, a global key
    pooled from (global query * keys), then (global key * queries) through a linear transform plus the query
    residual. Padding is masked with zero weight instead of the references' -10000 bias."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"Fastformer: the hidden size {hidden} must be divisible by the head count {heads}")
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.query_score = nn.Linear(hidden, heads)  # w_q, one score per head (Eq. (3))
        self.key = nn.Linear(hidden, hidden)
        self.key_score = nn.Linear(hidden, heads)  # w_k (Eq. (5))
        self.transform = nn.Linear(hidden, hidden)  # output transform (Eq. (6))

    def _pool(self, scores: torch.Tensor, values: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-head weighted sum: ``scores`` [B, L, H], ``values`` [B, L, H*d] -> [B, 1, H*d]."""
        head_mask = None if mask is None else mask[..., None]  # [B, L, 1]
        weights = masked_softmax(scores / math.sqrt(self.head_dim), head_mask, dim=1)  # [B, L, H]
        per_head = values.unflatten(-1, (self.heads, self.head_dim))  # [B, L, H, d]
        return torch.einsum("blh,blhd->bhd", weights, per_head).flatten(1)[:, None]  # [B, 1, H*d]

    def forward(self, inputs: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``inputs`` [B, L, D], ``mask`` [B, L] -> [B, L, D]."""
        queries, keys = self.query(inputs), self.key(inputs)  # [B, L, D]
        global_query = self._pool(self.query_score(queries), queries, mask)  # Eqs. (3)-(4): [B, 1, D]
        mixed = keys * global_query  # p_i = q * k_i: [B, L, D]
        global_key = self._pool(self.key_score(mixed), mixed, mask)  # Eq. (5): [B, 1, D]
        return self.transform(global_key * queries) + queries  # Eq. (6), values = queries: [B, L, D]


class FastformerLayer(nn.Module):
    """One Fastformer block: fast self-attention, dropout + residual + LayerNorm, GELU feed-forward (4x hidden),
    dropout + residual + LayerNorm (BERT's post-norm layout, as in the references)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attention = FastSelfAttention(hidden, heads)
        self.attention_norm = nn.LayerNorm(hidden)
        self.feed_forward = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.output_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``inputs`` [B, L, D], ``mask`` [B, L] -> [B, L, D] (zeros at padded positions)."""
        hidden = self.attention_norm(inputs + self.dropout(self.attention(inputs, mask)))
        hidden = self.output_norm(hidden + self.dropout(self.feed_forward(hidden)))
        return hidden if mask is None else hidden * mask[..., None].to(hidden.dtype)


class FastformerEncoder(nn.Module):
    """Fastformer over a sequence, pooled to one vector: (optional) position embeddings + LayerNorm + dropout,
    ``layers`` Fastformer blocks, additive attention pooling (width ``hidden``, as the references' pooler)."""

    def __init__(self, hidden: int, heads: int, layers: int, dropout: float, max_positions: int,
                 use_positions: bool = True):
        super().__init__()
        self.positions = nn.Embedding(max_positions, hidden) if use_positions else None
        self.norm = nn.LayerNorm(hidden) if use_positions else None
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(FastformerLayer(hidden, heads, dropout) for _ in range(layers))
        self.pooling = AdditiveAttention(hidden, hidden)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``inputs`` [B, L, D], ``mask`` [B, L] -> [B, D]."""
        hidden = inputs
        if self.positions is not None:
            positions = torch.arange(inputs.size(1), device=inputs.device)
            hidden = self.norm(hidden + self.positions(positions)[None])
        hidden = self.dropout(hidden)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return self.pooling(hidden, mask)[0]


class TextSelfAttentionEncoder(nn.Module):
    """NRMS's text encoder (Wu et al. 2019, Section 3.1): word embeddings -> dropout -> multi-head self-attention ->
    dropout -> additive attention; used by NRMS, CAUM and MINS for titles/abstracts and by CAUM for entities."""

    def __init__(self, embedding: nn.Embedding, heads: int, head_dim: int, query_dim: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.self_attention = MultiHeadSelfAttention(embedding.embedding_dim, heads, head_dim)
        self.pooling = AdditiveAttention(self.self_attention.output_dim, query_dim)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = self.self_attention.output_dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` [N, T] (0 = padding) -> [N, heads * head_dim]; an all-padding row gives zeros."""
        mask = tokens != 0
        words = self.dropout(self.embedding(tokens))  # [N, T, E]
        contextual = self.dropout(self.self_attention(words, mask))  # [N, T, H*d]
        return self.pooling(contextual, mask)[0]


class CategoryEncoder(nn.Module):
    """A category id -> embedding -> dropout -> dense ReLU (NAML's category views, CAUM's and MINS's category
    encoders); id 0 (no category) has a zero embedding."""

    def __init__(self, count: int, embedding_dim: int, output_dim: int, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(count, embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(embedding_dim, output_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` [N] -> [N, output_dim]."""
        return torch.relu(self.dense(self.dropout(self.embedding(ids))))


def history_length(config, max_seq_length: int) -> int:
    """How many latest history items a content model reads: ``history_len`` when set, never more than RecBole keeps
    (``MAX_ITEM_LIST_LENGTH``, the model's ``max_seq_length``)."""
    return min(config["history_len"] or max_seq_length, max_seq_length)


def latest_items(item_seq: torch.Tensor, item_seq_len: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The latest ``n`` items of each history, still oldest first, left-aligned.

    Args:
        item_seq: [B, L] chronological, 0-padded at the end; item_seq_len: [B].

    Returns:
        ([B, n] item ids, 0 at padding; [B, n] mask, True at real items).
    """
    kept = item_seq_len.clamp(max=n)  # [B]
    steps = torch.arange(n, device=item_seq.device)[None, :]  # [1, n]
    index = (item_seq_len - kept)[:, None] + steps  # [B, n]
    mask = steps < kept[:, None]
    picked = item_seq.gather(1, index.clamp(max=item_seq.size(1) - 1))
    return picked.masked_fill(~mask, 0), mask


def masked_mean(inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``inputs`` [B, L, D] over positions where ``mask`` [B, L] is True -> [B, D] (zeros if none)."""
    weights = mask.to(inputs.dtype)
    return torch.einsum("bl,bld->bd", weights, inputs) / weights.sum(1, keepdim=True).clamp(min=1)


__all__ = ["AdditiveAttention", "CategoryEncoder", "FastSelfAttention", "FastformerEncoder", "FastformerLayer", "MultiHeadSelfAttention",
           "TextSelfAttentionEncoder", "latest_items", "masked_mean", "masked_softmax"]
