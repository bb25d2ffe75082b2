"""Evaluation plots: verification ROC/PR curves, retrieval mAP vs pool size, and the three-panel bar chart
of the HPatches paper (bar = headline mAP, markers = Easy/Hard/Tough). Every file is written atomically."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from pathlib import Path

from ..evaluation import registry

COLOURS = {"e": "#4daf4a", "h": "#e41a1c", "t": "#377eb8"}
NAMES = {"e": "Easy", "h": "Hard", "t": "Tough"}

__all__ = ["plot_verification_curves", "plot_retrieval_pools", "plot_hpatches_bars", "plot_comparison", "plot_results"]


def _plt():
    from ._figure import plt

    return plt()


#: what each marker of a task's panel in :func:`plot_hpatches_bars` shows (circle, cross)
MARK_LABELS = {
    "verification": ("intra-sequence negatives", "inter-sequence negatives"),
    "matching": ("illumination sequences", "viewpoint sequences"),
    "retrieval": ("mean over pool sizes",),
}


def _mark_labels(task: str, res: dict) -> tuple:
    if task == "matching":  # a split with one kind of sequence has one marker: name which
        t = res.get("table", {}).get("e", {})
        if isinstance(t, dict) and "illum" in t:
            kinds = [
                k
                for k, n in (("illum", "illumination sequences"), ("view", "viewpoint sequences"))
                if t.get(k) is not None
            ]
            return tuple(dict(illum="illumination sequences", view="viewpoint sequences")[k] for k in kinds) or (
                "all sequences",
            )
    return MARK_LABELS.get(task, ("first sub-case", "second sub-case"))


def plot_verification_curves(results: dict, path) -> list[Path]:
    """Verification ROC (balanced protocol) and precision-recall (imbalanced protocol) curves, one line per
    variant and negative kind, with each curve's AUC / AP in the legend.

    Args:
        results: the results of :func:`~hpatches_kit.evaluation.evaluate` (``results["verification"]`` with
            curves).
        path: output ``.png`` (a ``.pdf`` is written next to it).

    Returns:
        The files written.
    """
    from ._figure import save

    plt = _plt()
    ver = results["verification"]
    cur, table = ver["curves"], ver.get("table", {})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    scores = ({}, {})  # line label -> its AUC / AP, for the legends
    for v in "eht":
        for neg, ls in (("intra", "-"), ("inter", "--")):
            c = cur[v][neg]
            t = table.get(v, {}).get(neg, {})
            lab = f"{NAMES[v]} {neg}"
            if c.get("fpr") is not None:
                axes[0].plot(c["fpr"], c["tpr"], ls, color=COLOURS[v], label=lab)
                if t.get("auc") is not None:
                    scores[0][lab] = f"AUC {t['auc']:.2f}%"
            if c.get("recall") is not None:
                axes[1].plot(c["recall"], c["precision"], ls, color=COLOURS[v], label=lab)
                if t.get("ap") is not None:
                    scores[1][lab] = f"AP {t['ap']:.2f}%"
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="Verification ROC (balanced)")
    axes[1].set(xlabel="recall", ylabel="precision", title="Verification PR (imbalanced)")
    for ax, loc, score in zip(axes, ("lower right", "lower left"), scores):
        ax.grid(True, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        handles, labels = ax.get_legend_handles_labels()
        labels = [f"{lab} ({score[lab]})" if lab in score else lab for lab in labels]
        ax.legend(
            handles,
            labels,
            fontsize=8,
            loc=loc,
            title="variant, negatives (solid: intra, dashed: inter)",
            title_fontsize=7,
        )
    fig.tight_layout()
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def plot_retrieval_pools(results: dict, path) -> list[Path]:
    """Retrieval mAP vs pool size per variant. Pool sizes larger than the pool a query can have (its 5
    positives plus every distractor of the other sequences: ``effective_pool_max``) repeat the largest
    real pool's number; they are not drawn, and the figure says so.

    Args:
        results: the results of :func:`~hpatches_kit.evaluation.evaluate` (``results["retrieval"]``).
        path: output ``.png`` (a ``.pdf`` is written next to it).

    Returns:
        The files written.
    """
    from ._figure import save

    plt = _plt()
    r = results["retrieval"]
    pools = [int(p) for p in r["pool_sizes"]]
    cap = r.get("effective_pool_max")
    shown = [p for p in pools if cap is None or p <= cap] or pools[:1]
    hidden = [p for p in pools if p not in shown]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for v in "eht":
        ax.plot(
            shown,
            [r["table"][v][str(p)] for p in shown],
            "o-",
            color=COLOURS[v],
            label=f"{NAMES[v]} (mean over all {len(pools)} pools {r.get('per_variant', {}).get(v, float('nan')):.2f})",
        )
    ax.set_xscale("log")
    ax.set(xlabel="pool size (5 positives + distractors)", ylabel="mAP [%]", title="Patch retrieval", ylim=(0, 101))
    ax.grid(True, ls=":", which="both")
    ax.legend(fontsize=8, loc="lower left")
    if hidden:
        ax.text(
            0.98,
            0.04,
            f"pools {', '.join(f'{p:,}' for p in hidden)} not drawn:\nonly {cap - 5:,} distractors "
            f"per query\n(their mAP equals pool {cap:,}'s)",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="#444444",
            bbox=dict(fc="white", ec="#bbbbbb", alpha=0.9),
        )
    fig.tight_layout()
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


#: vertical offset of each variant's markers in its bar (Easy above, Tough below: near-equal scores stay apart)
MARK_OFFSETS = {"e": 0.22, "h": 0.0, "t": -0.22}
#: the footnote mark of a descriptor trained on the photos of the test set (``meta.not_held_out``)
NOT_HELD_OUT = "\u2020"


def comparison_caption(entries: Seq[tuple[str, dict]]) -> str:
    """The caption under a comparison figure: the test set (``meta.data`` when recorded), the split and its
    sequences/tracks, the retrieval pools capped on a small set, and a footnote per descriptor trained on the
    photos it is tested on (``meta.not_held_out``)."""
    from ..evaluation.retrieval import capped_pools_note

    if not entries:
        return ""
    m = entries[0][1].get("meta", {})
    data = m.get("data")
    lines = [
        f"test set: {data if data else 'held-out sequences'}, split {m.get('split')!s} "
        f"({m.get('sequences')} sequences, {m.get('tracks')} tracks)"
    ]
    ret = next((r["retrieval"] for _, r in entries if isinstance(r.get("retrieval"), dict)), None)
    note = capped_pools_note(ret) if ret else None
    if note:
        lines.append(f"retrieval: {note}")
    for n, r in entries:
        why = r.get("meta", {}).get("not_held_out")
        if why:
            lines.append(f"{NOT_HELD_OUT} {n}: trained on the photos of this test set, not held out ({why})")
    return "\n".join(lines)


def plot_hpatches_bars(entries: Seq[tuple[str, dict]], path) -> list[Path]:
    """HPatches-paper style: one panel per task, one bar per descriptor (its headline mAP, written in a column at
    the panel's right, clear of the bars), coloured markers for Easy/Hard/Tough (Easy above the bar's middle,
    Tough below); the marker shape says which sub-case (legend under each panel: verification ● intra / ×
    inter negatives, matching ● illumination / × viewpoint sequences, retrieval ● the mean over pool sizes).
    The caption names the test set and split (:func:`comparison_caption`); a descriptor trained on the test
    photos is marked with a dagger.

    Args:
        entries: ``[(name, results)]``, results of :func:`~hpatches_kit.evaluation.evaluate`.
        path: output ``.png`` (a ``.pdf`` is written next to it).

    Returns:
        The files written.
    """
    from matplotlib.transforms import blended_transform_factory

    from ._figure import save

    plt = _plt()
    tasks = [t for t in registry.names() if any(t in r for _, r in entries)]
    flagged = {n for n, r in entries if r.get("meta", {}).get("not_held_out")}
    width = max(len(n) for n, _ in entries) if entries else 10
    fig, axes = plt.subplots(
        1,
        max(1, len(tasks)),
        figsize=(4.9 * max(1, len(tasks)) + 0.07 * width, max(3.0, 1.9 + 0.5 * len(entries))),
        squeeze=False,
    )
    for ax, task in zip(axes[0], tasks):
        rows = sorted([(n, r[task]) for n, r in entries if task in r], key=lambda x: x[1]["headline"]["value"])
        ys = range(len(rows))
        ax.barh(list(ys), [r["headline"]["value"] for _, r in rows], color="#d9d9d9", edgecolor="k", height=0.8)
        labels = _mark_labels(task, rows[0][1]) if rows else ()
        right = blended_transform_factory(ax.transAxes, ax.transData)
        for y, (_, r) in zip(ys, rows):
            for v, vals in registry.get(task).variant_points(r).items():
                for j, x in enumerate(vals):
                    ax.plot(
                        x,
                        y + MARK_OFFSETS[v],
                        "o" if j == 0 else "x",
                        color=COLOURS[v],
                        ms=5.5,
                        mew=1.6,
                        clip_on=False,
                        zorder=5,
                    )
            ax.text(1.02, y, f"{r['headline']['value']:.2f}", transform=right, va="center", ha="left", fontsize=8.5)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([n + (NOT_HELD_OUT if n in flagged else "") for n, _ in rows], fontsize=8.5)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlim(0, 104)  # room for markers at 100
        ax.set_xticks(range(0, 101, 20))
        ax.set_xlabel(registry.get(task).plot_label)
        ax.grid(True, axis="x", ls=":")
        marks = [
            plt.Line2D([], [], marker=m, ls="", color="#555555", mew=1.8, label=lab)
            for m, lab in zip(("o", "x"), labels)
        ]
        ax.legend(
            handles=marks,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16 - 0.2 / max(1, len(entries))),
            ncol=len(marks),
            frameon=False,
            fontsize=8,
            handletextpad=0.2,
            columnspacing=1.0,
        )
    handles = [plt.Line2D([], [], marker="s", ls="", color=COLOURS[v], label=NAMES[v]) for v in "eht"]
    handles.append(plt.Rectangle((0, 0), 1, 1, fc="#d9d9d9", ec="k", label="bar: headline mAP (value at its right)"))
    fig.legend(handles=handles, loc="upper center", ncol=4, frameon=False, fontsize=9)
    caption = comparison_caption(entries)
    n_cap = caption.count("\n") + 1 if caption else 0
    bottom = min(0.45, (0.08 + 0.17 * n_cap) / fig.get_figheight())
    if caption:
        fig.text(0.01, 0.005, caption, ha="left", va="bottom", fontsize=8, color="#333333")
    fig.tight_layout(rect=(0, bottom, 1, 0.92))
    try:
        return save(fig, path)
    finally:
        plt.close(fig)


def plot_comparison(entries: Seq[tuple[str, dict]], out_dir) -> list[Path]:
    """The figures of ``hpatches-eval compare``: ``comparison.png`` (:func:`plot_hpatches_bars`; for whole-image
    matching results :func:`~hpatches_kit.plots.benchmarks.plot_mma`, every descriptor on one figure) and, for the
    results that carry a ``meta.diagnostics`` block, ``comparison_pca_energy.png`` (the PCA cumulative-energy curves
    side by side); each with a PDF twin.

    Args:
        entries: ``[(name, results)]``.
        out_dir: output folder.

    Returns:
        The files written.
    """
    from ..evaluation.compare import is_sequences_result
    from .diagnostics import plot_pca_energy

    out = Path(out_dir)
    if entries and is_sequences_result(entries[0][1]):  # whole-image matching: every descriptor's MMA curves
        from .benchmarks import plot_mma

        named = [{**r, "meta": {**r["meta"], "descriptor": n}} for n, r in entries]
        return [plot_mma(named, out / "comparison.png")]
    written = plot_hpatches_bars(entries, out / "comparison.png")
    diag = {
        n: r["meta"]["diagnostics"]
        for n, r in entries
        if isinstance(r.get("meta", {}).get("diagnostics"), dict) and r["meta"]["diagnostics"].get("pca_energy")
    }
    if diag:
        written += plot_pca_energy(
            diag, out / "comparison_pca_energy.png", title="PCA cumulative energy of the test descriptors"
        )
    return written


def plot_results(results: dict, out_dir, name: str = "descriptor") -> list[Path]:
    """All plots for one result dict into ``out_dir`` (PNG, each with a PDF twin); returns the PNG paths."""
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
