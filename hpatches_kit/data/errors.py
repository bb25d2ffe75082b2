"""Errors raised by the data layer."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Bad input data: always names the offending file (or sequence) and what is wrong with it."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
