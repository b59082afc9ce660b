"""Atomic file writes: a crash mid-write never leaves a half-written file in place."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_json"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Yield a temporary path next to `path`; on success move it over `path` in one step.

    The temporary file lives in the same directory, so `os.replace` is atomic. On error the
    temporary file is removed and whatever was at `path` before stays intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Write `obj` as JSON (one trailing newline) to `path`, atomically (`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
