"""Evaluation: MIND per-impression metrics, their collector, the comparison runner and summary ROUGE."""
