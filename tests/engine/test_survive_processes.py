"""Runs that survive (issue 18), with real processes: SIGTERM/SIGINT at a random iteration of
a run with loader workers, two runs on one directory, and a 2-rank torchrun job that loses a
rank (gloo, CPU), with and without restarts. All slow."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow


def _overrides(out: Path, iters: int = 8, **extra) -> list[str]:
    # no periodic checkpoint before the end: the stop itself must write one
    extra = {"train.checkpoint_every": 100, "data.num_workers": 2, **extra}
    return tiny_overrides(out, iters=iters, **extra)


def _train(args: list[str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "emanet", "train", "demo", "--no-progress", *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for_iter(out: Path, it: int, proc: subprocess.Popen, limit: float = 300) -> None:
    log, end = out / "train.log", time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if log.is_file() and f"iter {it}/" in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(
        f"iteration {it} never logged; output: {proc.communicate()[0] if proc.poll() else ''}"
    )


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_and_resume_is_identical(tmp_path, signum):
    straight = _train(_overrides(tmp_path / "straight"))
    assert straight.wait(timeout=600) == 0, straight.stdout.read()

    out = tmp_path / "stopped"
    run = _train(_overrides(out), start_new_session=True)
    _wait_for_iter(out, random.randint(1, 5), run)
    os.killpg(run.pid, signum)  # the whole group, loader workers included, as Slurm or Ctrl-C
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 128 + signum, output
    stopped = re.search(r"stopped after iteration (\d+)/8, checkpoint (\S+); resume with: (.*)", output)
    assert stopped, output
    done, ckpt = int(stopped.group(1)), Path(stopped.group(2))
    assert torch.load(ckpt, weights_only=True)["iteration"] == done
    assert not list((out / "checkpoints").glob(".*.tmp")) and not (out / "run.lock").exists()

    # the printed command itself resumes the run
    resume = stopped.group(3).split()
    assert resume[:2] == ["emanet", "train"] and resume[-1] == "--resume"
    cmd = [sys.executable, "-m", "emanet", "train", *resume[2:], "--no-progress"]
    resumed = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from iter {done} ({ckpt})" in resumed.stdout + resumed.stderr
    a, b = (
        _weights(tmp_path / "straight/checkpoints/iter_0000008.pt"),
        _weights(out / "checkpoints/iter_0000008.pt"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_second_run_on_a_live_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    # long enough that the first run is still training when the second one starts
    first = _train(_overrides(out, iters=40, **{"data.num_workers": 0}))
    _wait_for_iter(out, 1, first)
    second = subprocess.run(
        [sys.executable, "-m", "emanet", "train", "demo", *_overrides(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 2
    assert re.fullmatch(
        rf"emanet: error: {out} is in use by a live run \(pid {first.pid} on .*\n", second.stderr
    )
    assert first.wait(timeout=600) == 0, first.stdout.read()
    config = (out / "config.yaml").read_text()
    assert "num_workers: 0" in config  # the second run did not overwrite it
    assert len(re.findall(r"  iter \d+/40 ", (out / "train.log").read_text())) == 40


def _rank_pid(tag: str, rank: int, limit: float = 120) -> int:
    """The pid of the torchrun worker of `rank` whose environment carries `tag`."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        for entry in Path("/proc").iterdir():
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            wanted = (f"SURVIVE_TAG={tag}".encode(), f"RANK={rank}".encode(), b"TORCHELASTIC_RESTART_COUNT=0")
            if all(w in env for w in wanted):
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} worker found")


def _torchrun(out: Path, tag: str, restarts: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "--max-restarts", str(restarts), "-m", "emanet", "train", "demo", "--no-progress",
        *_overrides(out, iters=8, **{"train.checkpoint_every": 2, "data.num_workers": 0}),
    ]  # fmt: skip
    env = {**ENV, "SURVIVE_TAG": tag}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _end(*jobs: subprocess.Popen) -> None:
    """Kill what is left of `jobs` (torchrun and its workers: each job is a process group)."""
    for job in jobs:
        if job.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)


def test_torchrun_restart_after_a_killed_rank_gives_identical_weights(tmp_path):
    straight = _torchrun(tmp_path / "straight", "straight", 0)
    out = tmp_path / "killed"
    job = _torchrun(out, "killed", 1)  # both at once: the two CPUs wait on each other anyway
    try:
        victim = _rank_pid("killed", 1)
        end = time.monotonic() + 300
        while not (out / "checkpoints/iter_0000002.pt").is_file():
            assert time.monotonic() < end and job.poll() is None, "no first checkpoint"
            time.sleep(0.05)
        _wait_for_iter(out, random.randint(2, 6), job)
        os.kill(victim, signal.SIGKILL)
        output = job.communicate(timeout=600)[0]
        assert job.returncode == 0, output
        assert straight.wait(timeout=600) == 0, straight.communicate()[0]
    finally:
        _end(straight, job)
    log = (out / "train.log").read_text()
    assert re.search(r"resumed from iter \d+ \(.*iter_\d+\.pt, torchrun restart 1\)", log), log
    a = _weights(tmp_path / "straight/checkpoints/iter_0000008.pt")
    b = _weights(out / "checkpoints/iter_0000008.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_without_restarts_exits_naming_the_lost_rank(tmp_path):
    out = tmp_path / "lost"
    job = _torchrun(out, "lost", 0)
    try:
        victim = _rank_pid("lost", 1)
        _wait_for_iter(out, random.randint(1, 5), job)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        output = job.communicate(timeout=60)[0]  # bounded: no hang
    finally:
        _end(job)
    assert time.monotonic() - killed_at < 60 and job.returncode != 0
    assert re.search(r"rank 1|local_rank: 1", output), output
