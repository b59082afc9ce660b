"""The one error type for bad data on disk or bad dataset options."""

from __future__ import annotations

import os

__all__ = ["DataError"]


class DataError(ValueError):
    """A dataset file, folder or option is wrong.

    The message says which file, what is wrong with it and how to fix it. `path` (when known) is
    the offending file, so callers that skip bad samples can report it without parsing the text.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
