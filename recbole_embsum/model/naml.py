"""
NAML
################################################

Reference:
    Chuhan Wu, Fangzhao Wu, Mingxiao An, Jianqiang Huang, Yongfeng Huang and Xing Xie. "Neural News Recommendation
    with Attentive Multi-View Learning." IJCAI 2019 (Section 3).

Reference implementations checked: microsoft/recommenders ``models/newsrec/models/naml.py`` (title and body: CNN with
400 filters of window 3, ReLU, additive attention 200; category and subcategory: 100-d embedding -> Dense(400, ReLU);
view attention; dropout 0.2; Adam lr 1e-4) and Legommenders (which the EmbSum paper ran; it pools all views' outputs
with one additive attention instead of per view then across views). This one follows the paper and MS. Differences:
padded words, empty views (an item without abstract; Goodreads has no subcategory, so that view is left out) and
padded history slots get zero attention weight (MS passes no mask), and the K negatives come from the click's own
impression.

News encoder: per text view, word embeddings -> dropout -> CNN -> dropout -> additive attention (Eqs. (1)-(3)); per
category view, embedding -> dense ReLU (Eq. (4)); attentive pooling of the views (Eqs. (5)-(6)).
User encoder: additive attention over the clicked news vectors (Eqs. (7)-(8)). Click predictor: dot product (Eq. (9)).
"""
import torch
import torch.nn as nn

from .content import TwoTowerRecommender
from .layers import AdditiveAttention, CategoryEncoder


class TextCNNView(nn.Module):
    """A text view: embeddings -> dropout -> Conv1d ('same' padding) + ReLU -> dropout -> masked additive attention."""

    def __init__(self, embedding: nn.Embedding, filters: int, window: int, query_dim: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.cnn = nn.Conv1d(embedding.embedding_dim, filters, window, padding=window // 2)
        self.pooling = AdditiveAttention(filters, query_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` [N, T] (0 = padding) -> [N, filters] (zeros for an empty text)."""
        mask = tokens != 0
        words = self.dropout(self.embedding(tokens)) * mask[..., None]  # padding words contribute nothing: [N, T, E]
        features = torch.relu(self.cnn(words.transpose(1, 2))).transpose(1, 2)  # Eq. (1): [N, T, F]
        return self.pooling(self.dropout(features), mask)[0]  # Eqs. (2)-(3)


class NAML(TwoTowerRecommender):
    r"""NAML: attentive multi-view news encoder (title, abstract, category, subcategory) and attentive user encoder."""

    text_fields = ("title", "abstract")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        filters, query_dim, dropout = config["cnn_filters"], config["query_dim"], config["dropout_prob"]
        embedding = self.word_embedding(config)  # shared by the title and abstract views, as in the paper
        self.text_views = nn.ModuleDict({
            field: TextCNNView(embedding, filters, config["cnn_window"], query_dim, dropout)
            for field in self.text_fields})
        self.category_views = nn.ModuleDict({
            field: CategoryEncoder(count, config["category_embedding_size"], filters)  # Eq. (4)
            for field, count in self.features.category_counts.items()})
        self.view_pooling = AdditiveAttention(filters, query_dim)  # Eqs. (5)-(6)
        self.user_pooling = AdditiveAttention(filters, query_dim)  # Eqs. (7)-(8)

    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, filters]; a view the item lacks (no words, no category) is left out of the view attention."""
        inputs = self.item_inputs(item_ids)
        views, present = [], []
        for field, view in self.text_views.items():
            views.append(view(inputs[field]))
            present.append((inputs[field] != 0).any(dim=1))
        for field, view in self.category_views.items():
            views.append(view(inputs[field]))
            present.append(inputs[field] != 0)
        return self.view_pooling(torch.stack(views, dim=1), torch.stack(present, dim=1))[0]  # [N, V, F] -> [N, F]

    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L, F], [B, L] -> [B, F]."""
        return self.user_pooling(history, mask)[0]
