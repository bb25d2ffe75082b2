"""Training plots: loss curves and denoising examples, written atomically as PNG (+ PDF)."""

from __future__ import annotations

import numpy as np


def _plt():
    from ._figure import plt

    return plt()


#: panel titles of the history keys (a key not listed is its own title)
TITLES = {
    "loss": "training loss",
    "epoch_wall_s": "epoch wall time [s] (steps + validation + callbacks)",
    "descriptor_spread": "descriptor spread (probe batch)",
    "pca_dims_90": "PCA dims holding 90% / 99% of the energy (probe)",
    "lr": "learning rate",
    "learning_rate": "learning rate",
    "mae": "mean absolute error",
    "psnr": "PSNR [dB]",
    "accuracy": "accuracy",
}
#: keys drawn in another key's panel (``pca_dims_99`` next to ``pca_dims_90``)
JOINED = {"pca_dims_99": "pca_dims_90"}
#: legend labels of the lines
LABELS = {"pca_dims_90": "90% energy", "pca_dims_99": "99% energy"}


def _logged(epochs, values):
    """The ``(epoch, value)`` points actually logged: ``None``/NaN entries (epochs without validation) dropped."""
    pts = [(e, float(v)) for e, v in zip(epochs, values) if v is not None and np.isfinite(v)]
    return [e for e, _ in pts], [v for _, v in pts]


def plot_training_curves(
    history: dict, path, title: str = "training", levels: dict | None = None, vector: bool = False
) -> None:
    """One panel per metric (``x`` and ``val_x`` together, readable titles from :data:`TITLES`;
    ``pca_dims_90`` and ``pca_dims_99`` share a panel), with reference lines such as the collapse level of
    ``descriptor_spread``.

    Args:
        history: ``{name: per-epoch list}`` (``None`` where an epoch did not log the metric), optionally
            ``"epoch"``.
        path: output ``.png``.
        title: the figure's title.
        levels: ``{metric: (value, label)}`` horizontal lines (e.g. ``{"descriptor_spread": (0.05, "collapse
            level")}``).
        vector: also write the figure as PDF next to the PNG.
    """
    from matplotlib.ticker import MaxNLocator

    from ._figure import save

    plt = _plt()
    names = [k for k in history if k != "epoch" and not k.startswith("val_") and k not in JOINED and history[k]]
    if not names:
        raise ValueError("plot_training_curves: history has no metrics")
    levels = dict(levels or {})
    cols = min(len(names), 4)
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, k in zip(axes.flat, names):
        ep = history.get("epoch") or list(range(1, len(history[k]) + 1))
        keys = [k] + [j for j, to in JOINED.items() if to == k]
        for key in keys:
            for name, style in ((key, "o-"), (f"val_{key}", "s--")):
                xs, ys = _logged(ep, history.get(name) or [])
                if xs:
                    lab = LABELS.get(key, "training") if name == key else f"{LABELS.get(key, '')} validation".strip()
                    ax.plot(xs, ys, style, ms=3, label=lab)
        if k in levels:
            value, label = levels[k]
            ax.axhline(value, color="#d62728", ls="--", lw=1.2, label=label)
            ax.set_ylim(bottom=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.2, 1.4 ticks
        ax.set_title(TITLES.get(k, k.replace("_", " ")), fontsize=9.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        save(fig, path, dpi=100, vector=vector)
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
    from ._figure import save

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
        save(fig, path, dpi=100)
    finally:
        plt.close(fig)
