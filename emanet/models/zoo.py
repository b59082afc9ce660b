"""Published weights: one table (URL, hash prefix, layout, options, licence, source, accuracy),
download with torch.hub's downloader, verify, cache, and an offline switch.

Cache: `$EMANET_HOME` (default `<torch.hub.get_dir()>/emanet`). A file is downloaded to a
temporary name next to its cache path, checked (the publisher's SHA-256 prefix where there is
one, then read back with the safe reader so a truncated body is caught), and only then renamed
into place: a partial or corrupt download is never left in the cache. Once cached, no network.
Offline (`EMANET_OFFLINE=1` or `HF_HUB_OFFLINE=1`): a file that is not cached is one error line
naming the URL and the exact path to put it at.

Every URL and hash below was copied from the publisher's own file, named in `source`; nothing
here is guessed (see the README section "Pretrained weights").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.hub

from ..fileio import atomic_write
from .weights import read_checkpoint

__all__ = [
    "Published",
    "IMAGENET_BACKBONES",
    "PRETRAINED",
    "cache_dir",
    "cached_path",
    "is_offline",
    "fetch",
    "imagenet_backbone_file",
    "hub_download",
]


@dataclass(frozen=True)
class Published:
    """One published weight file.

    Attributes:
        name: our name for it (full models: the `list_models` name + dataset + crop).
        url: where the publisher serves it.
        filename: the file name in the cache (unique; keeps the publisher's suffix).
        sha256_prefix: the hash prefix the publisher gives (None: it gives none).
        layout: "timm" (safetensors), "torchvision", "mmcv_v1c" or "mmseg_emanet".
        options: `create_model` options the weights need (stem, depth).
        licence: as the publisher states it.
        source: repo + path (+ line) where the URL and hash are stated.
        accuracy: the publisher's reported accuracy, or None when that file states none.
    """

    name: str
    url: str
    filename: str
    sha256_prefix: str | None
    layout: str
    options: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    source: str = ""
    accuracy: str | None = None


def _timm(depth: int) -> Published:
    tag = f"resnet{depth}s.gluon_in1k"
    return Published(
        name=f"resnet{depth}_deep_imagenet",
        url=f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors",
        filename=f"{tag}.safetensors",
        sha256_prefix=None,
        layout="timm",
        options={"stem": "deep", "depth": depth},
        licence="Apache-2.0 (timm Hub model card)",
        source="huggingface/pytorch-image-models timm/models/resnet.py default_cfgs "
        f"'{tag}': hf_hub_id='timm/' (a recent resnet.py; URL = Hub convention timm/<model>.<tag>)",
    )


_TV = {18: "5c106cde", 34: "333f7ec4", 50: "19c8e357", 101: "5d3b4d8f", 152: "b121ed2d"}
_TV_LINE = {18: 12, 34: 13, 50: 14, 101: 15, 152: 16}


def _torchvision(depth: int) -> Published:
    return Published(
        name=f"resnet{depth}_classic_imagenet",
        url=f"https://download.pytorch.org/models/resnet{depth}-{_TV[depth]}.pth",
        filename=f"resnet{depth}-{_TV[depth]}.pth",
        sha256_prefix=_TV[depth],
        layout="torchvision",
        options={"stem": "classic", "depth": depth},
        licence="BSD-3-Clause (torchvision)",
        source=f"pytorch/vision torchvision/models/resnet.py line {_TV_LINE[depth]} (model_urls, "
        "commit f50e776b)",
    )


_V1C = {18: ("b5776b93", 37), 50: ("2cccc1ad", 38), 101: ("e67eebb6", 39)}


def _mmcv(depth: int) -> Published:
    digest, line = _V1C[depth]
    return Published(
        name=f"resnet{depth}_deep_v1c_imagenet",
        url=f"https://download.openmmlab.com/pretrain/third_party/resnet{depth}_v1c-{digest}.pth",
        filename=f"resnet{depth}_v1c-{digest}.pth",
        sha256_prefix=digest,
        layout="mmcv_v1c",
        options={"stem": "deep_v1c", "depth": depth},
        licence="not stated in the model zoo file (mmcv is Apache-2.0)",
        source=f"open-mmlab/mmcv mmcv/model_zoo/open_mmlab.json line {line} (commit 0452bd17)",
    )


# (stem, depth) -> the ImageNet file `backbone_weights="imagenet"` picks.
IMAGENET_BACKBONES: dict[tuple[str, int], Published] = {
    **{("deep", d): _timm(d) for d in (50, 101, 152)},
    **{("deep_v1c", d): _mmcv(d) for d in _V1C},
    **{("classic", d): _torchvision(d) for d in _TV},
}

_MMSEG_BASE = "https://download.openmmlab.com/mmsegmentation/v0.5/emanet"
# (depth, crop, date-hash, mIoU SS, mIoU MS+flip, metafile line of `Weights:`)
_MMSEG = [
    (50, "512x1024", "20200901_100301-c43fcef1", "77.59", "79.44", 31),
    (101, "512x1024", "20200901_100301-2d970745", "79.1", "81.21", 56),
    (50, "769x769", "20200901_100301-16f8de52", "79.33", "80.49", 81),
    (101, "769x769", "20200901_100301-47a324ce", "79.62", "81.0", 106),
]


def _mmseg(depth: int, crop: str, stamp: str, ss: str, ms: str, line: int) -> Published:
    stem = f"emanet_r{depth}-d8_{crop}_80k_cityscapes"
    return Published(
        name=f"emanet_r{depth}_cityscapes_{crop}",
        url=f"{_MMSEG_BASE}/{stem}/{stem}_{stamp}.pth",
        filename=f"{stem}_{stamp}.pth",
        sha256_prefix=stamp.rsplit("-", 1)[1],
        layout="mmseg_emanet",
        options={"stem": "deep_v1c", "depth": depth, "num_classes": 19},
        licence="Apache License 2.0 (metafile)",
        source=f"open-mmlab/mmsegmentation configs/emanet/metafile.yaml line {line} (commit 5ac9fae2)",
        accuracy=f"Cityscapes val mIoU {ss} (ms+flip {ms})",
    )


# Full models, loaded by `from_pretrained(name)` through the OpenMMLab converter.
PRETRAINED: dict[str, Published] = {p.name: p for p in (_mmseg(*row) for row in _MMSEG)}

# The authors' VOC model and deep-stem backbones are on Google Drive with no direct link: not in
# the table; download them by hand (XiaLiPKU/EMANet README) and `emanet convert --from official`.
MANUAL = (
    "the authors' VOC EMANet and ImageNet backbones (XiaLiPKU/EMANet README, Google Drive): "
    "download by hand, then `emanet convert --from official FILE OUT_DIR`"
)


def cache_dir() -> Path:
    """`$EMANET_HOME`, else `<torch.hub.get_dir()>/emanet`."""
    home = os.environ.get("EMANET_HOME")
    return Path(home).expanduser() if home else Path(torch.hub.get_dir()) / "emanet"


def cached_path(entry: Published) -> Path:
    """Where `entry` lives in the cache (whether or not it is there yet)."""
    return cache_dir() / entry.filename


def is_offline() -> bool:
    """True when `EMANET_OFFLINE` or `HF_HUB_OFFLINE` is set to 1/true/yes/on."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("EMANET_OFFLINE", "HF_HUB_OFFLINE")
    )


def _by_hand(entry: Published, path: Path) -> str:
    return f"download {entry.url} and put it at {path}"


def fetch(entry: Published, progress: bool = True) -> Path:
    """The cached file of `entry`, downloaded, verified and renamed into the cache if needed.

    Raises:
        FileNotFoundError: offline and not cached (names the URL and the path to put it at).
        ValueError: the hash does not match (both hashes named) or the body is truncated or
            corrupt; nothing is left in the cache.
        OSError: the download failed (connection refused or dropped); nothing is cached.
    """
    path = cached_path(entry)
    if path.is_file():
        return path
    if is_offline():
        raise FileNotFoundError(
            f"{entry.name} is not cached and downloads are off (EMANET_OFFLINE/HF_HUB_OFFLINE): "
            + _by_hand(entry, path)
        )
    with atomic_write(path) as tmp:
        try:
            torch.hub.download_url_to_file(entry.url, str(tmp), entry.sha256_prefix, progress=progress)
        except RuntimeError as e:
            found = re.search(r'expected "(\w+)", got "(\w+)"', str(e))
            if not found:
                raise
            raise ValueError(
                f"{entry.url} was refused: its SHA-256 is {found.group(2)}, the publisher's starts with "
                f"{found.group(1)}; nothing was cached (retry, or {_by_hand(entry, path)})"
            ) from None
        except (OSError, ValueError) as e:  # URLError, IncompleteRead, ConnectionResetError, ...
            raise OSError(
                f"download of {entry.url} failed ({type(e).__name__}: {e}); nothing was cached "
                f"(retry, or {_by_hand(entry, path)})"
            ) from None
        except Exception as e:  # http.client.IncompleteRead is an HTTPException
            raise OSError(
                f"download of {entry.url} failed ({type(e).__name__}); nothing was cached "
                f"(retry, or {_by_hand(entry, path)})"
            ) from None
        # Also with a hash: read the body back, so a truncated or non-checkpoint body is caught.
        _verify(tmp, entry, path)
    return path


def _verify(tmp: Path, entry: Published, path: Path) -> None:
    try:
        if entry.filename.endswith(".safetensors"):
            from safetensors.torch import load_file

            load_file(os.fspath(tmp))
        else:
            read_checkpoint(tmp)
    except Exception as e:
        raise ValueError(
            f"{entry.url} downloaded but is truncated or corrupt ({type(e).__name__}); nothing was "
            f"cached (retry, or {_by_hand(entry, path)})"
        ) from None


def imagenet_backbone_file(stem: str, depth: int) -> Path:
    """The cached ImageNet file for a backbone with this stem and depth (fetched if needed)."""
    entry = IMAGENET_BACKBONES.get((stem, depth))
    if entry is None:
        have = ", ".join(f"stem={s!r} depth={d}" for s, d in IMAGENET_BACKBONES)
        raise ValueError(
            f"no published ImageNet weights for stem={stem!r} depth={depth}; backbone_weights='imagenet' "
            f"exists for: {have} (or pass backbone_weights=PATH)"
        )
    return fetch(entry)


def hub_download(repo_id: str, filename: str) -> str:
    """`huggingface_hub.hf_hub_download` (cached; respects HF_HUB_OFFLINE); needs emanet[hub]."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ImportError(f"hf-hub:{repo_id} needs huggingface_hub: pip install 'emanet[hub]'") from None
    return hf_hub_download(repo_id, filename)
