"""
NRMS
################################################

Reference:
    Chuhan Wu, Fangzhao Wu, Suyu Ge, Tao Qi, Yongfeng Huang and Xing Xie. "Neural News Recommendation with
    Multi-Head Self-Attention." EMNLP-IJCNLP 2019 (Section 3).

Reference implementations checked: microsoft/recommenders ``models/newsrec/models/nrms.py`` (title only, embedding
dropout 0.2, 20 heads x 20 dims, attention query 200, Adam lr 1e-4, title 30 words, history 50) and Legommenders
(which the EmbSum paper ran; it adds the category as tokens). This one follows the paper's sizes (16 heads x 16 dims)
and the MS inputs and training settings. Differences from both references: padding words and padded history slots
get exactly zero attention weight (MS passes no mask), and the K negatives come from the click's own impression.

News encoder: word embeddings -> dropout -> multi-head self-attention -> dropout -> additive attention (Eqs. (1)-(5)).
User encoder: multi-head self-attention over the clicked news vectors -> additive attention (Eqs. (6)-(7)).
Click predictor: dot product (Eq. (8)).
"""
import torch

from .content import TwoTowerRecommender
from .layers import AdditiveAttention, MultiHeadSelfAttention


class NRMS(TwoTowerRecommender):
    r"""NRMS: multi-head self-attention news and user encoders over a title's words and a user's clicks."""

    text_fields = ("title",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.news_encoder = self.self_attention_text_encoder(config)  # Eqs. (1)-(5)
        width = self.news_encoder.output_dim  # heads * head_dim
        self.user_self_attention = MultiHeadSelfAttention(width, config["attention_heads"],
                                                          config["attention_head_size"])  # Eq. (6)
        self.user_pooling = AdditiveAttention(width, config["query_dim"])  # Eq. (7)

    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, heads * head_dim]."""
        return self.news_encoder(self.item_title[item_ids])

    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L, D], [B, L] -> [B, D]."""
        return self.user_pooling(self.user_self_attention(history, mask), mask)[0]
