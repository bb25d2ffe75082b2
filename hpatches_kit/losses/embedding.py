"""Embedding losses for image-pair matching and retrieval (see package docstring)."""

__all__: list[str] = []
