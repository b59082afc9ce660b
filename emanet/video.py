"""Videos in, overlay videos out (`emanet predict clip.mp4`): needs PyAV, `pip install emanet[video]`.

    info = predict_video(predictor, "clip.mp4", "clip.mp4_overlay.mp4")   # {"frames", "fps", ...}

Frames are decoded one at a time and predicted in batches of `predictor.batch_size` (all frames
share a size), so memory does not grow with the video's length. The output has the input's
frame count and frame rate (H.264, or MPEG-4 part 2 where libx264 is missing).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import viz
from .predict import Predictor

__all__ = ["require_av", "predict_video", "read_frames", "count_frames"]


def require_av():
    """The `av` module, or an ImportError saying how to install it."""
    try:
        import av
    except ImportError as e:  # optional extra
        raise ImportError("video input needs PyAV: pip install emanet[video] (or pip install av)") from e
    return av


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The frames of a video as (H, W, 3) uint8 RGB, in order."""
    av = require_av()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def count_frames(path: str | os.PathLike) -> int:
    """Frames in a video, by decoding it (container counts can be missing or wrong)."""
    return sum(1 for _ in read_frames(path))


def _rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def predict_video(
    predictor: Predictor,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    alpha: float = 0.5,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the segmentation overlay of every frame of `src` to the video `dst`.

    Returns:
        {"frames": frames written, "fps": float, "size": (H, W), "codec": name}.
    """
    av = require_av()
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        rate, total = _rate(stream), stream.frames or None
    frames = read_frames(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    written = 0
    out: Any = None  # the container and stream, opened at the first frame (its size)
    ostream: Any = None
    tmp = dst.with_name(dst.name + ".partial" + dst.suffix)
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=dst.name, unit="frame", disable=not progress, leave=False)
        for pred in predictor.iter_predict(frames):
            image, mask = pred.image, pred.mask
            if image is None or mask is None:
                raise ValueError(f"{src}: frame {written} could not be predicted: {pred.error}")
            if out is None:
                h, w = mask.shape
                out = av.open(str(tmp), mode="w")
                ostream = out.add_stream(codec, rate=rate)
                # yuv420p needs even sides: the encoder gets the frame cropped by at most 1 pixel
                ostream.width, ostream.height = w - w % 2, h - h % 2
                ostream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    ostream.options = {"crf": "18"}
            blend = viz.overlay(image, mask, predictor.palette, alpha=alpha)
            blend = np.ascontiguousarray(blend[: ostream.height, : ostream.width])
            for packet in ostream.encode(av.VideoFrame.from_ndarray(blend, format="rgb24")):
                out.mux(packet)
            written += 1
            bar.update(1)
        bar.close()
        if out is None:
            raise ValueError(f"{src}: the video has no frame to predict; check the file")
        for packet in ostream.encode():
            out.mux(packet)
        out.close()
        out = None
        os.replace(tmp, dst)
    finally:
        if out is not None:
            out.close()
        tmp.unlink(missing_ok=True)
    return {"frames": written, "fps": float(rate), "size": (ostream.height, ostream.width), "codec": codec}
