"""Converters from the published MIND and Goodreads formats to RecBole atomic files, and raw-format synthetic data."""
