"""Relevance score between a User Poly-Embedding A [m, d] and a Content Poly-Embedding B [n, d] (Eqs. (3)-(4)).

    K   = flatten(A B^T)                                   # Eq. (3), matching scores, R^{mn}
    W^p = softmax(flatten(A gelu(B W^s)^T))                # Eq. (4), attention over the m*n pairs
    s   = W^p . K                                          # Eq. (4), the relevance score

`poly_score` broadcasts over leading dimensions and scores aligned pairs ([N] users against [N] items);
`poly_score_grid` scores every user against every item with one large matmul (a users x items grid, as in
evaluation over the catalogue and in serving); `PolyScorer` owns ``W^s`` and exposes both shapes.
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


def poly_score_grid(user_poly: torch.Tensor, item_poly: torch.Tensor, item_keys: torch.Tensor) -> torch.Tensor:
    """Eqs. (3)-(4) for every user against every item, as one [U*m, d] x [d, I*2n] matmul.

    Args:
        user_poly: A, [U, m, d].
        item_poly: B, [I, n, d].
        item_keys: gelu(B W^s), [I, n, d].

    Returns:
        s, [U, I]. Equal to ``poly_score(A[:, None], B[None], keys[None])`` without materialising per-pair matmuls.
    """
    n_users, m, d = user_poly.shape
    n_items, n, _ = item_poly.shape
    both = torch.cat([item_poly, item_keys], dim=1).reshape(n_items * 2 * n, d)  # [B; gelu(B W^s)]: [I*2n, d]
    products = (user_poly.reshape(n_users * m, d) @ both.T).view(n_users, m, n_items, 2, n)  # [U, m, I, 2, n]
    matching = products[:, :, :, 0]  # Eq. (3): A B^T per pair, [U, m, I, n]
    attention = products[:, :, :, 1]  # A gelu(B W^s)^T per pair, [U, m, I, n]
    # Eq. (4): softmax over the m*n pairs of each (user, item), i.e. over dims (1, 3), then s = W^p . K.
    weights = torch.exp(attention - attention.amax(dim=(1, 3), keepdim=True))  # [U, m, I, n]
    return (weights * matching).sum(dim=(1, 3)) / weights.sum(dim=(1, 3))  # [U, I]


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

        Items are processed in chunks so that the [U, m, chunk, 2n] intermediates hold about ``chunk_elements`` values.
        """
        n_users, m = user_poly.shape[:2]
        n_items, n = item_poly.shape[:2]
        chunk = max(1, chunk_elements // max(1, n_users * m * 2 * n))
        scores = []
        for start in range(0, n_items, chunk):
            block = item_poly[start : start + chunk]  # [c, n, d]
            scores.append(poly_score_grid(user_poly, block, self.item_keys(block)))  # [U, c]
        if not scores:
            return user_poly.new_zeros(n_users, 0)
        return torch.cat(scores, dim=1)
