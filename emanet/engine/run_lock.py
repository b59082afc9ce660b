"""One live run per directory: `output_dir/run.lock` holds the pid, host and start time.

    lock = RunLock(run_dir)
    lock.acquire()      # raises RunLocked if another live process trains here
    ...
    lock.release()

A lock whose process is gone (same host, pid not running) is stale: it is taken over with a
warning. A lock from another host cannot be checked; it is refused with the file to delete.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["RunLock", "RunLocked", "pid_alive"]

LOCK_NAME = "run.lock"


class RunLocked(RuntimeError):
    """Another live run holds the directory."""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


class RunLock:
    """The lock file of run directory `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.held = False

    def _read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return {}  # half-written by a process killed at that moment: stale

    def acquire(self) -> None:
        """Create the lock; take over a stale one with a warning.

        Raises:
            RunLocked: a live process (or one on another host) holds the directory.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            # the torchrun job: its restarts (maybe with rank 0 on another node) take the lock over
            "job": os.environ.get("TORCHELASTIC_RUN_ID"),
        }
        for _ in range(3):  # a stale lock removed between our checks: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(socket.gethostname(), os.environ.get("TORCHELASTIC_RUN_ID"))
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(info) + "\n")
            self.held = True
            return
        raise RunLocked(f"could not create {self.path}; another run keeps taking it")

    def _take_over_if_stale(self, host: str, job: str | None) -> None:
        other = self._read()
        pid, other_host = other.get("pid"), other.get("host")
        if job is not None and other.get("job") == job:
            pid = os.getpid()  # an earlier attempt of this same torchrun job: ours
        owner = f"pid {pid} on {other_host}, started {other.get('started', '?')}"
        if isinstance(pid, int) and other_host == host and pid != os.getpid() and pid_alive(pid):
            raise RunLocked(
                f"{self.directory} is in use by a live run ({owner}); wait for it to finish, stop it, "
                "or choose another output_dir"
            )
        if isinstance(pid, int) and other_host not in (None, host):
            raise RunLocked(
                f"{self.directory} is locked by a run on another host ({owner}); if that run is gone, "
                f"delete {self.path}, or choose another output_dir"
            )
        if pid != os.getpid():
            print(f"warning: taking over the stale lock {self.path} ({owner}: not running)", file=sys.stderr)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held and self._read().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False
