"""Looking inside a descriptor space: PCA cumulative energy, a t-SNE map, positive vs negative distance
histograms and the failures of the matching and verification tasks.

These functions compute data only (NumPy / scikit-learn); :mod:`hpatches_kit.plots.diagnostics` draws it.
Descriptors are given as ``{sequence: {type: (N, D)}}`` or a :class:`~.descriptor_set.DescriptorSet`
(types ``ref, e1..e5, h1..h5, t1..t5``; patch ``i`` of every type shows the same scene point).

Pairs follow the HPatches definitions: a **positive** pair is patch ``i`` of ``ref`` and patch ``i`` of a
target image of variant ``v`` (Easy / Hard / Tough); an **intra** negative pairs it with another patch of the
same target image, an **inter** negative with a patch of another sequence's target image. Matching queries are
the ``ref`` patches, searched among all patches of one target image (the official matching task).

Examples:
    >>> import numpy as np
    >>> from hpatches_kit.evaluation.diagnostics import pca_energy
    >>> x = np.random.default_rng(0).normal(size=(500, 8)) * [10, 1, 1, 1, 1, 1, 1, 1]
    >>> e = pca_energy(x)
    >>> e["dims_90"], round(float(e["energy"][0]), 2)
    (1, 0.92)
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq

import numpy as np

from ..layout import TYPES

__all__ = [
    "pca_energy",
    "dims_for_energy",
    "tsne_map",
    "distance_samples",
    "matching_failures",
    "verification_failures",
    "descriptor_diagnostics",
    "VARIANT_TYPES",
]

#: the target image types of each variant
VARIANT_TYPES = {v: [f"{v}{k}" for k in range(1, 6)] for v in "eht"}


def _stack(descs, seq: str) -> np.ndarray:
    """``(16, N, D)`` float32 descriptors of ``seq`` in :data:`TYPES` order."""
    stacks = getattr(descs, "stacks", None)
    if stacks is not None:
        return np.asarray(stacks[seq], np.float32)
    return np.stack([np.asarray(descs[seq][t], np.float32).reshape(len(descs[seq][t]), -1) for t in TYPES])


def _names(descs, sequences) -> list[str]:
    if sequences is not None:
        return list(sequences)
    return list(descs.names) if hasattr(descs, "names") and not isinstance(descs, Mapping) else list(descs)


def _dist(a: np.ndarray, b: np.ndarray, distance: str = "L2") -> np.ndarray:
    """Row-wise distances between equally long ``(M, D)`` arrays."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if distance == "L1":
        return np.abs(d).sum(1)
    if distance == "L2":
        return np.sqrt((d * d).sum(1))
    raise ValueError(f"distance must be 'L2' or 'L1', got {distance!r}")


def _cdist(a: np.ndarray, b: np.ndarray, distance: str = "L2") -> np.ndarray:
    """``(M, K)`` distances of every row of ``a`` to every row of ``b``."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if distance == "L1":
        return np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
    if distance != "L2":
        raise ValueError(f"distance must be 'L2' or 'L1', got {distance!r}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def dims_for_energy(energy: np.ndarray, fraction: float) -> int:
    """The number of leading principal components whose cumulative energy reaches ``fraction``.

    Args:
        energy: cumulative energy curve (non-decreasing, ending at 1), as :func:`pca_energy` returns it.
        fraction: in (0, 1].

    Returns:
        The smallest ``k`` with ``energy[k - 1] >= fraction`` (0 when the curve is empty or all zero).

    Examples:
        >>> dims_for_energy(np.array([0.5, 0.95, 1.0]), 0.9)
        2
    """
    energy = np.asarray(energy, np.float64)
    if energy.size == 0 or energy[-1] <= 0:
        return 0
    # a tiny tolerance: 0.9 reached by a sum of float rounding errors counts as reached
    return int(np.searchsorted(energy, fraction - 1e-12) + 1)


def pca_energy(x, max_rows: int = 20000, seed: int = 0) -> dict:
    """Cumulative energy of the principal components of a set of descriptors: how many dimensions carry the
    variance. A collapsing descriptor concentrates its energy in a few components.

    Args:
        x: ``(M, D)`` descriptors.
        max_rows: at most this many rows (drawn at random, without replacement) are used.
        seed: seed of that draw.

    Returns:
        ``{"energy": (D',) cumulative fraction of the total variance of the first k components,
        "eigenvalues": (D',) variances along the components, largest first, "dims_90", "dims_99": the number
        of components holding 90% / 99% of the energy, "dim": D, "rows": rows used}`` with ``D' = min(M, D)``.
        Constant descriptors give an all-zero curve and ``dims_90 = dims_99 = 0``.

    Shape:
        - x: :math:`(M, D)`

    Examples:
        >>> x = np.zeros((10, 4)); x[:, 0] = np.arange(10)
        >>> pca_energy(x)["dims_99"]
        1
    """
    x = np.asarray(x, np.float64)
    x = x.reshape(len(x), -1)
    if len(x) > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
    dim = x.shape[1]
    if len(x) < 2:
        return {
            "energy": np.zeros(0),
            "eigenvalues": np.zeros(0),
            "dims_90": 0,
            "dims_99": 0,
            "dim": dim,
            "rows": len(x),
        }
    xc = x - x.mean(0)
    # eigenvalues of the D x D covariance (cheaper than an SVD of the M x D data, same values); the smaller of
    # the two sides when there are fewer rows than dimensions
    gram = xc.T @ xc if len(x) >= dim else xc @ xc.T
    ev = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None) / (len(x) - 1)
    ev = ev[: min(len(x), dim)]
    total = ev.sum()
    energy = np.cumsum(ev) / total if total > 0 else np.zeros_like(ev)
    return {
        "energy": energy,
        "eigenvalues": ev,
        "dims_90": dims_for_energy(energy, 0.90),
        "dims_99": dims_for_energy(energy, 0.99),
        "dim": dim,
        "rows": len(x),
    }


def _all_rows(descs, names, max_rows: int, seed: int) -> np.ndarray:
    """The rows of every sequence's ``(16 N, D)`` stack, concatenated in ``names`` order, or ``max_rows`` of
    them drawn at random: the drawn rows are gathered from each stack, never from a concatenated copy of the
    whole set (1.2 GB at full HPatches size)."""
    stacks = [_stack(descs, s) for s in names]  # (16, N, D) each: views of a DescriptorSet's block
    if not stacks:
        return np.zeros((0, 1), np.float32)
    starts = np.concatenate([[0], np.cumsum([st.shape[0] * st.shape[1] for st in stacks])])
    total = int(starts[-1])
    if total <= max_rows:
        return np.concatenate([st.reshape(-1, st.shape[-1]) for st in stacks])
    pick = np.sort(np.random.default_rng(seed).choice(total, max_rows, replace=False))
    which = np.searchsorted(starts, pick, side="right") - 1
    out = []
    for k in np.unique(which):  # row r of a sequence's (16 N, D) stack is type r // N, patch r % N
        r = pick[which == k] - starts[k]
        out.append(stacks[k][r // stacks[k].shape[1], r % stacks[k].shape[1]])
    return np.concatenate(out)


def tsne_map(
    descs, sequences: Seq[str] | None = None, tracks: int = 40, perplexity: float = 30.0, seed: int = 0
) -> dict:
    """A 2-D t-SNE map (scikit-learn) of all 16 descriptors of a random sample of tracks.

    A good descriptor draws each track as a tight cluster (its Easy views closest, Tough ones at the rim).

    Args:
        descs: ``{sequence: {type: (N, D)}}`` or a :class:`DescriptorSet`.
        sequences: sequences to sample from (default: all).
        tracks: number of tracks drawn (uniformly over all tracks of ``sequences``).
        perplexity: t-SNE perplexity (lowered to fit small samples).
        seed: seed of the draw and of t-SNE.

    Returns:
        ``{"xy": (M, 2), "track": (M,) track number 0..tracks-1, "type": (M,) image type names,
        "variant": (M,) "ref" / "e" / "h" / "t", "sequence": (M,) sequence names, "index": (M,) patch index}``
        with ``M = 16 * tracks``.
    """
    from sklearn.manifold import TSNE

    names = _names(descs, sequences)
    lengths = [int(_stack(descs, s).shape[1]) for s in names]
    total = int(sum(lengths))
    if total == 0:
        raise ValueError("tsne_map: no descriptors")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(total, min(tracks, total), replace=False))
    starts = np.cumsum([0] + lengths)
    which = np.searchsorted(starts, pick, side="right") - 1
    xs, track, typ, seq, idx = [], [], [], [], []
    for k, (w, p) in enumerate(zip(which, pick)):
        st = _stack(descs, names[w])
        i = int(p - starts[w])
        xs.append(st[:, i])
        track += [k] * len(TYPES)
        typ += list(TYPES)
        seq += [names[w]] * len(TYPES)
        idx += [i] * len(TYPES)
    x = np.concatenate(xs).astype(np.float64)
    if not np.isfinite(x).all() or not np.ptp(x, axis=0).any():
        # scikit-learn's t-SNE crashes the process (SIGSEGV) on constant rows: refused here, in Python
        raise ValueError("tsne_map: the descriptors are constant or not finite; no map to draw")
    perp = float(min(perplexity, max(2.0, (len(x) - 1) / 3.0)))
    xy = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x)
    typ = np.array(typ)
    variant = np.array(["ref" if t == "ref" else t[0] for t in typ])
    return {
        "xy": xy,
        "track": np.array(track),
        "type": typ,
        "variant": variant,
        "sequence": np.array(seq),
        "index": np.array(idx),
    }


def distance_samples(
    descs,
    sequences: Seq[str] | None = None,
    distance: str = "L2",
    max_pairs: int = 20000,
    seed: int = 0,
    max_tracks: int | None = None,
) -> dict:
    """Positive and negative pair distances per variant, for the distance histograms.

    Args:
        descs: ``{sequence: {type: (N, D)}}`` or a :class:`DescriptorSet`.
        sequences: the sequences (default: all). Inter-sequence negatives need at least two.
        distance: ``"L2"`` or ``"L1"``.
        max_pairs: at most this many pairs of each kind per variant (a random subset).
        seed: seed of the negative draw and of the subset.
        max_tracks: use at most about this many tracks in all (a random subset of each sequence's tracks, in
            proportion; ``None``: every track).

    Returns:
        ``{v: {"pos": (P,), "neg_intra": (P,), "neg_inter": (P,) or (0,)}}`` for ``v`` in ``"e", "h", "t"``:
        for every sequence, target image of the variant and patch ``i``, the distance of ``ref[i]`` to
        ``target[i]`` (positive), to ``target[j]`` with a random ``j != i`` (intra) and to a random patch of
        the same target type of another sequence (inter).
    """
    names = _names(descs, sequences)
    rng = np.random.default_rng(seed)
    stacks = {s: _stack(descs, s) for s in names}
    total = sum(st.shape[1] for st in stacks.values())
    if max_tracks is not None and total > max_tracks:
        frac = max_tracks / total
        for s, st in stacks.items():
            n = st.shape[1]
            keep = max(2, int(round(n * frac)))
            stacks[s] = st[:, np.sort(rng.choice(n, min(n, keep), replace=False))]
    lengths = np.array([stacks[s].shape[1] for s in names])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    out = {}
    for v, types in VARIANT_TYPES.items():
        pos, intra, inter = [], [], []
        for t in types:
            ti = TYPES.index(t)
            pool = np.concatenate([stacks[s][ti] for s in names])  # this type's patches of every sequence
            for si, s in enumerate(names):
                st = stacks[s]
                n = st.shape[1]
                ref, tgt = st[0], st[ti]
                pos.append(_dist(ref, tgt, distance))
                if n >= 2:
                    j = (np.arange(n) + rng.integers(1, n, size=n)) % n  # j != i, uniform over the others
                    intra.append(_dist(ref, tgt[j], distance))
                if len(names) >= 2:  # a uniform row of the other sequences: skip this sequence's block
                    r = rng.integers(0, len(pool) - n, size=n)
                    r = np.where(r >= starts[si], r + n, r)
                    inter.append(_dist(ref, pool[r], distance))
        res = {}
        for key, parts in (("pos", pos), ("neg_intra", intra), ("neg_inter", inter)):
            a = np.concatenate(parts) if parts else np.zeros(0)
            if len(a) > max_pairs:
                a = a[np.random.default_rng(seed + 1).choice(len(a), max_pairs, replace=False)]
            res[key] = a
        out[v] = res
    return out


def matching_failures(descs, sequences: Seq[str] | None = None, distance: str = "L2", worst: int = 4) -> dict:
    """The matching queries whose true match ranks worst, per variant.

    Every ``ref`` patch ``i`` of a sequence is a query against all patches of each target image; its true
    match is patch ``i``. The rank of the true match is the number of patches strictly closer to the query
    (0: matched correctly).

    Args:
        descs: ``{sequence: {type: (N, D)}}`` or a :class:`DescriptorSet`.
        sequences: the sequences searched (default: all).
        distance: ``"L2"`` or ``"L1"``.
        worst: failures kept per variant.

    Returns:
        ``{v: [{"sequence", "type", "query", "top", "rank", "d_true", "d_top"}, ...]}`` for ``v`` in
        ``"e", "h", "t"``, worst rank first (ties: the larger margin ``d_true - d_top`` first): ``query`` is the
        patch index (also the true match's), ``top`` the index of the nearest (wrong) patch in ``type``.
        Only failures (rank >= 1) are listed, and each query once (in the target image where its true match
        ranks worst), so that one hopeless patch does not fill the gallery.

    Examples:
        >>> d = {"s": {t: np.eye(3, dtype=np.float32) for t in TYPES}}
        >>> d["s"]["h1"] = np.eye(3, dtype=np.float32)[[1, 0, 2]]   # h1 swaps patches 0 and 1
        >>> [(f["type"], f["query"], f["top"], f["rank"]) for f in matching_failures(d)["h"]]
        [('h1', 0, 1, 1), ('h1', 1, 0, 1)]
    """
    names = _names(descs, sequences)
    out = {}
    for v, types in VARIANT_TYPES.items():
        found = []
        for s in names:
            st = _stack(descs, s)
            ref = st[0]
            for t in types:
                d = _cdist(ref, st[TYPES.index(t)], distance)
                n = len(d)
                true = d[np.arange(n), np.arange(n)]
                rank = (d < true[:, None]).sum(1)
                top = d.argmin(1)
                for i in np.flatnonzero(rank > 0):
                    found.append(
                        {
                            "sequence": s,
                            "type": t,
                            "query": int(i),
                            "top": int(top[i]),
                            "rank": int(rank[i]),
                            "d_true": float(true[i]),
                            "d_top": float(d[i, top[i]]),
                        }
                    )
        found.sort(key=lambda f: (-f["rank"], -(f["d_true"] - f["d_top"]), f["sequence"], f["type"], f["query"]))
        seen, kept = set(), []
        for f in found:
            if (f["sequence"], f["query"]) not in seen:
                seen.add((f["sequence"], f["query"]))
                kept.append(f)
        out[v] = kept[:worst]
    return out


def verification_failures(
    descs, sequences: Seq[str] | None = None, distance: str = "L2", worst: int = 6, recall: float = 0.95, seed: int = 0
) -> dict:
    """The most confident mistakes of a distance threshold on positive / intra-negative pairs.

    The pairs are those of :func:`distance_samples` (all variants together, intra-sequence negatives: the
    harder kind). The threshold accepts ``recall`` of the positives (the FPR95 operating point at 0.95).

    Args:
        descs: ``{sequence: {type: (N, D)}}`` or a :class:`DescriptorSet`.
        sequences: the sequences (default: all).
        distance: ``"L2"`` or ``"L1"``.
        worst: pairs kept per kind.
        recall: fraction of positive pairs the threshold accepts.
        seed: seed of the negative draw.

    Returns:
        ``{"threshold", "false_positives": [...], "false_negatives": [...]}``; each pair is ``{"sequence",
        "type", "idx1" (ref patch), "idx2" (patch of ``type``), "distance", "positive"}``. False negatives:
        positives farthest above the threshold, farthest first; false positives: negatives below the
        threshold, closest first.
    """
    names = _names(descs, sequences)
    rng = np.random.default_rng(seed)
    cols = {k: {"d": [], "s": [], "t": [], "i": [], "j": []} for k in ("pos", "neg")}

    def add(kind, d, si, ti, i, j):
        c = cols[kind]
        c["d"].append(d)
        c["s"].append(np.full(len(d), si))
        c["t"].append(np.full(len(d), ti))
        c["i"].append(i)
        c["j"].append(j)

    for si, s in enumerate(names):
        st = _stack(descs, s)
        n = st.shape[1]
        ar = np.arange(n)
        for t in [t for ts in VARIANT_TYPES.values() for t in ts]:
            ti = TYPES.index(t)
            add("pos", _dist(st[0], st[ti], distance), si, ti, ar, ar)
            if n >= 2:
                j = (ar + rng.integers(1, n, size=n)) % n
                add("neg", _dist(st[0], st[ti][j], distance), si, ti, ar, j)
    if not cols["pos"]["d"]:
        raise ValueError("verification_failures: no descriptors")
    pos = {k: np.concatenate(v) for k, v in cols["pos"].items()}
    neg = {k: np.concatenate(v) for k, v in cols["neg"].items()} if cols["neg"]["d"] else None
    thr = float(np.quantile(pos["d"], recall))

    def pick(c, order, positive):
        return [
            {
                "sequence": names[c["s"][k]],
                "type": TYPES[c["t"][k]],
                "idx1": int(c["i"][k]),
                "idx2": int(c["j"][k]),
                "distance": float(c["d"][k]),
                "positive": positive,
            }
            for k in order
        ]

    fn = np.flatnonzero(pos["d"] > thr)
    fn = fn[np.argsort(-pos["d"][fn], kind="stable")][:worst]
    fp = np.flatnonzero(neg["d"] <= thr) if neg is not None else np.zeros(0, int)
    fp = fp[np.argsort(neg["d"][fp], kind="stable")][:worst] if neg is not None else fp
    return {
        "threshold": thr,
        "recall": recall,
        "false_negatives": pick(pos, fn, True),
        "false_positives": pick(neg, fp, False) if neg is not None else [],
    }


def descriptor_diagnostics(
    descs, sequences: Seq[str] | None = None, distance: str = "L2", max_rows: int = 20000, seed: int = 0
) -> dict:
    """The small, JSON-ready ``meta.diagnostics`` block of a results file (compared across descriptors by
    ``hpatches-eval compare``).

    Args:
        descs: ``{sequence: {type: (N, D)}}`` or a :class:`DescriptorSet`.
        sequences: the sequences (default: all).
        distance: ``"L2"`` or ``"L1"`` (for the pair distances).
        max_rows: descriptors used for the PCA (a random subset).
        seed: seed of the subsets.

    Returns:
        ``{"pca_dims_90", "pca_dims_99", "pca_energy": [cumulative energy, 4 decimals], "dim", "rows",
        "distances": {v: {"pos_mean", "neg_intra_mean", "neg_inter_mean"}}}`` (the pair distances of at most
        about 2,000 random tracks).
    """
    names = _names(descs, sequences)
    e = pca_energy(_all_rows(descs, names, max_rows, seed), max_rows=max_rows, seed=seed)
    ds = distance_samples(descs, names, distance=distance, max_pairs=max_rows, seed=seed, max_tracks=2000)
    dist = {v: {f"{k}_mean": (float(a.mean()) if len(a) else None) for k, a in d.items()} for v, d in ds.items()}
    return {
        "pca_dims_90": e["dims_90"],
        "pca_dims_99": e["dims_99"],
        "pca_energy": [round(float(x), 4) for x in e["energy"]],
        "dim": e["dim"],
        "rows": e["rows"],
        "distances": dist,
    }
