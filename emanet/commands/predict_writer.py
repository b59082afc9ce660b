"""The files `emanet predict` writes for one prediction, in the mirrored output tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .. import viz
from ..inputs import output_name
from ..predict import Prediction, Predictor

__all__ = ["PredictionWriter"]


class PredictionWriter:
    """Writes NAME.EXT_mask.png, _color.png, _overlay.png and, as asked, _attention.png,
    _bases.png and _explore.html under `out`, at each input's relative path.

    Args:
        out: the output root.
        predictor: gives the palette and class names.
        attention: write the attention grid and the argmax-basis map.
        html: write the explorer page (needs predictions with probs and attention).
    """

    def __init__(self, out: Path, predictor: Predictor, attention: bool = False, html: bool = False):
        self.out, self.attention, self.html = Path(out), attention, html
        self.palette = predictor.palette
        names = predictor.class_names or [f"class {i}" for i in range(predictor.num_classes)]
        self.class_names = list(names)
        flat = [v for c in self.palette for v in c][: 256 * 3]
        self._pil_palette = flat + [0] * (768 - len(flat))

    def path_for(self, rel: Path, suffix: str) -> Path:
        """OUT/rel-folder/NAME.EXT + suffix, with its folder made."""
        path = self.out / output_name(rel, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, pred: Prediction, rel: Path) -> list[Path]:
        """Write the outputs of `pred` for the input at `rel`; returns the paths written."""
        written = []
        image, ids = pred.image, pred.mask
        if image is None or ids is None:
            raise ValueError(f"{pred.source}: nothing to write ({pred.error})")
        if ids.max(initial=0) < 256:
            mask = Image.fromarray(ids.astype(np.uint8), mode="P")
            mask.putpalette(self._pil_palette)
        else:  # more than 256 classes: a 16-bit grey PNG
            mask = Image.fromarray(ids.astype(np.uint16))
        mask.save(p := self.path_for(rel, "_mask.png"))
        written.append(p)
        Image.fromarray(viz.colorize(ids, self.palette)).save(p := self.path_for(rel, "_color.png"))
        written.append(p)
        Image.fromarray(viz.overlay(image, ids, self.palette)).save(p := self.path_for(rel, "_overlay.png"))
        written.append(p)
        if self.attention and pred.attention is not None:
            up = max(1, 256 // max(pred.attention.shape[-2:]))
            Image.fromarray(viz.attention_grid(pred.attention, upscale=up)).save(
                p := self.path_for(rel, "_attention.png")
            )
            written.append(p)
            Image.fromarray(viz.argmax_basis_map(pred.attention, upscale=8)).save(
                p := self.path_for(rel, "_bases.png")
            )
            written.append(p)
        if self.html:
            from ..report.explorer import write_explorer

            if pred.probs is None or pred.attention is None:
                raise ValueError(f"{pred.source}: the explorer page needs probabilities and attention")
            written.append(
                write_explorer(
                    self.path_for(rel, "_explore.html"),
                    image,
                    pred.probs,
                    pred.attention,
                    self.class_names,
                    self.palette,
                    title=str(rel),
                )  # fmt: skip
            )
        return written
