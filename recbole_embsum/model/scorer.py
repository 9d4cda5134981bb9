"""Relevance score between a User Poly-Embedding A [m, d] and a Content Poly-Embedding B [n, d] (Eqs. (3)-(4)).

    K   = flatten(A B^T)                                   # Eq. (3), matching scores, R^{mn}
    W^p = softmax(flatten(A gelu(B W^s)^T))                # Eq. (4), attention over the m*n pairs
    s   = W^p . K                                          # Eq. (4), the relevance score

`poly_score` broadcasts over leading dimensions and scores aligned pairs ([N] users against [N] items);
`poly_score_grid` scores every user against every item, one cache-sized block of items x users at a time (a users x
items grid, as in evaluation over the catalogue and in serving); `PolyScorer` owns ``W^s`` and exposes both shapes.
"""
import concurrent.futures
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


# Products per block: two 1 MiB float32 tensors. Smaller blocks fit a core's L2 but pay the dozen per-block operation
# dispatches more often: 2**17 ran at 0.84 of the plain matmul's rate, 2**19 at 0.87-0.90 (1 thread, 1 MiB L2).
GRID_BLOCK_ELEMENTS = 2**19
GRID_MIN_BLOCK_ITEMS = 32  # fewer users per block rather than blocks of fewer items (a small matmul runs slowly)


def _score_block(scores, user_poly, item_poly, item_keys, items: slice, users: slice) -> None:
    """Eqs. (3)-(4) for the ``users`` x ``items`` block of the grid, written into ``scores`` [U, I]."""
    m, d = user_poly.shape[1:]
    n = item_poly.size(1)
    codes = item_poly[items].flatten(0, 1)  # B of the block's items: [b*n, d]
    keys = item_keys[items].flatten(0, 1)  # gelu(B W^s): [b*n, d]
    users_t = user_poly[users].flatten(0, 1).T  # A^T of the block's users side by side: [d, g*m]
    b, g = codes.size(0) // n, users_t.size(1) // m
    matching = (codes @ users_t).view(b, n, g, m)  # Eq. (3): K = A B^T of every pair, [b, n, g, m]
    logits = (keys @ users_t).view(b, n, g, m)  # A gelu(B W^s)^T, [b, n, g, m]
    top = logits.amax(1).amax(-1, keepdim=True).unsqueeze(1)  # each pair's largest of its m*n logits: [b, 1, g, 1]
    weights = logits.sub_(top).exp_()  # Eq. (4): W^p before normalising, in place
    relevance = matching.mul_(weights).sum(1).sum(-1) / weights.sum(1).sum(-1)  # Eq. (4): s = W^p . K, [b, g]
    scores[users, items] = relevance.T


def _one_intra_op_thread():
    torch.set_num_threads(1)


def poly_score_grid(user_poly: torch.Tensor, item_poly: torch.Tensor, item_keys: torch.Tensor,
                    block_elements: Optional[int] = None) -> torch.Tensor:
    """Eqs. (3)-(4) for every user against every item, for inference (no autograd graph).

    The grid goes in blocks of items x users. In each block one matrix product per equation contracts the block's
    item codes (B, and gelu(B W^s)) with the codes of all the block's users side by side (A^T), ``[b*n, d] @ [d, g*m]``:
    wide enough for the machine's matmul rate, where one product per user (``[b*n, d] @ [d, m]``, m = 32 columns)
    runs at about three quarters of it. The softmax over each pair's m*n logits then runs in place on the block
    (max, exp, weighted sum over the code axes), so no temporary is larger than a block of about ``block_elements``
    products (default ``GRID_BLOCK_ELEMENTS``), whatever the numbers of users and items.

    With more than one torch thread, whole blocks go to ``torch.get_num_threads()`` worker threads, each running its
    blocks on one intra-op thread, instead of splitting each of a block's dozen small operations across threads: every
    split operation ends in a barrier that waits for the slowest thread, and on a busy machine (a descheduled thread)
    those waits made two threads several times slower than one.

    Args:
        user_poly: A, [U, m, d].
        item_poly: B, [I, n, d].
        item_keys: gelu(B W^s), [I, n, d].

    Returns:
        s, [U, I]. Equal to ``poly_score(A[:, None], B[None], keys[None])`` without materialising per-pair matmuls.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (user_poly, item_poly, item_keys)):
        raise ValueError("poly_score_grid scores in place, without autograd: call it under torch.no_grad(), or use "
                         "poly_score for scores to differentiate")
    n_users, m, _ = user_poly.shape
    n_items, n, _ = item_poly.shape
    per_pair = 2 * m * n  # products a block holds per (user, item) pair: m*n matching scores and m*n logits
    block_elements = block_elements or GRID_BLOCK_ELEMENTS
    group = max(1, min(n_users, block_elements // (per_pair * GRID_MIN_BLOCK_ITEMS)))  # users per block
    block = max(1, block_elements // (per_pair * group))  # items per block
    scores = user_poly.new_empty(n_users, n_items)
    blocks = [(slice(start, start + block), slice(first, first + group))
              for start in range(0, n_items, block) for first in range(0, n_users, group)]
    threads = torch.get_num_threads()
    if threads == 1 or len(blocks) < 2 or user_poly.device.type != "cpu":
        for items, users in blocks:
            _score_block(scores, user_poly, item_poly, item_keys, items, users)
        return scores
    autocast = {"enabled": torch.is_autocast_enabled("cpu"), "dtype": torch.get_autocast_dtype("cpu")}

    def score(block):  # autocast is per thread: the workers compute as the caller would
        with torch.autocast("cpu", **autocast):
            _score_block(scores, user_poly, item_poly, item_keys, *block)

    try:
        with concurrent.futures.ThreadPoolExecutor(min(threads, len(blocks)), initializer=_one_intra_op_thread) as pool:
            list(pool.map(score, blocks))
    finally:
        torch.set_num_threads(threads)  # the workers' setting also reached MKL's process-wide thread count
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
        """Scores of every user against every item: A [U, m, d] with B [I, n, d] -> [U, I], for inference (computed
        without autograd; ``score_pairs`` is the differentiable form).

        ``gelu(B W^s)`` is computed ``chunk_items`` items at a time.
        """
        with torch.no_grad():
            scores = [poly_score_grid(user_poly, block, self.item_keys(block))
                      for block in item_poly.split(chunk_items)]
        return torch.cat(scores, dim=1) if scores else user_poly.new_zeros(user_poly.size(0), 0)
