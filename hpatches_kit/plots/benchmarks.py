"""Plots of the Brown and full-image matching benchmarks: ROC with the 95%-recall point, MMA vs threshold."""

from __future__ import annotations

from pathlib import Path

from ._figure import save
from .eval import _plt

__all__ = ["plot_mma", "plot_brown_roc", "plot_real"]


def plot_mma(results: list[dict], path) -> Path:
    """MMA vs pixel threshold, one line per descriptor, panels overall / illumination / viewpoint.

    Args:
        results: result dicts of :func:`hpatches_kit.evaluation.image_matching.evaluate_sequences`
            (``meta["descriptor"]`` names the line).
        path: output image file.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, split in zip(axes, ("overall", "illumination", "viewpoint")):
        for r in results:
            s = r[split]
            if s["pairs"]:
                ax.plot(r["meta"]["thresholds"], s["mma"], marker="o", ms=3, label=r["meta"].get("descriptor", "?"))
        if not results[0][split]["pairs"]:
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set(title=f"{split} ({results[0][split]['pairs']} pairs)", xlabel="threshold [px]", ylim=(0, 1))
        ax.grid(True, ls=":")
    axes[0].set_ylabel("mean matching accuracy")
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return Path(path)


def plot_brown_roc(curves: dict, path) -> Path:
    """ROC curves on the Brown test pairs, one per ``name -> (fpr, tpr, fpr95)``, with the 95% recall line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, (fpr, tpr, f95) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (FPR95 {100 * f95:.2f}%)")
    ax.axhline(0.95, color="grey", ls="--", lw=1)
    ax.set(
        xscale="log",
        xlim=(1e-4, 1),
        ylim=(0, 1),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="Brown pairs ROC",
    )
    ax.grid(True, ls=":")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return Path(path)


def plot_real(regimes: dict, path) -> Path:
    """Real validation: headline mAP per task, one bar per descriptor (baselines hatched), one panel per regime.

    Args:
        regimes: ``{regime: {"rows": {name: {task: mAP %}}, "baselines": [names], "tracks": int, ...}}`` as
            :func:`hpatches_kit.evaluation.real.compare_on_real` returns it.
        path: output image file.

    Returns:
        ``path``.
    """
    import numpy as np

    plt = _plt()
    from ..evaluation.registry import TASKS as tasks

    fig, axes = plt.subplots(1, len(regimes), figsize=(6.5 * len(regimes), 4.2), squeeze=False)
    for ax, (regime, r) in zip(axes[0], regimes.items()):
        names = list(r["rows"])
        width = 0.8 / max(1, len(names))
        x = np.arange(len(tasks))
        for k, name in enumerate(names):
            vals = [r["rows"][name][t] for t in tasks]
            baseline = name in r.get("baselines", ())
            bars = ax.bar(
                x + (k - (len(names) - 1) / 2) * width,
                vals,
                width,
                label=name,
                hatch="//" if baseline else None,
                alpha=0.75 if baseline else 1.0,
            )
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xticks(x, tasks)
        ax.set(ylabel="mAP [%]", ylim=(0, 105), title=f"real validation, {regime} noise ({r['tracks']} tracks)")
        ax.grid(True, axis="y", ls=":")
        ax.legend(loc="upper right", fontsize=8, title="hatched: baselines", title_fontsize=7)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return Path(path)
