"""
CAUM
################################################

Reference:
    Tao Qi, Fangzhao Wu, Chuhan Wu and Yongfeng Huang. "News Recommendation with Candidate-aware User Modeling."
    SIGIR 2022 (Section 2).

Reference implementations checked: NewsRecLib (Iana et al.; which the EmbSum paper ran) ``caum_module.py``,
``encoders/user/caum.py`` and ``configs/model/caum.yaml`` (title: 300-d words -> self-attention, 20 heads ->
additive attention 200; title entities: 100-d -> self-attention -> additive attention; category 100-d -> linear;
concatenation -> linear to 400; user side as below with 400-d vectors, 20 heads, dropout 0.2, Adam lr 1e-4), and the
authors' Keras code taoqi98/CAUM (title self-attention 20 x 20, entities 4 x 40, at most 5 entities, last 50 clicks).
Differences from both: the history is masked everywhere (NewsRecLib's user-side attention also attends across the
batch, and neither masks padded clicks), the candidate-aware CNN sees zero vectors beyond the ends of the history
instead of wrapping around, and the K negatives come from the click's own impression. Without title entities in the
item text (Goodreads, or MIND converted without them) the entity branch is off and this is logged.

News encoder: [title self-attention vector; entity self-attention vector; category vector] -> linear (Section 2.1).
User encoder, once per candidate c (Section 2.2): candidate-aware CNN over [h_{i-1}; h_i; h_{i+1}; c] and
candidate-aware self-attention over linear([c; h_i]), concatenated -> linear; candidate-aware attention
MLP([u_i; c]) pools them into the user vector. Click predictor: dot product with c.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .content import ContentRecommender
from .layers import CategoryEncoder, MultiHeadSelfAttention, TextSelfAttentionEncoder, masked_softmax


class CandidateAwareUserEncoder(nn.Module):
    """CAUM's user encoder: history [B, L, D] and mask [B, L] with candidates [B, C, D] -> users [B, C, D]."""

    def __init__(self, dim: int, filters: int, heads: int, hidden: tuple, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"CAUM: news_embedding_size {dim} must be divisible by user_attention_heads {heads}")
        self.cnn = nn.Linear(4 * dim, filters)  # window-3 CNN whose window also holds the candidate
        self.attention_input = nn.Linear(2 * dim, dim)
        self.self_attention = MultiHeadSelfAttention(dim, heads, dim // heads)
        self.combine = nn.Linear(filters + dim, dim)
        self.attention = nn.Sequential(nn.Linear(2 * dim, hidden[0]), nn.Tanh(), nn.Linear(hidden[0], hidden[1]),
                                       nn.Tanh(), nn.Linear(hidden[1], 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        batch, length, dim = history.shape
        count = candidates.size(1)
        history = history * mask[..., None].to(history.dtype)  # padded clicks are zero vectors
        h = history[:, None].expand(-1, count, -1, -1).reshape(batch * count, length, dim)  # [B*C, L, D]
        m = mask[:, None].expand(-1, count, -1).reshape(batch * count, length)  # [B*C, L]
        c = candidates.reshape(batch * count, 1, dim).expand(-1, length, -1)  # [B*C, L, D]
        left = F.pad(h, (0, 0, 1, 0))[:, :length]  # h_{i-1}, zero before the first click
        right = F.pad(h, (0, 0, 0, 1))[:, 1:]  # h_{i+1}, zero after the last click
        local = self.cnn(torch.cat([left, h, right, c], dim=-1))  # candidate-aware CNN: [B*C, L, filters]
        contextual = self.self_attention(self.attention_input(torch.cat([c, h], dim=-1)), m)  # [B*C, L, D]
        clicks = self.combine(self.dropout(torch.cat([local, contextual], dim=-1)))  # u_i: [B*C, L, D]
        weights = masked_softmax(self.attention(torch.cat([clicks, c], dim=-1)).squeeze(-1), m)  # [B*C, L]
        return torch.einsum("nl,nld->nd", weights, clicks).view(batch, count, dim)


class CAUM(ContentRecommender):
    r"""CAUM: NRMS-style news encoder with title entities and a candidate-aware user encoder."""

    text_fields = ("title",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        dropout, query_dim = config["dropout_prob"], config["query_dim"]
        self.title_encoder = self.self_attention_text_encoder(config)
        width = self.title_encoder.output_dim
        entities = self.entity_embedding(config)  # None (logged) without title entities
        self.entity_encoder = None
        if entities is not None:
            self.entity_encoder = TextSelfAttentionEncoder(entities, config["entity_attention_heads"],
                                                           config["entity_attention_head_size"], query_dim, dropout)
            width += self.entity_encoder.output_dim
        self.category_encoder = None
        if "category" in self.features.category_counts:
            size = config["category_embedding_size"]
            self.category_encoder = CategoryEncoder(self.features.category_counts["category"], size, size, dropout)
            width += size
        dim = config["news_embedding_size"]
        self.news_projection = nn.Linear(width, dim)
        self.user_encoder = CandidateAwareUserEncoder(dim, config["cnn_filters"], config["user_attention_heads"],
                                                      tuple(config["user_attention_hidden"]), dropout)
        self.candidate_dropout = nn.Dropout(dropout)

    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, news_embedding_size]."""
        inputs = self.item_inputs(item_ids)
        parts = [self.title_encoder(inputs["title"])]
        if self.entity_encoder is not None:
            parts.append(self.entity_encoder(inputs["title_entities"]))
        if self.category_encoder is not None:
            parts.append(self.category_encoder(inputs["category"]))
        return self.news_projection(torch.cat(parts, dim=-1))

    def score_candidates(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """History [B, L, D], mask [B, L], candidates [B, C, D] -> [B, C]: a user vector per candidate."""
        candidates = self.candidate_dropout(candidates)
        users = self.user_encoder(self.candidate_dropout(history), mask, candidates)  # [B, C, D]
        return (users * candidates).sum(-1)
