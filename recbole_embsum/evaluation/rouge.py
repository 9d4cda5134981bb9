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


def shared_prefix(texts):
    """The longest run of leading words every one of ``texts`` starts with (a template such as "The user reads
    about"), as a string; "" when they share none."""
    words = [text.split() for text in texts]
    if not words:
        return ""
    prefix = []
    for column in zip(*words):
        if any(word != column[0] for word in column):
            break
        prefix.append(column[0])
    return " ".join(prefix)


def without_prefix(text, prefix):
    """``text`` minus ``prefix`` (whole words) when it starts with it, else ``text`` unchanged."""
    if prefix and (text == prefix or text.startswith(prefix + " ")):
        return text[len(prefix):].strip()
    return text


def rouge_without_shared_prefix(predictions, references, use_stemmer=True):
    """``(prefix, rouge_report(...))`` after removing the words every reference starts with from references and
    predictions alike: a model that only copies the template then scores 0 instead of the template's share."""
    prefix = shared_prefix(references)
    return prefix, rouge_report([without_prefix(text, prefix) for text in predictions],
                                [without_prefix(text, prefix) for text in references], use_stemmer=use_stemmer)


def user_specific_count(predictions, references, margin=0.1, use_stemmer=True):
    """How many ``predictions[i]`` match their own user's reference (ROUGE-L F1, after the references' shared prefix
    is removed from both) by at least ``margin`` better than they match the other users' references on average: a
    summary that reads the user's history names that user's interests; one copied from a template, or noise with a
    topical word in it, fits everybody about alike (a half-trained demo decoder: own 0.10 vs others 0.09)."""
    predictions, references = list(predictions), list(references)
    prefix = shared_prefix(references)
    predictions = [without_prefix(text, prefix) for text in predictions]
    references = [without_prefix(text, prefix) for text in references]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    specific = 0
    for i, prediction in enumerate(predictions):
        scores = [scorer.score(reference, prediction)["rougeL"].fmeasure for reference in references]
        others = scores[:i] + scores[i + 1:]
        specific += bool(others) and scores[i] >= sum(others) / len(others) + margin
    return specific


def looks_meaningful(predictions, references=None, min_share=0.5):
    """Whether generated summaries can be shown as explanations: a decoder that has not learned to summarise writes
    the same few texts for everybody. So at least ``min_share`` of them must be distinct (given their
    ``references``: at least ``min_share`` as many distinct texts as the references have, since users who share
    their interests rightly get the same summary), and, given ``references``, at least ``min_share`` of them specific
    to their user (:func:`user_specific_count`)."""
    predictions = [text.strip() for text in predictions]
    if not predictions:
        return False
    variety = len(set(text.strip() for text in references)) if references is not None else len(predictions)
    if len(set(predictions)) < max(2, min_share * variety):
        return False
    return references is None or user_specific_count(predictions, references) >= max(2, min_share * len(predictions))
