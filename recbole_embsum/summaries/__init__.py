"""User-interest summaries (paper Appendix A): prompts, LLM backends, a resumable cache.

The model reads summaries with :func:`load_summaries` (``{raw user id: summary}``); the ``recbole-embsum summarize``
command writes them with :func:`summarize_dataset`. Heavy libraries are imported only by the backends that need them.
"""
from .options import resolve_options
from .pipeline import SummaryMismatchError, SummaryReport, summarize_dataset
from .store import SummaryAppender, SummaryFileError, load_records, load_summaries, summaries_path

__all__ = [
    "SummaryAppender", "SummaryFileError", "SummaryMismatchError", "SummaryReport", "load_records", "load_summaries",
    "resolve_options", "summaries_path", "summarize_dataset",
]
