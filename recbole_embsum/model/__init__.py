"""Recommender models and the parts they share.

Shared by content models: ``losses`` (NCE over impression negatives), ``eval_batching`` (one encoder pass per
distinct history and per item in labeled evaluation), ``poly_attention`` (Eq. 2). EmbSum's own: ``embsum`` (the
RecBole model), ``session`` (session packing), ``scorer`` (Eqs. 3-4). Item text and the backbone live in
:mod:`recbole_embsum.text`.
"""
from .embsum import EmbSum
from .poly_attention import PolyAttention
from .scorer import PolyScorer, poly_score, poly_score_grid

__all__ = ["EmbSum", "PolyAttention", "PolyScorer", "poly_score", "poly_score_grid"]
