"""Offline precomputation and serving: export poly-embeddings, score from stored tensors, recommend."""
