"""Terminal tables and PNG charts of `emanet.bench` results (`emanet bench --plot`)."""

from __future__ import annotations

__all__ = ["format_table", "plot_results"]


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_table(kind: str, rows: list[dict]) -> str:
    """A plain-text table for the terminal (kind: "models", "table1" or "scaling")."""
    lines = []
    if kind == "table1":
        lines.append(
            f"{'method':12s} {'params M':>9s} {'GMACs':>8s} {'paper GMACs':>12s} {'peak MiB':>9s} "
            f"{'paper mem':>10s} {'median ms':>10s} {'min–max ms':>17s}"
        )
        for r in rows:
            sign = "" if r["method"] == "ResNet-101" else "+"
            paper = r["paper"]
            lines.append(
                f"{r['method']:12s} {sign + format(r['params'] / 1e6, '.2f'):>9s} "
                f"{sign + format(r['gmacs'], '.1f'):>8s} {_fmt(paper['gmacs'], '.1f'):>12s} "
                f"{sign + format(r['peak_mib'], '.1f'):>9s} {paper['memory'] or '–':>10s} "
                f"{_fmt(r.get('median_ms'), '.1f'):>10s} "
                f"{_fmt(r.get('min_ms'), '.1f') + '–' + _fmt(r.get('max_ms'), '.1f'):>17s}"
            )
    elif kind == "scaling":
        lines.append(
            f"{'map':>8s} {'N':>6s} {'EMA GMACs':>10s} {'NL GMACs':>9s} {'EMA ms':>9s} {'NL ms':>9s} "
            f"{'NL/EMA':>7s} {'EMA MiB':>8s} {'NL MiB':>8s} {'NL/EMA':>7s}"
        )
        for r in rows:
            lines.append(
                f"{str(r['size']) + '²':>8s} {r['pixels']:6d} "
                f"{r['EMA_gmacs']:10.2f} {r['Non-local_gmacs']:9.2f} "
                f"{r['EMA_median_ms']:9.1f} {r['Non-local_median_ms']:9.1f} {r['time_ratio']:6.1f}× "
                f"{r['EMA_peak_mib']:8.1f} {r['Non-local_peak_mib']:8.1f} {r['memory_ratio']:6.1f}×"
            )
    else:
        lines.append(
            f"{'model':18s} {'params M':>9s} {'head M':>7s} {'GMACs':>8s} {'head GMACs':>11s} "
            f"{'peak MiB':>9s} {'median ms':>10s} {'min–max ms':>17s}"
        )
        for r in rows:
            lines.append(
                f"{r['model']:18s} {r['params'] / 1e6:9.2f} {r['head_params'] / 1e6:7.2f} {r['gmacs']:8.1f} "
                f"{r['head_gmacs']:11.1f} {r['peak_mib']:9.1f} {_fmt(r.get('median_ms'), '.1f'):>10s} "
                f"{_fmt(r.get('min_ms'), '.1f') + '–' + _fmt(r.get('max_ms'), '.1f'):>17s}"
            )
    return "\n".join(lines)


def plot_results(kind: str, rows: list[dict], path, title: str = "") -> None:
    """Write a PNG: scaling curves (time and memory vs pixels) or bars (GMACs, memory, time)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # optional dependency
        raise RuntimeError("plotting needs matplotlib: pip install 'emanet[plot]'") from e

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if kind == "scaling":
        n = [r["pixels"] for r in rows]
        for name, style in (("EMA", "o-"), ("Non-local", "s--")):
            axes[0].plot(n, [r[f"{name}_median_ms"] for r in rows], style, label=name)
            axes[1].plot(n, [r[f"{name}_peak_mib"] for r in rows], style, label=name)
        for ax, ylabel in zip(axes, ("latency (ms, median)", "peak memory (MiB)"), strict=True):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("pixels N = h·w")
            ax.set_ylabel(ylabel)
            ax.set_xticks(n, [f"{r['size']}²" for r in rows])
            ax.legend()
            ax.grid(True, which="both", alpha=0.3)
    else:
        key = "method" if kind == "table1" else "model"
        names = [r[key] for r in rows]
        axes[0].bar(names, [r["gmacs"] for r in rows], color="tab:blue")
        axes[0].set_ylabel("GMACs")
        axes[1].bar(names, [r["peak_mib"] for r in rows], color="tab:orange")
        axes[1].set_ylabel("peak memory (MiB)")
        for ax in axes:
            ax.tick_params(axis="x", rotation=30)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
