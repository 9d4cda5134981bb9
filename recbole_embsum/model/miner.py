"""
MINER
################################################

Reference:
    Jian Li, Jieming Zhu, Qiwei Bi, Guohao Cai, Lifeng Shang, Zhenhua Dong, Xin Jiang and Qun Liu. "MINER:
    Multi-Interest Matching Network for News Recommendation." Findings of ACL 2022.

Reference implementation checked: duynguyen-0203/miner (its README calls it "my implementation": a re-implementation,
not the authors' code, which was not released), ``src/model/{model,news_encoder}.py`` and ``config/train.txt``;
cross-checked with NewsRecLib's ``miner_module.py``. As there: the news vector is the PLM's ``<s>`` / ``[CLS]`` state
of the title -> Linear(PLM width -> ``news_embedding_size``) -> dropout; poly attention with ``context_codes`` codes
of width ``context_code_dim`` (logits ``c_k tanh(W h_i)``, no bias); the category bias is the cosine between the
category embeddings of a clicked item and of the candidate; the K matching scores are aggregated by ``max``,
``mean`` or ``weighted`` (softmax over k of ``candidate . GELU(W interest_k)``); loss = cross-entropy over the
click and K negatives + ``disagreement_weight`` x the mean pairwise cosine of the K interests.
Differences:

* The category bias is computed per candidate, so each candidate gets its own interest vectors; duynguyen averages
  the bias over all candidates of a sample (one bias per clicked item), so a candidate's score there depends on the
  other candidates of its impression, and NewsRecLib's mask of that average keeps the other users' candidates.
* Padded history slots get exactly zero attention weight (both references fill their logits with 1e-30, so padding
  is attended; in duynguyen a pad slot is an encoded ``<s></s>`` item).
* The disagreement term averages the cosines of the K(K-1) distinct pairs (the references divide by K^2); with the
  category bias it is averaged over the interests of every candidate.
* Title only (duynguyen can add the abstract through the same PLM; NewsRecLib uses the title only); the K negatives
  come from the click's own impression; evaluation encodes each item once per pass and each distinct history's
  poly-attention logits once per batch (duynguyen's slow evaluation re-encodes the history for every candidate).

News encoder: PLM ``[CLS]`` state of the title -> linear -> dropout (with the category bias, the item vector also
carries the item's category embedding, so evaluation caches both). User encoder: poly attention over the clicked
news vectors, with the category-aware bias. Click predictor: K dot products aggregated per candidate.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .eval_batching import per_distinct_history
from .layers import masked_softmax
from .losses import LossParts, nce_loss
from .plm_content import PLMContentRecommender
from .poly_attention import PolyAttention

SCORE_TYPES = ("max", "mean", "weighted")


def disagreement(interests: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the distinct pairs of K interest vectors ``interests`` [..., K, D] (MINER's
    disagreement regulariser: low when the interests differ); a scalar, 0 for no vectors."""
    if interests.numel() == 0:
        return interests.new_zeros((), dtype=torch.float32)
    unit = F.normalize(interests.float(), dim=-1)
    similarity = unit @ unit.transpose(-1, -2)  # [..., K, K]
    k = interests.size(-2)
    off_diagonal = similarity.sum(dim=(-1, -2)) - similarity.diagonal(dim1=-2, dim2=-1).sum(-1)
    return (off_diagonal / max(1, k * (k - 1))).mean()


class MINER(PLMContentRecommender):
    r"""MINER: PLM news encoder, poly-attention user interests with category-aware weighting, aggregated K scores."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.news_dim = config["news_embedding_size"]
        self.score_type = config["score_type"]
        if self.score_type not in SCORE_TYPES:
            raise ValueError(f"MINER: score_type must be one of {', '.join(SCORE_TYPES)}, got {self.score_type!r}")
        self.disagreement_weight = float(config["disagreement_weight"])
        self.news_projection = nn.Linear(self.plm_hidden_size, self.news_dim)  # reduce_dim
        self.dropout = nn.Dropout(config["dropout_prob"])
        self.poly_attention = PolyAttention(self.news_dim, config["context_codes"], config["context_code_dim"])
        self.category_embedding = None
        if config["category_bias"]:
            if self.category_count < 2:
                raise ValueError("MINER: category_bias needs item categories, but the item text has none; set "
                                 "category_bias: False")
            self.category_embedding = nn.Embedding(self.category_count, config["category_embedding_size"],
                                                   padding_idx=0)
        self.target_attention = None
        if self.score_type == "weighted":
            self.target_attention = nn.Linear(self.news_dim, self.news_dim, bias=False)

    # ------------------------------------------------------------------------------------------ news encoder
    def encode_items(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[N] -> [N, news_embedding_size] (+ category_embedding_size with the category bias: [news; category])."""
        states, _ = self.token_states(item_ids)  # [N, T, H]
        news = self.dropout(self.news_projection(states[:, 0]))  # <s> / [CLS] state: [N, D]
        if self.category_embedding is None:
            return news
        return torch.cat([news, self.category_embedding(self.item_category[item_ids])], dim=-1)

    # ------------------------------------------------------------------------------------------ user side
    def history_logits(self, history: torch.Tensor) -> torch.Tensor:
        """Poly-attention logits of the clicked news, the part shared by all candidates: [B, L, D'] -> [B, K, L]."""
        return self.poly_attention.code_logits(history[..., : self.news_dim])

    def interests(self, logits: torch.Tensor, history: torch.Tensor, mask: torch.Tensor,
                  candidates: torch.Tensor) -> torch.Tensor:
        """The K interest vectors: logits [B, K, L], history [B, L, D'], mask [B, L], candidates [B, C, D'] ->
        [B, C, K, D] with the category bias (one set per candidate), else [B, 1, K, D]."""
        news = history[..., : self.news_dim]  # [B, L, D]
        logits = logits[:, None]  # [B, 1, K, L]
        if self.category_embedding is not None:  # category-aware attention weighting
            clicked = F.normalize(self.dropout(history[..., self.news_dim:]), dim=-1)  # [B, L, E]
            target = F.normalize(self.dropout(candidates[..., self.news_dim:]), dim=-1)  # [B, C, E]
            bias = torch.einsum("ble,bce->bcl", clicked, target)  # cosine: [B, C, L]
            logits = logits + bias[:, :, None, :]  # [B, C, K, L]
        weights = masked_softmax(logits, mask[:, None, None, :])  # padded clicks weigh 0: [B, C|1, K, L]
        return weights @ news[:, None]  # [B, C|1, K, D]

    def aggregate(self, interests: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Click scores from interests [B, C|1, K, D] and candidates [B, C, D'] -> [B, C]."""
        news = candidates[..., : self.news_dim]  # [B, C, D]
        matching = torch.einsum("bckd,bcd->bck", interests.expand(-1, news.size(1), -1, -1), news)  # [B, C, K]
        if self.score_type == "max":
            return matching.max(dim=-1).values
        if self.score_type == "mean":
            return matching.mean(dim=-1)
        keys = F.gelu(self.target_attention(interests))  # target-aware attention: [B, C|1, K, D]
        weights = torch.softmax(torch.einsum("bckd,bcd->bck", keys.expand(-1, news.size(1), -1, -1), news), dim=-1)
        return (weights * matching).sum(dim=-1)

    def score_candidates(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """History [B, L, D'], mask [B, L], candidates [B, C, D'] -> [B, C]."""
        return self.aggregate(self.interests(self.history_logits(history), history, mask, candidates), candidates)

    # ---------------------------------------------------------------------------------------------- training
    def calculate_loss(self, interaction):
        """NCE over the click and K impression negatives + disagreement_weight x the interests' disagreement."""
        history, mask, candidates, valid = self.training_vectors(interaction)  # [B, L, D'], [B, L], [B, 1+K, D']
        interests = self.interests(self.history_logits(history), history, mask, candidates)  # [B, C|1, K, D]
        nce = nce_loss(self.aggregate(interests, candidates), valid)
        spread = disagreement(interests[mask.any(dim=1)])  # users with clicks only
        return LossParts((nce, self.disagreement_weight * spread), (nce, spread))

    # -------------------------------------------------------------------------------------------- evaluation
    def predict(self, interaction):
        """Scores of (history, candidate) rows [R]: the poly-attention logits once per distinct history, the
        category bias and aggregation per row."""
        items = self.all_item_vectors()  # [n_items, D']
        history, mask = self._history(interaction)  # [R, L]
        clicks = self._item_rows(items, history)  # [R, L, D']
        candidates = self._item_rows(items, interaction[self.ITEM_ID])[:, None]  # [R, 1, D']
        logits = per_distinct_history(lambda seq, _: self.history_logits(self._item_rows(items, seq)), history,
                                      mask.sum(dim=1))  # [R, K, L]
        return self.aggregate(self.interests(logits, clicks, mask, candidates), candidates).squeeze(1)
