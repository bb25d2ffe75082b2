"""Training plots: loss curves and denoising examples, written atomically as PNG."""

from __future__ import annotations

import numpy as np

from ..io import atomic_savefig


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: dict, path, title: str = "training") -> None:
    """One panel per metric (``x`` and ``val_x`` together); ``history`` maps names to per-epoch lists."""
    plt = _plt()
    names = [k for k in history if k != "epoch" and not k.startswith("val_") and history[k]]
    if not names:
        raise ValueError("plot_training_curves: history has no metrics")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, k in zip(axes[0], names):
        ep = history.get("epoch") or list(range(1, len(history[k]) + 1))
        ax.plot(ep[: len(history[k])], history[k], "o-", label=k)
        if history.get(f"val_{k}"):
            ax.plot(ep[: len(history[f"val_{k}"])], history[f"val_{k}"], "s--", label=f"val_{k}")
        ax.set_xlabel("epoch")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=100)
    finally:
        plt.close(fig)


def plot_denoise_examples(noisy, denoised, clean, path, n: int = 8) -> None:
    """Rows noisy / denoised / clean for the first ``n`` patches (``(N, P, P)`` or ``(N, P, P, 1)``)."""
    plt = _plt()
    rows = [np.asarray(a)[:n].reshape(min(n, len(a)), a.shape[1], a.shape[2]) for a in (noisy, denoised, clean)]
    m = rows[0].shape[0]
    fig, axes = plt.subplots(3, m, figsize=(1.3 * m, 4.2), squeeze=False)
    for r, (label, arr) in enumerate(zip(("noisy", "denoised", "clean"), rows)):
        for c in range(m):
            ax = axes[r][c]
            ax.imshow(np.clip(arr[c], 0, 255), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=100)
    finally:
        plt.close(fig)
