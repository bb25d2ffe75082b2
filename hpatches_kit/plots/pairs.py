"""Image-pair matching plots (written atomically)."""

from __future__ import annotations

import numpy as np

from ._figure import save


def plot_similarity_matrix(sim, path, names=None, predictions=None, title: str = "pair matching") -> None:
    """Cosine similarity matrix (left images by row, right by column) as a confusion-matrix heat map; the true
    pairs lie on the diagonal, ``predictions`` (left -> matched right) are marked with a dot (green if right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = np.asarray(sim)
    n = sim.shape[0]
    side = min(12.0, 3.0 + 0.22 * n)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(sim, cmap="viridis", vmin=min(-1.0, float(sim.min())), vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    if predictions is not None:
        pred = np.asarray(predictions)
        ok = pred == np.arange(n)
        ax.scatter(pred[ok], np.arange(n)[ok], s=12, c="lime", marker="o", label="correct")
        ax.scatter(pred[~ok], np.arange(n)[~ok], s=12, c="red", marker="x", label="wrong")
        ax.legend(loc="upper right", fontsize=7, framealpha=0.7)
    if names is not None and n <= 60:
        ax.set_yticks(range(n), [str(s) for s in names], fontsize=5)
        ax.set_xticks(range(n), [str(s) for s in names], fontsize=5, rotation=90)
    ax.set_xlabel("right image")
    ax.set_ylabel("left image")
    ax.set_title(title)
    fig.tight_layout()
    try:
        save(fig, path)
    finally:
        plt.close(fig)
