"""Disk trouble, said plainly: why a write failed (no space, read-only, permission), whether
there is room for the next checkpoint, and the temporary files that killed writes left.

torch.save reports a full disk as `[enforce fail at inline_container.cc] unexpected pos`;
writing through a Python file object keeps the `OSError` (with its errno) in the exception
chain, which is where `write_error_cause` finds it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = [
    "CheckpointWriteError",
    "write_error_cause",
    "check_free_space",
    "remove_stale_temporaries",
    "mib",
]

_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file too large for this file system",
    errno.EIO: "input/output error (failing disk or lost network mount)",
}


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; earlier checkpoints are intact."""


def mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def write_error_cause(exc: BaseException, directory: str | Path) -> str:
    """A few words for why writing into `directory` failed, from the errno in `exc`'s chain
    or, for torch's errno-less messages, from the file system itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _CAUSES:
            return _CAUSES[seen.errno]
        seen = seen.__cause__ or seen.__context__
    directory = Path(directory)
    if directory.is_dir():
        if not os.access(directory, os.W_OK):
            return "permission denied"
        if shutil.disk_usage(directory).free < 2**20:
            return "no space left on device"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_free_space(directory: str | Path, needed: int, what: str) -> None:
    """Raise `CheckpointWriteError` when `directory` has less than `needed` bytes free."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise CheckpointWriteError(
            f"not writing {what}: no space left on device in {directory} ({mib(free)} free, "
            f"the last checkpoint took {mib(needed)}); free some space, or set train.keep_checkpoints "
            "lower, then resume with --resume"
        )


def remove_stale_temporaries(directory: str | Path) -> tuple[int, int]:
    """Delete `.*.tmp` files that killed atomic writes left in `directory`.

    Call it only while holding the run lock: a live writer's temporary file looks the same.

    Returns:
        (number of files removed, bytes freed).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0, 0
    count = freed = 0
    for tmp in directory.glob(".*.tmp"):
        try:
            size = tmp.stat().st_size
            tmp.unlink()
        except FileNotFoundError:
            continue
        count, freed = count + 1, freed + size
    return count, freed
