"""
Fastformer
################################################

Reference:
    Chuhan Wu, Fangzhao Wu, Tao Qi, Yongfeng Huang and Xing Xie. "Fastformer: Additive Attention Can Be All You
    Need." arXiv 2108.09084, 2021 (Section 3; news recommendation in Section 4).

Reference implementations checked: the authors' wuch15/Fastformer (``Fastformer.ipynb``: the layer, BERT-style
post-norm blocks, attention pooling) and Legommenders ``model/common/fastformer.py`` (which the EmbSum paper ran: the
same layer; item and user encoders of 1 layer, 16 heads, dropout 0.1, hidden 256, position embeddings + LayerNorm
before the layers, dot product). This one follows Legommenders' settings. Differences: padding is masked with zero
weight (the references add -10000 to its scores, so a fully padded row averages its padding), word embeddings are
projected to the hidden size by a linear layer, and the K negatives come from the click's own impression.
``fastformer_positions: False`` drops the position embeddings and their LayerNorm, which wuch15's README reports to
work better for news recommendation.

News encoder: word embeddings -> linear to ``hidden_size`` -> Fastformer -> attention pooling.
User encoder: Fastformer over the clicked news vectors (oldest first) -> attention pooling. Click predictor: dot.
"""
import torch
import torch.nn as nn

from .content import TwoTowerRecommender
from .layers import FastformerEncoder


class Fastformer(TwoTowerRecommender):
    r"""Fastformer news and user encoders (additive-attention Transformers) with a dot-product click predictor."""

    text_fields = ("title",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        hidden, heads, layers = config["hidden_size"], config["attention_heads"], config["fastformer_layers"]
        dropout, positions = config["dropout_prob"], config["fastformer_positions"]
        self.embedding = self.word_embedding(config)
        self.word_projection = nn.Linear(self.embedding.embedding_dim, hidden)
        self.news_encoder = FastformerEncoder(hidden, heads, layers, dropout, config["title_max_words"], positions)
        self.user_encoder = FastformerEncoder(hidden, heads, layers, dropout, self.history_len, positions)

    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, hidden_size]."""
        tokens = self.item_title[item_ids]  # [N, T]
        return self.news_encoder(self.word_projection(self.embedding(tokens)), tokens != 0)

    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L, hidden], [B, L] -> [B, hidden]."""
        return self.user_encoder(history, mask)
