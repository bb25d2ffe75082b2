"""The whole ``hpatches-eval`` command (process start to JSON written) against an official-style evaluator,
side by side on one HPatches-format descriptor set, numbers compared.

Data (made once, cached in --workdir): --seqs sequences x --tracks tracks of D-dim float32 descriptors in the
official CSV layout (``<seq>/<type>.csv``, shortest round-trip floats), task files in the official format:
--pairs verification pairs of each kind, --queries retrieval queries and up to --distractors distractors.
Defaults: the mid-size set of issue 13 (40 x 600, 2*10^5 pairs, 5000 queries); ``--size official`` = 116 sequences,
10^6 pairs, 10^4 queries x 2*10^4 distractors.

Times are wall seconds and, in brackets, CPU seconds (all threads; the reference's parallel reading is
timed for CPU once more in one process), since a shared machine's wall times swing with its load.

Ours: ``python -m hpatches_kit.cli.eval --task all --descriptors DIR --tasks-dir DIR --json OUT`` in a fresh
process, after one warm-up run (numba's on-disk cache compiled once per install); per-task seconds from the
JSON's ``meta.seconds``; peak RSS of the process (GNU ``time -v``, else ``ru_maxrss`` of the child).

Reference: an evaluator written here the way hpatches-benchmark's ``python/hpatches_eval.py`` and
``utils/tasks.py`` work (descriptor files read with pandas, one joblib worker per core; verification pair by
pair with ``scipy.spatial.distance``; matching with ``cdist`` + ``argmin``; retrieval with a full ``cdist``
and per-query loops; the official ``tpfp``/``pr``/``roc`` with mergesort and trapezoid), with the minimal
fixes today's NumPy needs. Its reading is timed in full; its task loops on the first --ref-fraction of the
pairs / sequences / queries and extrapolated linearly (``--ref-fraction 1``: everything, no extrapolation).
Numbers: the reference on the subset against our library on the same subset (verification, retrieval) or
our JSON (matching per sequence); with ``--ref-fraction 1``, against our JSON for every task.

Usage: python benchmarks/eval_command_speed.py [--size mid|official] [--ref-fraction F] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpatches_kit.data import TYPES  # noqa: E402

VARS = ("e", "h", "t")
POOLS = (100, 500, 1000, 5000, 10000, 15000, 20000)


# -- data ----------------------------------------------------------------------------------------------
def make_set(work: Path, seqs: int, tracks: int, dim: int, pairs: int, queries: int, distractors: int, noise: float):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from hpatches_kit.evaluation import tasks as T

    done = work / "done.json"
    spec = dict(
        seqs=seqs, tracks=tracks, dim=dim, pairs=pairs, queries=queries, distractors=distractors, noise=noise, v=1
    )
    if done.is_file() and json.loads(done.read_text()) == spec:
        return work / "descriptors" / "bench", work / "tasks"
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    names = [f"{'iv'[i % 2]}_seq{i:03d}" for i in range(seqs)]
    for s in names:
        base = rng.normal(size=(tracks, dim)).astype(np.float32)
        (work / "descriptors" / "bench" / s).mkdir(parents=True, exist_ok=True)
        for j, ty in enumerate(TYPES):
            a = (
                base
                if j == 0
                else base + rng.normal(scale=noise * (1 + (j - 1) // 5), size=base.shape).astype(np.float32)
            )
            tab = pa.table([pa.array(a[:, c]) for c in range(dim)], names=[f"c{c}" for c in range(dim)])
            pcsv.write_csv(
                tab, work / "descriptors" / "bench" / s / f"{ty}.csv", pcsv.WriteOptions(include_header=False)
            )
    lengths = {s: tracks for s in names}
    T.write_verification(work / "tasks", "full", T.generate_verification(lengths, names, pairs))
    refs = {s: np.tile(np.array([[0, 255], [255, 0]], np.uint8), (tracks, 1, 1)) for s in names}  # std > 10
    T.write_retrieval(work / "tasks", "full", T.generate_retrieval(refs, names, queries, distractors))
    done.write_text(json.dumps(spec))
    print(f"data made in {time.perf_counter() - t:.0f} s -> {work}")
    return work / "descriptors" / "bench", work / "tasks"


# -- official-style reference ----------------------------------------------------------------------------
def ref_tpfp(scores, labels, numpos=None):
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel()
    p = int(np.sum(labels))
    n = len(labels) - p
    if numpos is not None:
        extra = numpos - p
        p = numpos
        scores = np.hstack((scores, np.repeat(-np.inf, extra)))
        labels = np.hstack((labels, np.repeat(1, extra)))
    perm = np.argsort(-scores, kind="mergesort", axis=0)
    stop = np.max(np.where(scores[perm] > -np.inf))
    lab = labels[perm[: stop + 1]]
    return np.hstack((0, np.cumsum(lab == 1))), np.hstack((0, np.cumsum(lab == 0))), p, n


def ref_pr(scores, labels, numpos=None):
    tp, fp, p, n = ref_tpfp(scores, labels, numpos)
    return np.trapezoid(np.maximum(tp, 1e-10) / np.maximum(tp + fp, 1e-10), tp / float(max(p, 1e-10)))


def ref_roc(scores, labels):
    tp, fp, p, n = ref_tpfp(scores, labels)
    return np.trapezoid(tp / float(max(p, 1e-10)), fp / float(max(n, 1e-10)))


class RefSeq:
    """One sequence's descriptors as the official ``hpatch_descr``: one attribute per image type."""

    def __init__(self, base: str):
        import pandas as pd

        self.name = os.path.basename(base)
        for t in TYPES:
            a = pd.read_csv(os.path.join(base, t + ".csv"), header=None, sep=",").to_numpy().astype(np.float32)
            setattr(self, t, a)
            self.N, self.dim = a.shape


def ref_load(root: Path) -> dict:
    from joblib import Parallel, delayed

    dirs = sorted(str(p) for p in root.iterdir() if p.is_dir())
    seqs = Parallel(n_jobs=os.cpu_count())(delayed(RefSeq)(d) for d in dirs)
    return {s.name: s for s in seqs}


def ref_load_serial(root: Path) -> dict:
    return {s.name: s for s in (RefSeq(str(p)) for p in sorted(root.iterdir()) if p.is_dir())}


def _tname(v, t):
    return "ref" if t == 0 else f"{v}{t}"


def ref_verification(descr, tables: dict) -> dict:
    from scipy.spatial import distance as spd

    d = {}
    for kind, tab in tables.items():
        d[kind] = {v: np.empty(len(tab)) for v in VARS}
        for i, p in enumerate(tab):
            for v in VARS:
                d1 = getattr(descr[p[0]], _tname(v, p[1]))[p[2]]
                d2 = getattr(descr[p[3]], _tname(v, p[4]))[p[5]]
                d[kind][v][i] = spd.euclidean(d1, d2)
    res = {}
    for v in VARS:
        npos = len(d["pos"][v])
        lab = np.hstack((np.zeros(npos), np.ones(npos)))
        res[v] = {}
        for neg in ("intra", "inter"):
            dd = np.hstack((d[f"neg_{neg}"][v], d["pos"][v]))
            nimb = npos + int(npos * 0.2)
            res[v][neg] = (ref_roc(-dd, lab), ref_pr(-dd[:nimb], lab[:nimb]))
    return res


def ref_matching(descr, seqs) -> dict:
    from scipy.spatial.distance import cdist

    res = {}
    for s in seqs:
        d_ref = descr[s].ref
        gt = np.arange(d_ref.shape[0])
        res[s] = {}
        for v in VARS:
            res[s][v] = {}
            for k in range(1, 6):
                D = cdist(d_ref, getattr(descr[s], f"{v}{k}"), "euclidean")
                idx = np.argmin(D, axis=1)
                ml = idx == gt
                res[s][v][k] = ref_pr(-D[gt, idx], ml, numpos=ml.shape[0])
    return res


def ref_retrieval(descr, q, d) -> dict:
    from scipy.spatial.distance import cdist

    desc_q = np.array([descr[s].ref[i] for s, i in q], np.float32)
    desc_d = np.array([descr[s].ref[i] for s, i in d], np.float32)
    m = {s: d[:, 0] != s for s in set(d[:, 0])}
    D = cdist(desc_q, desc_d, "euclidean")
    out = {v: np.zeros((len(q), len(POOLS))) for v in VARS}
    for i in range(len(q)):
        s, idx = q[i]
        for v in VARS:
            dint = np.array(
                [
                    cdist(desc_q[i][None], getattr(descr[s], f"{v}{k}")[idx][None], "euclidean")[0, 0]
                    for k in range(1, 6)
                ]
            )
            row = D[i][m.get(s, np.ones(len(d), bool))]
            full = np.hstack((dint, row))
            gt = np.hstack((np.ones(5), np.zeros(row.size)))
            for j, k in enumerate(POOLS):
                out[v][i, j] = ref_pr(-full[:k], gt[:k])
    return out


# -- main ----------------------------------------------------------------------------------------------
def _time_v() -> str | None:
    """``/usr/bin/time`` if it is GNU time (``-v`` reports the peak RSS), else None."""
    exe = "/usr/bin/time"
    if not Path(exe).exists():
        return None
    try:
        r = subprocess.run([exe, "-v", "true"], capture_output=True, text=True)
    except OSError:
        return None
    return exe if "Maximum resident set size" in r.stderr else None


def run_ours(desc_dir, tasks_dir, out_json):
    """Our command in a fresh process: wall and CPU seconds, the JSON, the peak RSS in bytes (GNU ``time -v``'s
    "Maximum resident set size" where available, else the child's ``ru_maxrss``) and the command line."""
    cmd = [
        sys.executable,
        "-m",
        "hpatches_kit.cli.eval",
        "--task",
        "all",
        "--descriptors",
        str(desc_dir),
        "--tasks-dir",
        str(tasks_dir),
        "--json",
        str(out_json),
        "--no-progress",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tv = _time_v()
    full = [tv, "-v"] + cmd if tv else cmd
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(full, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    rss = None
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[-1]) * 1024
    if rss is None and r1.ru_maxrss > r0.ru_maxrss:
        rss = r1.ru_maxrss * 1024
    return dt, cpu, json.loads(Path(out_json).read_text()), rss, " ".join(cmd[1:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqs", type=int, default=40)
    ap.add_argument("--tracks", type=int, default=600)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--distractors", type=int, default=20_000)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument(
        "--size",
        choices=("mid", "official"),
        default="mid",
        help="mid: the issue's set (40 x 600, 2*10^5 pairs, 5000 queries; the defaults below); official: "
        "116 sequences, 10^6 pairs, 10^4 queries x 2*10^4 distractors (--tracks 1300)",
    )
    ap.add_argument("--official", action="store_true", help="the same as --size official")
    ap.add_argument("--ref-fraction", type=float, default=0.05, help="share of the reference's task loops timed")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args(argv)
    if a.official or a.size == "official":
        a.seqs, a.pairs, a.queries, a.distractors = 116, 1_000_000, 10_000, 20_000
        if a.tracks == 600:
            a.tracks = 1300
    work = Path(a.workdir or f"/tmp/hpatches-eval-bench-{a.seqs}x{a.tracks}")
    desc_dir, tasks_dir = make_set(work, a.seqs, a.tracks, a.dim, a.pairs, a.queries, a.distractors, a.noise)

    run_ours(desc_dir, tasks_dir, work / "warmup.json")  # numba's cache, page cache
    t_ours, c_ours, res, rss, cmd = run_ours(desc_dir, tasks_dir, work / "ours.json")
    sec, csec = res["meta"]["seconds"], res["meta"]["cpu_seconds"]

    import pandas as pd

    f = a.ref_fraction
    t = time.perf_counter()
    descr = ref_load(desc_dir)
    t_load = time.perf_counter() - t
    c = time.process_time()  # the CPU time of that reading: once more in this process, one file at a time
    ref_load_serial(desc_dir)
    c_load = time.process_time() - c
    ref_t, ref_c, errs = {}, {}, {}
    from hpatches_kit.evaluation import tasks as T
    from hpatches_kit.evaluation.descriptor_set import DescriptorSet
    from hpatches_kit.evaluation.retrieval import eval_retrieval
    from hpatches_kit.evaluation.verification import eval_verification

    tabs = {k: pd.read_csv(tasks_dir / T.verif_file(k, "full")).to_numpy() for k in T.VERIF_KINDS}
    npairs = max(10, int(len(tabs["pos"]) * f))
    sub = {k: v[:npairs] for k, v in tabs.items()}
    t, c = time.perf_counter(), time.process_time()
    rv = ref_verification(descr, sub)
    ref_t["verification"] = (time.perf_counter() - t) * len(tabs["pos"]) / npairs
    ref_c["verification"] = (time.process_time() - c) * len(tabs["pos"]) / npairs
    ds = DescriptorSet({s: {ty: getattr(descr[s], ty) for ty in TYPES} for s in descr})
    if npairs == len(tabs["pos"]):
        ov = {
            v: {
                n: (res["verification"]["table"][v][n]["auc"] / 100, res["verification"]["table"][v][n]["ap"] / 100)
                for n in ("intra", "inter")
            }
            for v in VARS
        }
    else:

        def cols(x):
            return dict(
                s1=x[:, 0].astype(object),
                t1=x[:, 1].astype(np.int64),
                idx1=x[:, 2].astype(np.int64),
                s2=x[:, 3].astype(object),
                t2=x[:, 4].astype(np.int64),
                idx2=x[:, 5].astype(np.int64),
            )

        r = eval_verification(ds, T.VerificationPairs(**{k: cols(v) for k, v in sub.items()}), "L2", curves=False)
        ov = {
            v: {n: (r[v][n]["balanced"]["auc"], r[v][n]["imbalanced"]["ap"]) for n in ("intra", "inter")} for v in VARS
        }
    errs["verification"] = max(abs(ov[v][n][i] - rv[v][n][i]) for v in VARS for n in ("intra", "inter") for i in (0, 1))

    names = sorted(descr)
    nseq = max(1, int(round(len(names) * f)))
    t, c = time.perf_counter(), time.process_time()
    rm = ref_matching(descr, names[:nseq])
    ref_t["matching"] = (time.perf_counter() - t) * len(names) / nseq
    ref_c["matching"] = (time.process_time() - c) * len(names) / nseq
    errs["matching"] = max(
        abs(res["matching"]["per_sequence"][s][v] / 100 - np.mean([rm[s][v][k] for k in range(1, 6)]))
        for s in rm
        for v in VARS
    )

    q = pd.read_csv(tasks_dir / T.retr_file("queries", "full")).to_numpy()
    d = pd.read_csv(tasks_dir / T.retr_file("distractors", "full")).to_numpy()
    nq = max(5, int(len(q) * f))
    t, c = time.perf_counter(), time.process_time()
    rr = ref_retrieval(descr, q[:nq], d)
    ref_t["retrieval"] = (time.perf_counter() - t) * len(q) / nq
    ref_c["retrieval"] = (time.process_time() - c) * len(q) / nq
    if nq == len(q):
        errs["retrieval"] = max(
            abs(res["retrieval"]["table"][v][str(p)] / 100 - rr[v][:, j].mean())
            for v in VARS
            for j, p in enumerate(POOLS)
        )
    else:
        task = T.RetrievalTask(
            queries={"s": q[:nq, 0].astype(object), "idx": q[:nq, 1].astype(np.int64)},
            distractors={"s": d[:, 0].astype(object), "idx": d[:, 1].astype(np.int64)},
        )
        o = eval_retrieval(ds, task, "L2")
        errs["retrieval"] = max(float(np.abs(o["ap"][v] - rr[v]).max()) for v in VARS)
    t_ref = t_load + sum(ref_t.values())
    c_ref = c_load + sum(ref_c.values())

    print(
        f"set: {a.seqs} sequences x {a.tracks} tracks, D = {a.dim}, {a.pairs:,} pairs/kind, "
        f"{res['retrieval']['num_queries']:,} queries x {res['retrieval']['num_distractors']:,} distractors; "
        f"CSVs {sum(p.stat().st_size for p in desc_dir.rglob('*.csv')) / 2**30:.2f} GiB"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared: timings are noisy); "
        f"reference task loops timed on {100 * f:g}% and extrapolated"
    )
    print(f"ours: {cmd}")
    print("| part | official-style: wall s (CPU s) | ours: wall s (CPU s) | ratio wall (CPU) | max abs diff |")
    print("|---|---|---|---|---|")
    rows = [("reading descriptors", t_load, c_load, sec["descriptors"], csec["descriptors"], "-")]
    rows += [
        (k, ref_t[k], ref_c[k], sec[k], csec[k], f"{errs[k]:.1e}") for k in ("verification", "matching", "retrieval")
    ]
    rows += [("**whole command** (start to JSON)", t_ref, c_ref, t_ours, c_ours, "")]
    for name, tw, tc, ow, oc, e in rows:
        print(f"| {name} | {tw:.1f} ({tc:.1f}) | {ow:.2f} ({oc:.2f}) | **{tw / ow:.1f}x** ({tc / oc:.1f}x) | {e} |")
    rest = t_ours - sum(sec.values())
    print(f"| (ours: start-up, task files, summary, JSON: the whole command less the parts) | | {rest:.2f} | | |")
    if rss:
        print(
            f"our command's peak RSS: {rss / 2**30:.2f} GiB (descriptor block {16 * res['meta']['tracks'] * a.dim * 4 / 2**30:.2f} GiB)"
        )


if __name__ == "__main__":
    main()
