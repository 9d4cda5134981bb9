"""Offline precomputation and serving: export poly-embeddings, score from stored tensors, recommend.

* :func:`export_checkpoint` / :func:`export_model` (``recbole-embsum export``) write every item's CPE and every
  user's UPE to a folder of memory-mapped safetensors shards (format: :mod:`recbole_embsum.serving.layout`).
* :class:`EmbeddingStore` opens export folders and scores with Eqs. (3)-(4): ``score(user, candidates)``,
  ``topk(user, k, chunk_size)`` (streamed), ``iter_scores(users, chunk_size)`` (a users x items grid, streamed).
* :func:`recommend` (``recbole-embsum recommend``) ranks candidates or the catalogue, with the stored summary.

The names below are imported on first use, so ``recbole-embsum export --help`` (``serving/cli.py``) loads no torch.
"""
from recbole_embsum.lazy import lazy_attributes

_PUBLIC = {
    "EmbeddingStore": ".store",
    "Recommendations": ".recommend",
    "export_checkpoint": ".export",
    "export_model": ".export",
    "format_recommendations": ".recommend",
    "recommend": ".recommend",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_attributes(__name__, _PUBLIC)
