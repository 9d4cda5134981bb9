"""Offline precomputation and serving: export poly-embeddings, score from stored tensors, recommend.

* :func:`export_checkpoint` / :func:`export_model` (``recbole-embsum export``) write every item's CPE and every
  user's UPE to a folder of memory-mapped safetensors shards (format: :mod:`recbole_embsum.serving.layout`).
* :class:`EmbeddingStore` opens export folders and scores with Eqs. (3)-(4): ``score(user, candidates)``,
  ``topk(user, k, chunk_size)`` (streamed), ``iter_scores(users, chunk_size)`` (a users x items grid, streamed).
* :func:`recommend` (``recbole-embsum recommend``) ranks candidates or the catalogue, with the stored summary.
"""
from .export import export_checkpoint, export_model
from .recommend import Recommendations, format_recommendations, recommend
from .store import EmbeddingStore

__all__ = ["EmbeddingStore", "Recommendations", "export_checkpoint", "export_model", "format_recommendations",
           "recommend"]
