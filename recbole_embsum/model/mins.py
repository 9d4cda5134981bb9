"""
MINS
################################################

Reference:
    Rongyao Wang, Shoujin Wang, Wenpeng Lu and Xueping Peng. "News Recommendation via Multi-Interest News Sequence
    Modelling." ICASSP 2022.

Reference implementation checked: NewsRecLib (Iana et al.; which the EmbSum paper ran) ``mins_module.py``,
``encoders/user/mins.py`` and ``configs/model/mins.yaml`` (title and abstract through one shared text encoder:
300-d words -> self-attention with 15 heads -> additive attention 200, dropout 0.2; category 100-d -> linear 300 +
ReLU; the three vectors fused by additive attention; user: self-attention with 6 heads, 6 channels of 50 dims, a GRU
per channel over the true history length, last states concatenated; Adam lr 1e-4). Differences: each channel has its
own GRU (NewsRecLib's ``ModuleList([self.gru for ...])`` makes all channels share one), the user self-attention is
batch-first and masks padded clicks (NewsRecLib's attends across the batch, unmasked), the additive attention over
NewsRecLib's single multi-channel vector (a no-op) is left out, and the K negatives come from the click's own
impression.

News encoder: [title vector; abstract vector; category vector] fused by additive attention (a missing abstract or
category is left out). User encoder: masked multi-head self-attention over the clicks (oldest first) -> split into
``gru_channels`` channels -> one GRU per channel -> last hidden states concatenated. Click predictor: dot product.
"""
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from .content import TwoTowerRecommender
from .layers import AdditiveAttention, CategoryEncoder, MultiHeadSelfAttention


class MultiChannelGRU(nn.Module):
    """MINS's user encoder: [B, L, D] clicks with mask [B, L] -> [B, D] (zeros for an empty history)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        if dim % channels:
            raise ValueError(f"MINS: the news vector width {dim} must be divisible by gru_channels {channels}")
        self.channels = channels
        self.self_attention = MultiHeadSelfAttention(dim, channels, dim // channels)
        self.grus = nn.ModuleList(nn.GRU(dim // channels, dim // channels, batch_first=True) for _ in range(channels))

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1)  # clicks are left-aligned: [B]
        channels = self.self_attention(history, mask).chunk(self.channels, dim=-1)  # C x [B, L, D/C]
        states = []
        for gru, channel in zip(self.grus, channels):
            packed = pack_padded_sequence(channel, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            states.append(gru(packed)[1][0])  # last hidden state at each true length: [B, D/C]
        return torch.cat(states, dim=-1) * (lengths > 0)[:, None].to(history.dtype)  # [B, D]


class MINS(TwoTowerRecommender):
    r"""MINS: NRMS-style multi-field news encoder and a multi-channel GRU user encoder."""

    text_fields = ("title", "abstract")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.text_encoder = self.self_attention_text_encoder(config)
        dim = self.text_encoder.output_dim
        self.category_encoder = None
        if "category" in self.features.category_counts:
            self.category_encoder = CategoryEncoder(self.features.category_counts["category"],
                                                    config["category_embedding_size"], dim)
        self.field_pooling = AdditiveAttention(dim, config["query_dim"])
        self.user_encoder = MultiChannelGRU(dim, config["gru_channels"])

    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, heads * head_dim]."""
        inputs = self.item_inputs(item_ids)
        fields = [self.text_encoder(inputs[field]) for field in self.text_fields]  # one shared text encoder
        present = [(inputs[field] != 0).any(dim=1) for field in self.text_fields]
        if self.category_encoder is not None:
            fields.append(self.category_encoder(inputs["category"]))
            present.append(inputs["category"] != 0)
        return self.field_pooling(torch.stack(fields, dim=1), torch.stack(present, dim=1))[0]

    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L, D], [B, L] -> [B, D]."""
        return self.user_encoder(history, mask)
