"""Plots of the Brown and full-image matching benchmarks: ROC with the 95%-recall point, MMA vs threshold."""

from __future__ import annotations

from pathlib import Path

from ._figure import plt as _plt
from ._figure import save

__all__ = ["plot_mma", "mma_panels", "plot_brown_roc", "plot_real"]


def mma_panels(result: dict) -> list[str]:
    """The panels of an MMA figure: ``overall`` and each kind (illumination, viewpoint) that has pairs; when one
    kind alone has pairs, that kind only (``overall`` would repeat it).

    Example:
        >>> mma_panels({"overall": {"pairs": 5}, "illumination": {"pairs": 0}, "viewpoint": {"pairs": 5}})
        ['viewpoint']
    """
    kinds = [k for k in ("illumination", "viewpoint") if (result.get(k) or {}).get("pairs")]
    return kinds if len(kinds) == 1 else ["overall"] + kinds


def plot_mma(results: list[dict], path) -> Path:
    """MMA vs pixel threshold, one line per descriptor, one panel per :func:`mma_panels` (no empty panel, no
    ``overall`` repeating the only kind), the legend beside the panels and a caption naming the images,
    keypoints and matcher.

    Args:
        results: result dicts of :func:`hpatches_kit.evaluation.image_matching.evaluate_sequences`
            (``meta["descriptor"]`` names the line).
        path: output image file (a ``.pdf`` is written next to it).
    """
    plt = _plt()
    panels = mma_panels(results[0])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels) + 2.2, 4.2), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, split in zip(axes, panels):
        for r in results:
            s = r[split]
            if s["pairs"]:
                ax.plot(r["meta"]["thresholds"], s["mma"], marker="o", ms=3, label=r["meta"].get("descriptor", "?"))
        ax.set(title=f"{split} ({results[0][split]['pairs']} pairs)", xlabel="threshold [px]", ylim=(0, 1))
        ax.set_xticks(list(results[0]["meta"]["thresholds"]))
        ax.grid(True, ls=":")
    axes[0].set_ylabel("mean matching accuracy")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=8, frameon=False)
    m = results[0]["meta"]
    fig.text(
        0.01,
        0.005,
        f"{len(m.get('sequences') or [])} sequences, {results[0]['overall']['pairs']} image pairs; "
        f"{m.get('detector')} keypoints (at most {m.get('max_keypoints')} per image), {m.get('patch_size')} px "
        f"patches, {'mutual ' if m.get('mutual') else ''}nearest neighbours"
        + (f", ratio {m['ratio']}" if m.get("ratio") else ""),
        ha="left",
        va="bottom",
        fontsize=8,
        color="#333333",
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
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
    axes[0][-1].legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="hatched: baselines", title_fontsize=7
    )  # beside the panels: never over a bar or its label
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
    return Path(path)
