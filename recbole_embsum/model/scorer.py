"""Relevance score between a User Poly-Embedding A [m, d] and a Content Poly-Embedding B [n, d] (Eqs. (3)-(4)).

    K   = flatten(A B^T)                                   # Eq. (3), matching scores, R^{mn}
    W^p = softmax(flatten(A gelu(B W^s)^T))                # Eq. (4), attention over the m*n pairs
    s   = W^p . K                                          # Eq. (4), the relevance score

`poly_score` broadcasts over leading dimensions and scores aligned pairs ([N] users against [N] items);
`poly_score_grid` scores every user against every item, one cache-sized block of items at a time (a users x items
grid, as in evaluation over the catalogue and in serving); `PolyScorer` owns ``W^s`` and exposes both shapes.
"""
from typing import Optional

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


GRID_BLOCK_ELEMENTS_PER_THREAD = 2**18  # products per thread and block (1 MiB in float32): stays in a core's cache


def poly_score_grid(user_poly: torch.Tensor, item_poly: torch.Tensor, item_keys: torch.Tensor,
                    block_elements: Optional[int] = None) -> torch.Tensor:
    """Eqs. (3)-(4) for every user against every item.

    Items go in blocks. For each block, all users' A is contracted with the block's B and with its gelu(B W^s)
    (batched over users, reading the item rows where they are, with no copy), which gives each (user, item) pair its
    m*n matching scores and its m*n attention logits as contiguous rows; the softmax and the weighted sum then run
    over contiguous memory. No temporary is larger than a block, about ``block_elements`` products (default
    ``GRID_BLOCK_ELEMENTS_PER_THREAD`` per torch thread), whatever the numbers of users and items.

    Args:
        user_poly: A, [U, m, d].
        item_poly: B, [I, n, d].
        item_keys: gelu(B W^s), [I, n, d].

    Returns:
        s, [U, I]. Equal to ``poly_score(A[:, None], B[None], keys[None])`` without materialising per-pair matmuls.
    """
    n_users, m, d = user_poly.shape
    n_items, n, _ = item_poly.shape
    if block_elements is None:
        block_elements = GRID_BLOCK_ELEMENTS_PER_THREAD * torch.get_num_threads()
    block = max(1, block_elements // max(1, 2 * n_users * m * n))  # items per block
    users_t = user_poly.transpose(1, 2)  # A^T: [U, d, m]
    scores = user_poly.new_empty(n_users, n_items)
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        size = stop - start
        # Eq. (3): A B^T and A gelu(B W^s)^T of every pair; row (u, i) holds the m*n pairs of user u and item i
        matching = torch.matmul(item_poly[start:stop].reshape(size * n, d), users_t).view(n_users, size, n * m)
        logits = torch.matmul(item_keys[start:stop].reshape(size * n, d), users_t).view(n_users, size, n * m)
        weights = torch.softmax(logits, dim=-1)  # Eq. (4): W^p over the m*n pairs, [U, b, nm]
        scores[:, start:stop] = torch.linalg.vecdot(weights, matching)  # Eq. (4): s = W^p . K
    return scores


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

    def score_grid(self, user_poly: torch.Tensor, item_poly: torch.Tensor, chunk_items: int = 8192) -> torch.Tensor:
        """Scores of every user against every item: A [U, m, d] with B [I, n, d] -> [U, I].

        ``gelu(B W^s)`` is computed ``chunk_items`` items at a time.
        """
        scores = [poly_score_grid(user_poly, block, self.item_keys(block)) for block in item_poly.split(chunk_items)]
        return torch.cat(scores, dim=1) if scores else user_poly.new_zeros(user_poly.size(0), 0)
