"""Evaluation plots: verification ROC/PR curves, retrieval mAP vs pool size, and the three-panel bar chart
of the HPatches paper (bar = headline mAP, markers = Easy/Hard/Tough). Every file is written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence as Seq

from ..evaluation import registry
from ..io import atomic_savefig

COLOURS = {"e": "#4daf4a", "h": "#e41a1c", "t": "#377eb8"}
NAMES = {"e": "Easy", "h": "Hard", "t": "Tough"}

__all__ = ["plot_verification_curves", "plot_retrieval_pools", "plot_hpatches_bars", "plot_results"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_verification_curves(results: dict, path) -> None:
    plt = _plt()
    cur = results["verification"]["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for v in "eht":
        for neg, ls in (("intra", "-"), ("inter", "--")):
            c = cur[v][neg]
            if c.get("fpr") is not None:
                axes[0].plot(c["fpr"], c["tpr"], ls, color=COLOURS[v], label=f"{NAMES[v]} {neg}")
            if c.get("recall") is not None:
                axes[1].plot(c["recall"], c["precision"], ls, color=COLOURS[v], label=f"{NAMES[v]} {neg}")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="Verification ROC (balanced)")
    axes[1].set(xlabel="recall", ylabel="precision", title="Verification PR (imbalanced)")
    for ax in axes:
        ax.grid(True, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def plot_retrieval_pools(results: dict, path) -> None:
    plt = _plt()
    r = results["retrieval"]
    pools = r["pool_sizes"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in "eht":
        ax.plot(pools, [r["table"][v][str(p)] for p in pools], "o-", color=COLOURS[v], label=NAMES[v])
    ax.set_xscale("log")
    ax.set(xlabel="pool size", ylabel="mAP [%]", title="Patch retrieval", ylim=(0, 100))
    ax.grid(True, ls=":")
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def plot_hpatches_bars(entries: Seq[tuple[str, dict]], path) -> None:
    """HPatches-paper style: one panel per task, one bar per descriptor (its headline mAP), coloured
    markers for Easy/Hard/Tough (circles: intra / illum, crosses: inter / view)."""
    plt = _plt()
    tasks = [t for t in registry.names() if any(t in r for _, r in entries)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), max(2.6, 1.4 + 0.45 * len(entries))), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = sorted([(n, r[task]) for n, r in entries if task in r], key=lambda x: x[1]["headline"]["value"])
        ys = range(len(rows))
        ax.barh(list(ys), [r["headline"]["value"] for _, r in rows], color="#bbbbbb", edgecolor="k")
        for y, (_, r) in zip(ys, rows):
            for v, vals in registry.get(task).variant_points(r).items():
                for j, x in enumerate(vals):
                    ax.plot(x, y, "o" if j == 0 else "x", color=COLOURS[v], ms=6)
            ax.text(101, y, f"{r['headline']['value']:.2f}", va="center", fontsize=9)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([n for n, _ in rows])
        ax.set_xlim(0, 100)
        ax.set_xlabel(registry.get(task).plot_label)
        ax.grid(True, axis="x", ls=":")
    handles = [plt.Line2D([], [], marker="s", ls="", color=COLOURS[v], label=NAMES[v]) for v in "eht"]
    fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.97, 0.9))
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def plot_results(results: dict, out_dir, name: str = "descriptor") -> list[Path]:
    """All plots for one result dict into ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    written = []
    if "verification" in results and results["verification"].get("curves"):
        p = out_dir / "verification_curves.png"
        plot_verification_curves(results, p)
        written.append(p)
    if "retrieval" in results:
        p = out_dir / "retrieval_pool_sizes.png"
        plot_retrieval_pools(results, p)
        written.append(p)
    if any(t in results for t in registry.names()):
        p = out_dir / "hpatches_bars.png"
        plot_hpatches_bars([(name, results)], p)
        written.append(p)
    return written
