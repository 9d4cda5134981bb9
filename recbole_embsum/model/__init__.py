"""EmbSum model: poly-attention (Eq. 2), scorer (Eqs. 3-4), text handling, backbone, and the RecBole model."""
from .embsum import EmbSum
from .poly_attention import PolyAttention
from .scorer import PolyScorer, poly_score, poly_score_grid

__all__ = ["EmbSum", "PolyAttention", "PolyScorer", "poly_score", "poly_score_grid"]
