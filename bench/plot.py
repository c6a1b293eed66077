"""The PNG plot: time until all subhosts are active against how many were started at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .stats import Summary

REQUIREMENTS = Path(__file__).with_name("requirements.txt")


def ensure_matplotlib() -> None:
    """Install bench/requirements.txt into this interpreter's venv when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)


def plot_concurrency(path: Path, series: Mapping[str, Mapping[int, Summary]],
                     budget: tuple[int, float] | None = None) -> None:
    """SERIES: label -> {subhosts started at once: summary of seconds until all active}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, points in series.items():
        xs = sorted(points)
        if not xs:
            continue
        med = [points[x].median for x in xs]
        lo = [points[x].median - points[x].p25 for x in xs]
        hi = [points[x].p75 - points[x].median for x in xs]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=4, label=label)
        for x, m in zip(xs, med, strict=True):
            ax.annotate(f"{m:.2f} s", (x, m), textcoords="offset points", xytext=(4, 6),
                        fontsize=8)
    if budget is not None:
        ax.plot([budget[0]], [budget[1]], marker="_", markersize=30, color="red",
                linestyle="none", label=f"budget for {budget[0]}: {budget[1]:g} s")
    ax.set_xlabel("subhosts started at once (one systemctl start)")
    ax.set_ylabel("seconds until all are active (median, IQR)")
    ax.set_title("Start time against concurrent subhosts")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
