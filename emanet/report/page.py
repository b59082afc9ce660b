"""Building blocks of the report page: the run-directory reader, HTML helpers, figures."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from .. import viz

# What writes each part of a run directory: shown where that part is missing.
PRODUCERS = {
    "config.yaml": "`emanet train CONFIG` writes the resolved config when the run starts.",
    "env.json": "`emanet train CONFIG` records the environment when the run starts.",
    "metrics.jsonl": "`emanet train CONFIG` appends a line every few iterations.",
    "eval.json": "`emanet train CONFIG` writes it when training finishes; "
    "`emanet eval CONFIG --checkpoint PATH --out RUN_DIR/eval.json` evaluates a saved checkpoint.",
    "samples": "`emanet train` / `emanet eval` save a few validation predictions (samples/*.npz); "
    "`emanet predict --checkpoint PATH IMAGES --attention` shows any image.",
    "bench.json": "`emanet bench MODEL... --json RUN_DIR/bench.json` measures speed and memory.",
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;
  background:#f6f8fa}
main{max-width:1240px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:16px 0}
.sub{color:#59636e;margin:0 0 12px}nav a{margin-right:14px;color:#0969da;text-decoration:none}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#59636e;font-size:12px}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;margin:8px 0}
.error{background:#ffebe9;border-color:#cf222e}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d0d7de;padding:3px 10px;text-align:left}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px;max-height:480px;overflow:auto;
  font-size:12px}
img{max-width:100%}.chart{display:block;margin:8px 0}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(118px,1fr));gap:8px;align-items:start}
figure{margin:0}figure.wide{grid-column:span 2}
figure img{width:100%;image-rendering:pixelated;border:1px solid #d0d7de}
figcaption{font-size:12px;color:#59636e;text-align:center}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #555;vertical-align:middle;
  margin:0 4px 0 10px}
.cols{display:flex;flex-wrap:wrap;gap:24px}.cols>div{flex:1 1 380px;min-width:0}
"""


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _note(text: str, cls: str = "") -> str:
    """A yellow (or red) box; backquoted `commands` become <code>."""
    parts = _esc(text).split("`")
    body = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    return f'<div class="note {cls}">{body}</div>'


def _missing(run: _Run, name: str, what: str) -> str:
    if name in run.problems:
        return _note(f"{what}: {name} could not be read ({run.problems[name]}). {PRODUCERS[name]}", "error")
    shown = "samples/" if name == "samples" else name
    return _note(f"{what}: {shown} is missing. {PRODUCERS[name]}")


def _img(data: bytes | np.ndarray, alt: str, cls: str = "", width: int | None = None) -> str:
    if isinstance(data, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(data).save(buf, format="PNG")
        data = buf.getvalue()
    style = f' style="width:{width}px"' if width else ""
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img class="{cls}" alt="{_esc(alt)}" src="{src}"{style}>'


def _table(rows: list[list], header: list[str] | None = None, attrs: str = "") -> str:
    out = [f"<table {attrs}>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, tuple):  # (raw html, css class)
                cells.append(f'<td class="{v[1]}">{v[0]}</td>')
            else:
                cells.append(f"<td>{_esc(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _num(v) -> tuple[str, str]:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return (_esc("–" if v is None else v), "")
    if isinstance(v, float) and not math.isfinite(v):
        return (_esc(v), "num")
    text = f"{v:,}" if isinstance(v, int) else (f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}")
    return (text, "num")


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict], int]:
    """Read metrics.jsonl: (train lines, eval lines, number of unreadable lines).

    Lines that are not JSON objects (a line cut short when the run was killed) are counted and
    skipped; lines without a numeric "iter" are skipped too.
    """
    train, evals, bad = [], [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("iter"), int | float):
                bad += 1
                continue
            if rec.get("type") == "eval":
                evals.append(rec)
            elif rec.get("type", "train") == "train":
                train.append(rec)
    return train, evals, bad


def _read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, found {type(data).__name__}")
    return data


class _Run:
    """The parts of a run directory that exist, read once."""

    def __init__(self, run_dir: Path, max_samples: int):
        self.dir = run_dir
        self.problems: dict[str, str] = {}  # file -> why it could not be read
        self.config_text = self._read(
            "config.yaml", lambda p: p.read_text(encoding="utf-8", errors="replace")
        )
        self.config = None
        if self.config_text is not None:
            import yaml

            self.config = self._read("config.yaml", lambda p: yaml.safe_load(self.config_text))
        self.env = self._read("env.json", _read_json)
        self.has_metrics = (run_dir / "metrics.jsonl").is_file()
        self.train: list[dict]
        self.evals: list[dict]
        self.bad_lines: int
        self.train, self.evals, self.bad_lines = self._read("metrics.jsonl", read_metrics) or ([], [], 0)
        self.eval = self._read("eval.json", _read_json)
        self.samples = sorted((run_dir / "samples").glob("*.npz"))[:max_samples]
        self.bench = self._read("bench.json", _read_json)
        ev = self.eval or {}
        names = ev.get("class_names") or self._cfg("data", "class_names")
        self.class_names = [str(n) for n in names] if names else None
        self.palette = np.asarray(ev["palette"], dtype=np.uint8).reshape(-1, 3) if ev.get("palette") else None
        ignore = self._cfg("data", "ignore_index")
        self.ignore_index = ignore if isinstance(ignore, int) else 255
        accs = [e.get("pixel_acc") for e in [ev, *self.evals]]
        # Percent or fraction? Pixel accuracy of any model is far above 1 %, so > 1 means percent.
        self.scale = 1.0 if any(isinstance(a, int | float) and a > 1.0 for a in accs) else 100.0

    def _read(self, name: str, reader):
        """reader(path) if the file exists; a file that cannot be read is noted, not fatal."""
        path = self.dir / name
        if not path.is_file():
            return None
        try:
            return reader(path)
        except Exception as e:
            self.problems[name] = f"{type(e).__name__}: {e}"
            return None

    def _cfg(self, *keys):
        node = self.config
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return node

    def name_of(self, i: int) -> str:
        if self.class_names and 0 <= i < len(self.class_names):
            return self.class_names[i]
        return f"class {i}"

    def colors(self, n: int) -> np.ndarray:
        pal = self.palette if self.palette is not None and len(self.palette) >= n else None
        return pal if pal is not None else viz.default_palette(max(256, n))

    def pct(self, v) -> str:
        return "–" if not isinstance(v, int | float) else f"{v * self.scale:.2f} %"


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


_NO_MPL = "Charts need matplotlib: `pip install emanet[plot]`."


def _fig(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _png(fig) -> bytes:
    return viz.figure_to_png(fig, dpi=100)
