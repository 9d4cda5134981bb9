"""ROUGE-1/2/L of generated interest summaries against reference summaries (the paper's Table 3), via rouge-score.

Scores are rouge-score's per-pair precision, recall and F1 (its default tokenizer: lower-cased alphanumeric tokens;
Porter stemming on by default), averaged over pairs with equal weight. ROUGE-L is the sentence-level LCS variant
(``rougeL``), as the paper reports "ROUGE L".
"""
from dataclasses import dataclass

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class RougeScore:
    """Mean precision, recall and F1 of one ROUGE type over all pairs, each in [0, 1]."""

    precision: float
    recall: float
    fmeasure: float


def rouge_report(predictions, references, use_stemmer=True):
    """ROUGE of ``predictions[i]`` against ``references[i]``: ``{"rouge1": RougeScore, "rouge2": ..., "rougeL": ...}``.

    Args:
        predictions: generated summaries (list of str).
        references: reference summaries, same length and order.
        use_stemmer: Porter-stem tokens before matching (rouge-score's option).
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: they must pair up")
    if not predictions:
        raise ValueError("no summary pairs to score")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = {name: [0.0, 0.0, 0.0] for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # rouge-score's order: (target, prediction)
        for name in ROUGE_TYPES:
            totals[name][0] += scores[name].precision
            totals[name][1] += scores[name].recall
            totals[name][2] += scores[name].fmeasure
    count = len(predictions)
    return {name: RougeScore(*(value / count for value in totals[name])) for name in ROUGE_TYPES}
