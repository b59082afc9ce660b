"""The one error type for bad data on disk or bad dataset options."""

from __future__ import annotations

import os
import re

__all__ = ["DataError"]

# A DataLoader worker's exception comes back as `DataError("Caught DataError in DataLoader worker
# process 0.\nOriginal Traceback (most recent call last): ...\nemanet.data.errors.DataError: MSG")`
# (torch._utils.ExceptionWrapper.reraise); MSG is everything after the last such line.
_WORKER_PREFIX = "Caught DataError in DataLoader worker"
_ORIGINAL_LINE = re.compile(r"^[\w.]*DataError: ", re.MULTILINE)


def _unwrap_worker_message(message: str) -> str:
    """The original message of a DataError re-raised from a loader worker (else `message` as is)."""
    if not message.startswith(_WORKER_PREFIX):
        return message
    matches = list(_ORIGINAL_LINE.finditer(message))
    if not matches:
        return message
    return message[matches[-1].end() :].rstrip("\n")


class DataError(ValueError):
    """A dataset file, folder or option is wrong.

    The message says which file, what is wrong with it and how to fix it. `path` (when known) is
    the offending file, so callers that skip bad samples can report it without parsing the text.

    Raised in a DataLoader worker, it reaches the main process with the same message as without
    workers (the worker's traceback is dropped: the message already names the file and the fix).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        message = _unwrap_worker_message(str(message))
        super().__init__(message)
        self.path = None if path is None else str(path)
