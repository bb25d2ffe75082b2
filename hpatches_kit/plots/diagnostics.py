"""Plots that look inside a descriptor space: t-SNE map, PCA cumulative energy, positive vs negative distance
histograms and the failure galleries of matching and verification. The data come from
:mod:`hpatches_kit.evaluation.diagnostics`; every figure is written as PNG and PDF (atomically).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ._figure import plt as _plt
from ._figure import save

log = logging.getLogger(__name__)

COLOURS = {"e": "#4daf4a", "h": "#e41a1c", "t": "#377eb8"}
NAMES = {"e": "Easy", "h": "Hard", "t": "Tough"}
MARKERS = {"ref": "*", "e": "o", "h": "s", "t": "^"}

__all__ = [
    "plot_tsne",
    "plot_pca_energy",
    "plot_distance_histograms",
    "plot_matching_failures",
    "plot_verification_failures",
    "plot_diagnostics",
]


def plot_tsne(tsne: dict, path, title: str = "t-SNE of the descriptors") -> list[Path]:
    """The t-SNE map of :func:`~hpatches_kit.evaluation.diagnostics.tsne_map`: one colour per track, one
    marker per variant (★ ref, ● Easy, ■ Hard, ▲ Tough).

    Args:
        tsne: the dict :func:`~hpatches_kit.evaluation.diagnostics.tsne_map` returns.
        path: output ``.png`` (a ``.pdf`` is written next to it).

    Returns:
        The files written.
    """
    plt = _plt()
    xy, track, variant = np.asarray(tsne["xy"]), np.asarray(tsne["track"]), np.asarray(tsne["variant"])
    n = int(track.max()) + 1 if len(track) else 0
    cmap = plt.get_cmap("tab20" if n <= 20 else "gist_ncar")
    colours = [cmap(k % 20) if n <= 20 else cmap(k / max(1, n)) for k in range(n)]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    for v, m in MARKERS.items():
        sel = variant == v
        if sel.any():
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                c=[colours[k] for k in track[sel]],
                marker=m,
                s=90 if v == "ref" else 28,
                edgecolors="k",
                linewidths=0.4,
            )
    handles = [
        plt.Line2D(
            [],
            [],
            marker=m,
            ls="",
            color="grey",
            markeredgecolor="k",
            ms=9 if v == "ref" else 6,
            label="ref" if v == "ref" else NAMES[v],
        )
        for v, m in MARKERS.items()
    ]
    ax.legend(
        handles=handles, title="image (colour = track)", loc="best", fontsize=8, title_fontsize=8, framealpha=0.85
    )
    ax.set(title=f"{title}\n{n} random tracks x 16 images", xticks=[], yticks=[])
    fig.tight_layout()
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def plot_pca_energy(curves: dict, path, title: str = "PCA cumulative energy") -> list[Path]:
    """Cumulative energy vs number of principal components, one line per descriptor, with the dimensions
    holding 90% and 99% of the energy marked (and given in the legend).

    Args:
        curves: ``{name: pca dict}`` (:func:`~hpatches_kit.evaluation.diagnostics.pca_energy`, or a results
            file's ``diagnostics`` block: keys ``energy``/``pca_energy``, ``dims_90``/``pca_dims_90``, ...).
        path: output ``.png`` (a ``.pdf`` is written next to it).

    Returns:
        The files written.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, c in curves.items():
        e = np.asarray(c.get("energy", c.get("pca_energy")), np.float64)
        d90, d99 = c.get("dims_90", c.get("pca_dims_90")), c.get("dims_99", c.get("pca_dims_99"))
        if e.size == 0:
            continue
        (line,) = ax.plot(np.arange(1, len(e) + 1), e, lw=1.8, label=f"{name}: 90% in {d90}, 99% in {d99} dims")
        for d, m in ((d90, "o"), (d99, "s")):
            if d:
                ax.plot(d, e[d - 1], m, color=line.get_color(), ms=6, mec="k", mew=0.5)
    ax.axhline(0.90, color="grey", ls=":", lw=1)
    ax.axhline(0.99, color="grey", ls="--", lw=1)
    marks = [
        plt.Line2D([], [], marker="o", ls="", color="grey", mec="k", label="dims holding 90% (dotted)"),
        plt.Line2D([], [], marker="s", ls="", color="grey", mec="k", label="dims holding 99% (dashed)"),
    ]
    # below the axes: the curves rise to the upper left and end at the right, where a legend would cover them
    ax.legend(
        handles=ax.get_legend_handles_labels()[0] + marks,
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=1,
        frameon=False,
    )
    ax.set(
        xscale="log",
        xlabel="principal components",
        ylabel="cumulative energy (fraction of variance)",
        ylim=(0, 1.02),
        title=title,
    )
    ax.grid(True, ls=":", which="both")
    fig.tight_layout()
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def plot_distance_histograms(samples: dict, path, distance: str = "L2") -> list[Path]:
    """Positive vs negative distance histograms, one panel per variant (Easy / Hard / Tough).

    Args:
        samples: :func:`~hpatches_kit.evaluation.diagnostics.distance_samples`.
        path: output ``.png`` (a ``.pdf`` is written next to it).
        distance: the distance's name, for the axis label.

    Returns:
        The files written.
    """
    plt = _plt()
    allv = np.concatenate([a for d in samples.values() for a in d.values() if len(a)] or [np.zeros(1)])
    bins = np.linspace(0.0, float(np.quantile(allv, 0.999)) * 1.02 + 1e-9, 60)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True)
    styles = (
        ("pos", "positive (same track)", "#1b9e77"),
        ("neg_intra", "negative, same image", "#d95f02"),
        ("neg_inter", "negative, other sequence", "#7570b3"),
    )
    for ax, v in zip(axes, "eht"):
        d = samples.get(v, {})
        for key, label, col in styles:
            a = np.asarray(d.get(key, []))
            if len(a):
                ax.hist(
                    a,
                    bins=bins,
                    density=True,
                    histtype="stepfilled" if key == "pos" else "step",
                    alpha=0.45 if key == "pos" else 1.0,
                    lw=1.5,
                    color=col,
                    label=f"{label} (n={len(a)})",
                )
        ax.set(title=f"{NAMES[v]}", xlabel=f"{distance} distance")
        ax.grid(True, ls=":")
    axes[0].set_ylabel("density")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7.5, loc="lower center", ncol=3, frameon=False)  # under the panels
    fig.suptitle("pair distances: ref patch vs target-image patch")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def _patch(dataset, seq: str, typ: str, idx: int, noisy: bool = False) -> np.ndarray:
    p = np.asarray(dataset[seq].patches(typ, noisy=noisy)[idx])
    return p.reshape(p.shape[0], p.shape[1])


def _show(ax, img, title, colour="k"):
    ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, color=colour)
    for s in ax.spines.values():
        s.set_edgecolor(colour)
        s.set_linewidth(1.5)


def plot_matching_failures(failures: dict, dataset, path, noisy: bool = False) -> list[Path]:
    """The matching failure gallery: per variant (one band each), the queries whose true match ranks worst:
    the query (``ref``), the wrong top match and the true match in the target image, with their distances.

    Args:
        failures: :func:`~hpatches_kit.evaluation.diagnostics.matching_failures`.
        dataset: the :class:`~hpatches_kit.data.HPatchesDataset` the descriptors were computed on.
        path: output ``.png`` (a ``.pdf`` is written next to it).
        noisy: show the noisy (N-HPatches) patches.

    Returns:
        The files written.
    """
    plt = _plt()
    per = max([len(failures.get(v, [])) for v in "eht"] + [1])
    fig = plt.figure(figsize=(1.3 * 3 * per + 0.4, 7.2), layout="constrained")
    fig.suptitle(
        "matching failures, worst rank of the true match first: query (ref, black) | wrong top match "
        "(red) | true match (green)",
        fontsize=9,
    )
    for v, sub in zip("eht", fig.subfigures(3, 1, hspace=0.04)):
        fs = failures.get(v, [])
        sub.suptitle(NAMES[v], fontsize=10, color=COLOURS[v], x=0.01, ha="left")
        axes = sub.subplots(1, 3 * per, squeeze=False)[0]
        for c in range(per):
            trip = axes[3 * c : 3 * c + 3]
            if c >= len(fs):
                for ax in trip:
                    ax.axis("off")
                if c == 0:
                    trip[1].text(0.5, 0.5, "no failure", ha="center", va="center", transform=trip[1].transAxes)
                continue
            f = fs[c]
            s, t = f["sequence"], f["type"]
            _show(trip[0], _patch(dataset, s, "ref", f["query"], noisy), f"{s[:14]}\nquery #{f['query']}")
            _show(
                trip[1], _patch(dataset, s, t, f["top"], noisy), f"top: {t} #{f['top']}\nd={f['d_top']:.3g}", "#d62728"
            )
            _show(
                trip[2],
                _patch(dataset, s, t, f["query"], noisy),
                f"true: rank {f['rank'] + 1}\nd={f['d_true']:.3g}",
                "#2ca02c",
            )
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def plot_verification_failures(failures: dict, dataset, path, noisy: bool = False) -> list[Path]:
    """The verification failure gallery: the most confident false negatives (same track, far apart) and false
    positives (different tracks, close), one pair per column (ref patch above, target patch below), at the
    threshold that accepts 95% of the positive pairs.

    Args:
        failures: :func:`~hpatches_kit.evaluation.diagnostics.verification_failures`.
        dataset: the :class:`~hpatches_kit.data.HPatchesDataset` the descriptors were computed on.
        path: output ``.png`` (a ``.pdf`` is written next to it).
        noisy: show the noisy (N-HPatches) patches.

    Returns:
        The files written.
    """
    plt = _plt()
    kinds = (
        ("false_negatives", "false negatives: same track, distance above the threshold (farthest first)"),
        ("false_positives", "false positives: different tracks, distance below the threshold (closest first)"),
    )
    per = max([len(failures.get(k, [])) for k, _ in kinds] + [1])
    fig = plt.figure(figsize=(max(7.0, 1.35 * per + 0.6), 7.0), layout="constrained")
    fig.suptitle(
        f"verification failures at distance threshold {failures['threshold']:.3g} "
        f"(accepts {100 * failures.get('recall', 0.95):.0f}% of the positive pairs)",
        fontsize=10,
    )
    for (k, label), sub in zip(kinds, fig.subfigures(2, 1, hspace=0.05)):
        ps = failures.get(k, [])
        sub.suptitle(label, fontsize=9, x=0.01, ha="left")
        axes = sub.subplots(2, per, squeeze=False)
        axes[0][0].set_ylabel("ref", fontsize=8)
        axes[1][0].set_ylabel("target", fontsize=8)
        for c in range(per):
            a, b = axes[0][c], axes[1][c]
            if c >= len(ps):
                a.axis("off")
                b.axis("off")
                if c == 0:
                    a.text(0.5, 0.5, "none", ha="center", va="center", transform=a.transAxes)
                continue
            p = ps[c]
            _show(a, _patch(dataset, p["sequence"], "ref", p["idx1"], noisy), f"{p['sequence'][:14]}\n#{p['idx1']}")
            _show(
                b,
                _patch(dataset, p["sequence"], p["type"], p["idx2"], noisy),
                f"{p['type']} #{p['idx2']}\nd={p['distance']:.3g}",
                "#d62728",
            )
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def plot_diagnostics(
    descs,
    out_dir,
    dataset=None,
    sequences=None,
    distance: str = "L2",
    name: str = "descriptor",
    noisy: bool = False,
    tsne_tracks: int = 40,
    seed: int = 0,
) -> list[Path]:
    """All descriptor-space plots into ``out_dir``: ``tsne.png``, ``pca_energy.png``,
    ``distance_histograms.png`` and, when ``dataset`` (the patches) is given, ``failures_matching.png`` and
    ``failures_verification.png`` (each also as PDF).

    Args:
        descs: ``{sequence: {type: (N, D)}}`` or a :class:`~hpatches_kit.evaluation.DescriptorSet`.
        out_dir: output folder.
        dataset: the :class:`~hpatches_kit.data.HPatchesDataset` (for the failure galleries; ``None``: skipped
            with a log line saying so).
        sequences: the sequences (default: all of ``descs``).
        distance: ``"L2"`` or ``"L1"``.
        name: the descriptor's name (titles).
        noisy: the descriptors describe the noisy patches (the galleries show those).
        tsne_tracks: tracks in the t-SNE map.
        seed: seed of every random draw.

    Returns:
        The files written.
    """
    from ..evaluation import diagnostics as dg

    out = Path(out_dir)
    written = []
    written += plot_tsne(
        dg.tsne_map(descs, sequences, tracks=tsne_tracks, seed=seed), out / "tsne.png", title=f"t-SNE of {name}"
    )
    rows = dg._all_rows(descs, dg._names(descs, sequences), 20000, seed)
    written += plot_pca_energy({name: dg.pca_energy(rows)}, out / "pca_energy.png")
    written += plot_distance_histograms(
        dg.distance_samples(descs, sequences, distance=distance, seed=seed),
        out / "distance_histograms.png",
        distance=distance,
    )
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "subset"):
        log.debug(
            "failure galleries skipped: they show patches, and descriptors read from CSV come without "
            "the dataset's images (use --model or --baseline)"
        )
        return written
    written += plot_matching_failures(
        dg.matching_failures(descs, sequences, distance=distance), dataset, out / "failures_matching.png", noisy=noisy
    )
    written += plot_verification_failures(
        dg.verification_failures(descs, sequences, distance=distance, seed=seed),
        dataset,
        out / "failures_verification.png",
        noisy=noisy,
    )
    return written
