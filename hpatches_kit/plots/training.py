"""Training plots: loss curves and denoising examples, written atomically as PNG."""

from __future__ import annotations

import numpy as np

from ..io import atomic_savefig


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _logged(epochs, values):
    """The ``(epoch, value)`` points actually logged: ``None``/NaN entries (epochs without validation) dropped."""
    pts = [(e, float(v)) for e, v in zip(epochs, values) if v is not None and np.isfinite(v)]
    return [e for e, _ in pts], [v for _, v in pts]


def plot_training_curves(history: dict, path, title: str = "training") -> None:
    """One panel per metric (``x`` and ``val_x`` together); ``history`` maps names to per-epoch lists."""
    plt = _plt()
    names = [k for k in history if k != "epoch" and not k.startswith("val_") and history[k]]
    if not names:
        raise ValueError("plot_training_curves: history has no metrics")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, k in zip(axes[0], names):
        ep = history.get("epoch") or list(range(1, len(history[k]) + 1))
        for key, style in ((k, "o-"), (f"val_{k}", "s--")):
            xs, ys = _logged(ep, history.get(key) or [])
            if xs:
                ax.plot(xs, ys, style, label=key)
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
    plot_patch_rows({"noisy": noisy, "denoised": denoised, "clean": clean}, path, n=n)


def plot_patch_rows(rows: dict, path, n: int = 8) -> None:
    """One row of patches per entry of ``rows`` (``{label: (N, P, P) or (N, P, P, 1)}``, the same patches in
    the same order in every row), the first ``n`` of each, grey levels [0, 255] shown as they are.

    Examples:
        >>> plot_patch_rows({"noisy": n, "clean": c, "MAE U-Net": a, "joint U-Net": j}, "examples.png")
    """
    plt = _plt()
    if not rows:
        raise ValueError("plot_patch_rows: no rows")
    arrs = [np.asarray(a)[:n] for a in rows.values()]
    m = min(len(a) for a in arrs)
    arrs = [a[:m].reshape(m, a.shape[1], a.shape[2]) for a in arrs]
    fig, axes = plt.subplots(len(arrs), m, figsize=(1.3 * m, 1.4 * len(arrs)), squeeze=False)
    for r, (label, arr) in enumerate(zip(rows, arrs)):
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
