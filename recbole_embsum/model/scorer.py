"""Relevance score between a User Poly-Embedding A [m, d] and a Content Poly-Embedding B [n, d] (Eqs. (3)-(4)).

    K   = flatten(A B^T)                                   # Eq. (3), matching scores, R^{mn}
    W^p = softmax(flatten(A gelu(B W^s)^T))                # Eq. (4), attention over the m*n pairs
    s   = W^p . K                                          # Eq. (4), the relevance score

`poly_score` broadcasts over leading dimensions, so the same computation scores aligned pairs ([N] users against
[N] items) and a users x items grid; `PolyScorer` owns ``W^s`` and exposes both shapes (serving reuses it).
"""
import torch
import torch.nn.functional as F
from torch import nn


def poly_score(user_poly: torch.Tensor, item_poly: torch.Tensor, item_keys: torch.Tensor) -> torch.Tensor:
    """Eqs. (3)-(4) for broadcastable leading shapes.

    Args:
        user_poly: A, [..., m, d].
        item_poly: B, [..., n, d].
        item_keys: gelu(B W^s), [..., n, d] (same leading shape as ``item_poly``).

    Returns:
        s, the broadcast leading shape (e.g. [N] for pairs, [U, I] for a grid).
    """
    matching = user_poly @ item_poly.transpose(-1, -2)  # A B^T: [..., m, n]
    attention = user_poly @ item_keys.transpose(-1, -2)  # A gelu(B W^s)^T: [..., m, n]
    k_flat = matching.flatten(-2)  # Eq. (3): K, [..., m*n]
    w_p = torch.softmax(attention.flatten(-2), dim=-1)  # Eq. (4): W^p, [..., m*n]
    return (w_p * k_flat).sum(-1)  # Eq. (4): s = W^p . K


class PolyScorer(nn.Module):
    """Holds ``W^s`` (d x d) and scores UPE/CPE pairs or grids with Eqs. (3)-(4)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.w_s = nn.Linear(d_model, d_model, bias=False)  # W^s in Eq. (4)

    def item_keys(self, item_poly: torch.Tensor) -> torch.Tensor:
        """gelu(B W^s) for ``item_poly`` [..., n, d] -> [..., n, d]."""
        return F.gelu(self.w_s(item_poly))

    def score_pairs(self, user_poly: torch.Tensor, item_poly: torch.Tensor) -> torch.Tensor:
        """Scores of aligned rows: A [N, m, d] with B [N, n, d] -> [N]."""
        return poly_score(user_poly, item_poly, self.item_keys(item_poly))

    def score_grid(self, user_poly: torch.Tensor, item_poly: torch.Tensor, chunk_elements: int = 2**24) -> torch.Tensor:
        """Scores of every user against every item: A [U, m, d] with B [I, n, d] -> [U, I].

        Items are processed in chunks so that the [U, chunk, m, n] intermediates hold about ``chunk_elements`` values.
        """
        n_users, m = user_poly.shape[:2]
        n_items, n = item_poly.shape[:2]
        chunk = max(1, chunk_elements // max(1, n_users * m * n))
        users = user_poly[:, None]  # [U, 1, m, d]
        scores = []
        for start in range(0, n_items, chunk):
            block = item_poly[start : start + chunk]  # [c, n, d]
            scores.append(poly_score(users, block[None], self.item_keys(block)[None]))  # [U, c]
        if not scores:
            return user_poly.new_zeros(n_users, 0)
        return torch.cat(scores, dim=1)
