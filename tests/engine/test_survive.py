"""Runs that survive (issue 18), the fast part: bad config values, full disks, the run lock,
resume checks, stale temporaries, and a CLI that starts without torch."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emanet.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from emanet.engine.config import ConfigError, load_config
from emanet.engine.distributed import DistInfo
from emanet.engine.resume_check import ResumeMismatch, check_resumable
from emanet.engine.run_guard import lock_run_dir
from emanet.engine.run_lock import RunLock, RunLocked
from emanet.engine.schedule import build_optimizer
from emanet.engine.storage import CheckpointWriteError

ROOT = Path(__file__).resolve().parents[2]

# override -> what the one-line error must say (key, value and the valid range)
BAD_VALUES = [
    ("train.lr=abc", "train.lr='abc' has the wrong type; it must be float"),
    ("train.lr=0", "train.lr=0 is out of range; it must be > 0"),
    ("train.log_every=0", "train.log_every=0 is out of range; it must be >= 1"),
    ("train.iters=2.5", "train.iters=2.5 has the wrong type; it must be int"),
    ("model.options=5", "model.options=5 has the wrong type; it must be mapping"),
    ("output_dir=", "output_dir=None must be a directory path"),
    ("train.momentum=1.5", "train.momentum=1.5 is out of range; it must be in [0, 1]"),
    ("data.cat_max_ratio=0", "data.cat_max_ratio=0 is out of range; it must be in (0, 1]"),
    ("data.num_workers=-1", "data.num_workers=-1 is out of range; it must be >= 0"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints=-1 is out of range; it must be >= 0"),
    ("eval.crop_size=[0,5]", "eval.crop_size=[0, 5] must be a non-empty list of numbers > 0"),
    ("data.crop_size=abc", "data.crop_size='abc' has the wrong type; it must be list[int]"),
    ("train.ohem_aux=true", "train.ohem_aux=true needs train.ohem=true"),
    ("train.accumulate=3", "train.batch_size=16 must be divisible by train.accumulate=3"),
    ("train.ema_decay=1", "train.ema_decay=1 is out of range; it must be in (0, 1)"),
    ("train.ema_decay=0", "train.ema_decay=0 is out of range; it must be in (0, 1)"),
    ("train.early_stop_patience=-1", "train.early_stop_patience=-1 is out of range; it must be >= 0"),
    ("train.early_stop_min_delta=-0.1", "train.early_stop_min_delta=-0.1 is out of range; it must be >= 0"),
    ("train.early_stop_patience=3", "train.early_stop_patience=3 needs train.eval_every > 0"),
    ("train.best_metric=ema_mIoU", "train.best_metric='ema_mIoU' needs train.ema_decay"),
    ("train.best_metric=loss", "train.best_metric='loss' in recipe demo is not valid; choose one of mIoU"),
    ("train.deterministic=maybe", "train.deterministic='maybe' has the wrong type; it must be bool"),
    ("train.amp=fp8", "train.amp='fp8' in recipe demo is not valid; choose one of auto, none, bf16, fp16"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_config_values_give_one_line(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("demo", ["train.batch_size=16", override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"output_dir='.*f' is a file"):
        load_config("demo", [f"output_dir={tmp_path / 'f'}"])


def _state(numel: int) -> dict:
    return {"model": {"w": torch.arange(numel, dtype=torch.float32)}, "iteration": 1}


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root may mount it); None where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_names_path_and_cause_and_keeps_earlier(small_disk, tmp_path, monkeypatch):
    directory = (small_disk or tmp_path) / "checkpoints"
    save_checkpoint(_state(1000), directory, 1)
    if small_disk is None:  # no mount permission: the writer raises as a full disk would
        monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "")))
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(_state(1_000_000), directory, 2)  # 4 MB on a 3 MiB disk
    message = str(info.value)
    assert str(directory / "iter_0000002.pt") in message and "no space left on device" in message
    assert "iter_0000001.pt is intact" in message
    assert [p.name for p in directory.iterdir()] == ["iter_0000001.pt"]  # no partial file
    assert load_checkpoint(directory)["iteration"] == 1


def test_free_space_checked_before_writing(tmp_path, monkeypatch):
    save_checkpoint(_state(1000), tmp_path, 1)
    usage = type("Usage", (), {"free": 10})()
    monkeypatch.setattr("emanet.engine.storage.shutil.disk_usage", lambda _: usage)
    with pytest.raises(CheckpointWriteError, match=r"not writing checkpoint .*iter_0000002.pt: no space"):
        save_checkpoint(_state(1000), tmp_path, 2)
    assert list_checkpoints(tmp_path) == [tmp_path / "iter_0000001.pt"]


def test_read_only_directory_is_named(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("emanet.fileio.tempfile.mkstemp", read_only)
    with pytest.raises(CheckpointWriteError, match=r"iter_0000003.pt: read-only file system"):
        save_checkpoint(_state(10), tmp_path, 3)


def test_lock_refuses_a_live_run_and_takes_over_a_stale_one(tmp_path, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        RunLock(tmp_path).acquire()
        lock_file = tmp_path / "run.lock"
        lock_file.write_text(lock_file.read_text().replace(str(os.getpid()), str(other.pid)))
        with pytest.raises(RunLocked, match=rf"in use by a live run \(pid {other.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        other.kill()
        other.wait()
    lock = RunLock(tmp_path)
    lock.acquire()  # the process is gone: stale
    assert f"taking over the stale lock {lock_file} (pid {other.pid}" in capsys.readouterr().err
    lock.release()
    assert not lock_file.exists()


def test_leftover_temporaries_removed_at_start(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / ".iter_0000004.pt.k3j2.tmp").write_bytes(b"0" * 4096)
    (ckpts / "iter_0000002.pt").write_bytes(b"kept")
    lock, note = lock_run_dir(tmp_path, ckpts, DistInfo())
    lock.release()
    assert note.startswith("removed 1 temporary file(s)")
    assert [p.name for p in ckpts.iterdir()] == ["iter_0000002.pt"]


def test_resume_check_names_file_and_differences():
    model = torch.nn.Conv2d(3, 21, 1)
    ckpt = {
        "model": torch.nn.Conv2d(3, 19, 1).state_dict(),
        "optimizer": {},
        "iteration": 4,
        "model_config": {"name": "emanet_r18", "num_classes": 19},
        "class_names": ["road"] * 19,
    }
    config = {"name": "emanet_r50", "num_classes": 21}
    with pytest.raises(ResumeMismatch) as info:
        check_resumable(ckpt, "run/iter_4.pt", config, ["bg"] * 21, model.state_dict())
    message = str(info.value)
    assert message.startswith("cannot resume from run/iter_4.pt")
    for part in (
        "model name 'emanet_r18' in the checkpoint, 'emanet_r50' now",
        "classes: 19",
        "[19, 3, 1, 1]",
    ):
        assert part in message
    with pytest.raises(ResumeMismatch, match=r"plain state dict of 2 tensors .*not a training checkpoint"):
        check_resumable(model.state_dict(), "w.pt", config, [], model.state_dict())


@pytest.mark.parametrize(("saved", "now"), [("sgd", "adamw"), ("adamw", "sgd")])
def test_resume_check_refuses_another_optimizer(saved, now):
    """A momentum buffer cannot seed AdamW (nor moments SGD): say so instead of failing in step()."""
    model = torch.nn.Conv2d(3, 2, 1)
    opt = build_optimizer(model, 0.01, 0.9, 0.0, 1.0, name=saved)
    model(torch.randn(1, 3, 2, 2)).sum().backward()
    opt.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": 1}
    with pytest.raises(ResumeMismatch, match=f"train.optimizer '{saved}' in the checkpoint, '{now}' now"):
        check_resumable(ckpt, "run/iter_1.pt", {}, [], model.state_dict(), now)
    check_resumable(ckpt, "run/iter_1.pt", {}, [], model.state_dict(), saved)  # the same: accepted


@pytest.mark.slow
def test_cli_version_and_help_do_not_import_torch():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "import sys, contextlib, io\n"
        "from emanet.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "with contextlib.suppress(SystemExit): main(['--version'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["emanet", "0.1.0", "False"]
    listed = subprocess.run(
        [sys.executable, "-m", "emanet", "train", "--list"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "demo" in listed.stdout.split()
