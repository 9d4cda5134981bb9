"""
NAMLPLM
################################################

Reference:
    Chuhan Wu, Fangzhao Wu, Mingxiao An, Jianqiang Huang, Yongfeng Huang and Xing Xie. "Neural News Recommendation
    with Attentive Multi-View Learning." IJCAI 2019; with a pretrained language model as the news encoder as in
    "PLM-NR" (Wu et al., "Empowering News Recommendation with Pre-trained Language Models", SIGIR 2021). The EmbSum
    paper (Appendix B) calls it NAML-PLM, runs Legommenders' implementation and uses RoBERTa-base.

Reference implementation checked: Legommenders (Jyonn/Legommenders) ``config/model/bert-naml.yaml`` (item operator
``Bert``, user operator ``Ada``, predictor ``Dot``, hidden 256) and ``model/operators/base_llm_operator.py`` (PLM
last hidden states of the item's concatenated columns, title and category, -> Linear(PLM width -> hidden) -> masked
additive attention over the tokens; the ``Ada`` user operator: additive attention over the clicked items; dot
product). Differences: the title and the category are one text pair with the PLM's own separators (``<s> title
</s></s> category </s>``) rather than Legommenders' bert-base-uncased prompt ids, the whole PLM is fine-tuned
(Legommenders optionally trains only the top layers or LoRA adapters), and the K negatives come from the click's own
impression.

News encoder: PLM over [title; category] -> linear to ``news_embedding_size`` -> additive attention over the tokens.
User encoder: additive attention over the clicked news vectors. Click predictor: dot product.
"""
import torch
import torch.nn as nn

from .content import TwoTowerRecommender
from .layers import AdditiveAttention
from .plm_content import PLMContentRecommender


class NAMLPLM(PLMContentRecommender, TwoTowerRecommender):
    r"""NAML-PLM: a PLM news encoder with attentive token pooling and an attentive user encoder (two-tower)."""

    plm_pair_field = "category"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        dim = config["news_embedding_size"]
        self.projection = nn.Linear(self.plm_hidden_size, dim)  # Legommenders: Linear(embed_hidden_size, hidden_size)
        self.token_pooling = AdditiveAttention(dim, config["query_dim"])
        self.user_pooling = AdditiveAttention(dim, config["query_dim"])  # the Ada user operator

    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, news_embedding_size]."""
        states, mask = self.token_states(item_ids)  # [N, T, H], [N, T]
        return self.token_pooling(self.projection(states), mask)[0]

    def encode_user(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L, D], [B, L] -> [B, D] (zeros for an empty history)."""
        return self.user_pooling(history, mask)[0]
