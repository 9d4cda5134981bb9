"""EmbSum for RecBole."""
