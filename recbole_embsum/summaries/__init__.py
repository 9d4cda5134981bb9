"""User-interest summaries (paper Appendix A): prompts, LLM backends, a resumable cache."""
