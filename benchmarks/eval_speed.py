"""Speed of the vectorised HPatches protocol against the naive reference (official-style Python loops, the
one in tests/test_eval_protocol.py) on the same inputs at the official sizes.

* verification: 10^6 pairs of each kind (pos, neg_intra, neg_inter), D = 128; the naive reference is timed
  on the first --naive-pairs pairs of each kind and extrapolated linearly;
* retrieval: 10^4 queries x 2*10^4 distractors, pool sizes 100..20000; the naive reference (full cdist +
  per-query loops) is timed on --naive-queries queries and extrapolated linearly;
* matching: --seqs sequences of --tracks tracks, naive timed on --naive-seqs sequences, extrapolated.

Times are one untraced call each (after a warm-up that compiles the numba kernel); peak memory is the
tracemalloc peak of a second call (NumPy allocations) and the process max RSS.
Usage: python benchmarks/eval_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import test_eval_protocol as naive  # noqa: E402

from hpatches_kit.data import TYPES  # noqa: E402
from hpatches_kit.evaluation.descriptor_set import DescriptorSet  # noqa: E402
from hpatches_kit.evaluation.matching import eval_matching  # noqa: E402
from hpatches_kit.evaluation.retrieval import POOL_SIZES, eval_retrieval  # noqa: E402
from hpatches_kit.evaluation.tasks import RetrievalTask, VerificationPairs  # noqa: E402
from hpatches_kit.evaluation.verification import eval_verification  # noqa: E402


def make_descs(rng, n_seqs, n_tracks, dim, noise=0.9):
    descs = {}
    for i in range(n_seqs):
        name = f"{'iv'[i % 2]}_s{i:03d}"
        base = rng.normal(size=(n_tracks, dim)).astype(np.float32)
        descs[name] = {t: base + rng.normal(scale=noise, size=(n_tracks, dim)).astype(np.float32) for t in TYPES}
    return descs


def make_pairs(rng, names, n_tracks, n):
    names = np.array(names, dtype=object)
    s = names[rng.integers(0, len(names), n)]
    i1 = rng.integers(0, n_tracks, n)
    i2 = (i1 + rng.integers(1, n_tracks, n)) % n_tracks
    t1 = rng.integers(0, 5, n)
    t2 = (t1 + rng.integers(1, 5, n)) % 5
    s2 = names[rng.integers(0, len(names), n)]
    i3 = rng.integers(0, n_tracks, n)
    return VerificationPairs(
        pos=dict(s1=s, t1=t1, idx1=i1, s2=s, t2=t2, idx2=i1),
        neg_intra=dict(s1=s, t1=t1, idx1=i1, s2=s, t2=t2, idx2=i2),
        neg_inter=dict(s1=s, t1=t1, idx1=i1, s2=s2, t2=t2, idx2=i3),
    )


def head(pairs, k):
    return VerificationPairs(
        **{kind: {c: v[:k] for c, v in pairs.table(kind).items()} for kind in ("pos", "neg_intra", "neg_inter")}
    )


def timed(fn):
    """Wall time of one untraced call (tracemalloc's allocation hooks would slow it), then the peak NumPy
    allocation of a second, traced call."""
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--distractors", type=int, default=20_000)
    ap.add_argument("--seqs", type=int, default=40)
    ap.add_argument("--tracks", type=int, default=1500)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--naive-pairs", type=int, default=20_000)
    ap.add_argument("--naive-queries", type=int, default=100)
    ap.add_argument("--naive-seqs", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.9, help="view noise (0.9: SIFT-like mAPs; 3: hard case)")
    ap.add_argument("--tasks", default="verification,retrieval,matching")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    a = ap.parse_args(argv)
    if a.quick:
        a.pairs, a.queries, a.distractors, a.seqs, a.tracks = 20_000, 500, 2000, 6, 400
        a.naive_pairs, a.naive_queries, a.naive_seqs = 2000, 20, 1
    rng = np.random.default_rng(0)
    descs = make_descs(rng, a.seqs, a.tracks, a.dim, a.noise)
    run = a.tasks.split(",")
    names = list(descs)
    ds = DescriptorSet(descs)
    rows = []

    if "verification" in run:
        pairs = make_pairs(rng, names, a.tracks, a.pairs)
        t = time.perf_counter()  # one-time: compile (or load from numba's cache) the distance kernel
        eval_verification(ds, head(pairs, 1000), "L2", curves=False)
        print(f"verification kernel compile/load (once per install): {time.perf_counter() - t:.2f} s")
        ours, t_ours, peak = timed(lambda: eval_verification(ds, pairs, "L2", curves=False))
        sub = head(pairs, a.naive_pairs)
        t = time.perf_counter()
        ref = naive.ref_verification(descs, sub, "L2")
        t_naive = (time.perf_counter() - t) * a.pairs / a.naive_pairs
        chk = eval_verification(ds, sub, "L2", curves=False)
        err = max(
            max(abs(chk[v][n]["balanced"]["auc"] - ref[v][n][0]), abs(chk[v][n]["imbalanced"]["ap"] - ref[v][n][1]))
            for v in "eht"
            for n in ("intra", "inter")
        )
        rows.append(
            ("verification", f"{a.pairs:,} pairs x3 kinds", t_ours, t_naive, f"{a.naive_pairs:,} pairs", peak, err, 50)
        )

    if "retrieval" in run:
        allp = rng.permutation(a.seqs * a.tracks)[: a.queries + a.distractors]

        def tab(ix):
            return {"s": np.array([names[i // a.tracks] for i in ix], object), "idx": ix % a.tracks}

        task = RetrievalTask(queries=tab(allp[: a.queries]), distractors=tab(allp[a.queries :]))
        ours, t_ours, peak = timed(lambda: eval_retrieval(ds, task, "L2"))
        subq = RetrievalTask(
            queries={k: v[: a.naive_queries] for k, v in task.queries.items()}, distractors=task.distractors
        )
        t = time.perf_counter()
        ref = naive.ref_retrieval(descs, subq, "L2", POOL_SIZES)
        t_naive = (time.perf_counter() - t) * a.queries / a.naive_queries
        err = max(float(np.abs(ours["ap"][v][: a.naive_queries] - ref[v]).max()) for v in "eht")
        mean_ap = float(np.mean([ours["ap"][v].mean() for v in "eht"]))
        rows.append(
            (
                "retrieval",
                f"{a.queries:,} q x {a.distractors:,} d (mAP {100 * mean_ap:.0f}%)",
                t_ours,
                t_naive,
                f"{a.naive_queries} queries",
                peak,
                err,
                50,
            )
        )

    if "matching" in run:
        ours, t_ours, peak = timed(lambda: eval_matching(ds, names, "L2"))
        t = time.perf_counter()
        ref = naive.ref_matching(descs, names[: a.naive_seqs], "L2")
        t_naive = (time.perf_counter() - t) * a.seqs / a.naive_seqs
        err = max(abs(ours[s][v][k]["ap"] - ref[s][v][k][0]) for s in ref for v in "eht" for k in range(1, 6))
        rows.append(
            ("matching", f"{a.seqs} seqs x {a.tracks} tracks", t_ours, t_naive, f"{a.naive_seqs} seqs", peak, err, None)
        )

    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end (shared: timings are noisy), D = {a.dim}"
    )
    print(
        "| task | size | ours (s) | naive (s, extrapolated) | naive timed on | speed-up (target) | our peak NumPy mem | max abs diff vs naive |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, size, to, tn, on, pk, e, target in rows:
        tgt = f" ({'>=' if tn / to >= target else 'BELOW '}{target}x)" if target else ""
        print(
            f"| {name} | {size} | {to:.2f} | {tn:.1f} | {on} | {tn / to:.0f}x{tgt} | {pk / 2**30:.2f} GiB | {e:.1e} |"
        )
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
