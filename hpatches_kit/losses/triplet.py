"""Triplet-family losses (see package docstring)."""

__all__: list[str] = []
