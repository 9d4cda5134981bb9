"""Recommendations and explanations from an :class:`~recbole_embsum.serving.store.EmbeddingStore`.

:func:`recommend` ranks either the given candidates or the whole catalogue (streamed, top ``k``);
:func:`format_recommendations` renders the result as the text ``recbole-embsum recommend`` prints.
"""
from typing import List, NamedTuple, Optional, Sequence

from .store import DEFAULT_CHUNK_SIZE, EmbeddingStore


class Recommendations(NamedTuple):
    """Ranked ``(item id, score)`` pairs, best first, and the user's stored interest summary (None if absent)."""

    user: str
    ranked: List[tuple]
    summary: Optional[str]


def recommend(store: EmbeddingStore, user: str, candidates: Optional[Sequence[str]] = None, k: Optional[int] = None,
              chunk_size: int = DEFAULT_CHUNK_SIZE) -> Recommendations:
    """Rank ``candidates`` for ``user`` (all of them, or the best ``k``), or the catalogue's best ``k`` without them.

    Ties keep the candidates' order.
    """
    if candidates is None and k is None:
        raise ValueError("give candidates, k, or both")
    if candidates is not None:
        if not candidates:
            raise ValueError("the candidate list is empty")
        scores = store.score(user, candidates, chunk_size).tolist()
        ranked = sorted(zip(candidates, scores), key=lambda pair: -pair[1])[:k]
    else:
        ranked = store.topk(user, k, chunk_size)
    return Recommendations(str(user), ranked, store.summary(user))


def format_recommendations(result: Recommendations, explain: bool = False) -> str:
    """``rank<TAB>item<TAB>score`` lines under a header; with ``explain`` the interest summary comes first."""
    lines = []
    if explain:
        summary = result.summary or "(no summary stored for this user; export with --summaries to add one)"
        lines += [f"# interest summary of {result.user}: {summary}"]
    lines.append("rank\titem\tscore")
    lines += [f"{rank}\t{item}\t{score:.6f}" for rank, (item, score) in enumerate(result.ranked, start=1)]
    return "\n".join(lines)
