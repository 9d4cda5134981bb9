"""Per-impression batching of labeled evaluation, for any two-tower content model.

RecBole's labeled evaluation (``eval_args: {mode: labeled}``) gives one row per candidate, so an impression's history
is repeated for every candidate and a popular item appears in many impressions. Two helpers keep the work to one
encoder pass per distinct history and one per item:

* :func:`per_distinct_history` encodes each distinct ``(history, length)`` of a batch once and spreads the result
  back to the rows.
* :class:`ItemVectorCache` keeps each item's vectors for the rest of an evaluation pass; it empties itself when any
  parameter of the model changes in place (an optimizer step, ``load_state_dict``) and when the model switches mode.
"""
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm


def per_distinct_history(encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], item_seq: torch.Tensor,
                         item_seq_len: torch.Tensor) -> torch.Tensor:
    """``encode(item_seq, item_seq_len)`` for rows [R], calling ``encode`` on each distinct history only once.

    Args:
        encode: maps histories [U, L] and lengths [U] to per-user outputs [U, ...].
        item_seq: [R, L] histories; item_seq_len: [R].

    Returns:
        [R, ...], row r the output for row r's history.
    """
    rows = torch.cat([item_seq, item_seq_len[:, None]], dim=1)  # [R, L+1]
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return encode(unique[:, :-1], unique[:, -1])[inverse]


def weights_version(module: nn.Module) -> tuple:
    """Changes whenever any parameter of ``module`` is modified in place (optimizer steps, ``load_state_dict``)."""
    return tuple(p._version for p in module.parameters())


class ItemVectorCache:
    """Evaluation-time item vectors ``[n_items, ...]``, each item encoded once per evaluation pass.

    Vectors keep the dtype they were computed in (e.g. bfloat16 under autocast).

    Args:
        n_items: size of the item id space (RecBole's ``n_items``, id 0 = padding included).
        batch_size: items per ``encode`` call when filling the cache.
    """

    def __init__(self, n_items: int, batch_size: int):
        self.n_items = n_items
        self.batch_size = batch_size
        self.vectors: Optional[torch.Tensor] = None  # [n_items, ...] once an item has been encoded
        self._ready: Optional[torch.Tensor] = None  # [n_items] bool
        self._key = None

    def clear(self) -> None:
        """Forget every cached vector."""
        self.vectors, self._ready, self._key = None, None, None

    def lookup(self, item_ids: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor],
               owner: nn.Module) -> torch.Tensor:
        """Vectors of ``item_ids`` [N] -> [N, ...], encoding (without gradients) the items not cached yet.

        Args:
            encode: maps item ids [c] to their vectors [c, ...].
            owner: the model whose parameters the vectors depend on; a change to any of them empties the cache.
        """
        key = (weights_version(owner), item_ids.device)
        if self._ready is None or self._key != key:
            self.clear()
            self._key = key
            self._ready = torch.zeros(self.n_items, dtype=torch.bool, device=item_ids.device)
        unique = torch.unique(item_ids)
        missing = unique[~self._ready[unique]]
        chunks = missing.split(self.batch_size) if missing.numel() else ()
        with torch.no_grad():
            for chunk in tqdm(chunks, desc="encoding items", disable=len(chunks) < 4, leave=False):
                vectors = encode(chunk)  # [c, ...]
                if self.vectors is None:
                    self.vectors = vectors.new_zeros(self.n_items, *vectors.shape[1:])
                self.vectors[chunk] = vectors.to(self.vectors.dtype)
                self._ready[chunk] = True
        return self.vectors[item_ids]
