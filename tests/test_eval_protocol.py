"""The vectorised protocol against a deliberately naive reference: Python loops over pairs, sequences and
queries written like the official hpatches-benchmark code (scipy distances, mergesort, trapezoid), on
random descriptors with many exact ties. Also hand-worked AP/AUC examples and a scikit-learn cross-check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import distance as spd
from scipy.spatial.distance import cdist

from hpatches_kit.data import TYPES, DataError
from hpatches_kit.evaluation import metrics
from hpatches_kit.evaluation.descriptor_set import DescriptorSet
from hpatches_kit.evaluation.matching import eval_matching
from hpatches_kit.evaluation.retrieval import eval_retrieval
from hpatches_kit.evaluation.tasks import RetrievalTask, generate_retrieval, generate_verification
from hpatches_kit.evaluation.verification import eval_verification

VARS = ("e", "h", "t")


# ---------------------------------------------------------------------------------------------------
# naive reference (independent of hpatches_kit.evaluation)
# ---------------------------------------------------------------------------------------------------
def ref_tpfp(scores, labels, numpos=None):
    scores = np.asarray(scores, float).copy()
    labels = np.asarray(labels, int).copy()
    p = int(labels.sum())
    n = len(labels) - p
    if numpos is not None:
        extra = numpos - p
        p = numpos
        scores = np.hstack((scores, np.repeat(-np.inf, extra)))
        labels = np.hstack((labels, np.repeat(1, extra)))
    perm = np.argsort(-scores, kind="mergesort")
    stop = np.max(np.where(scores[perm] > -np.inf))
    perm = perm[: stop + 1]
    lab = labels[perm]
    tp = np.hstack((0, np.cumsum(lab == 1)))
    fp = np.hstack((0, np.cumsum(lab == 0)))
    return tp, fp, p, n


def ref_pr(scores, labels, numpos=None):
    tp, fp, p, n = ref_tpfp(scores, labels, numpos)
    rec = tp / max(p, 1e-10)
    prec = np.maximum(tp, 1e-10) / np.maximum(tp + fp, 1e-10)
    return np.trapezoid(prec, rec)


def ref_roc(scores, labels):
    tp, fp, p, n = ref_tpfp(scores, labels)
    return np.trapezoid(tp / max(p, 1e-10), fp / max(n, 1e-10))


def ref_dist(a, b, distance):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return spd.euclidean(a, b) if distance == "L2" else spd.cityblock(a, b)


def tname(variant, t):
    return "ref" if t == 0 else f"{variant}{t}"


def ref_verification(descs, pairs, distance):
    d = {}
    for kind in ("pos", "neg_intra", "neg_inter"):
        tab = pairs.table(kind)
        d[kind] = {v: np.empty(len(tab["s1"])) for v in VARS}
        for i in range(len(tab["s1"])):
            for v in VARS:
                d1 = descs[tab["s1"][i]][tname(v, tab["t1"][i])][tab["idx1"][i]]
                d2 = descs[tab["s2"][i]][tname(v, tab["t2"][i])][tab["idx2"][i]]
                d[kind][v][i] = ref_dist(d1, d2, distance)
    res = {}
    for v in VARS:
        npos = len(d["pos"][v])
        lab = np.hstack((np.zeros(len(d["neg_intra"][v])), np.ones(npos)))
        res[v] = {}
        for neg in ("intra", "inter"):
            dd = np.hstack((d[f"neg_{neg}"][v], d["pos"][v]))
            nimb = npos + int(npos * 0.2)
            res[v][neg] = (ref_roc(-dd, lab), ref_pr(-dd[:nimb], lab[:nimb]))
    return res


def ref_matching(descs, seqs, distance):
    res = {}
    metric = "euclidean" if distance == "L2" else "cityblock"
    for s in seqs:
        dref = descs[s]["ref"].astype(np.float64)
        gt = np.arange(dref.shape[0])
        res[s] = {}
        for v in VARS:
            res[s][v] = {}
            for k in range(1, 6):
                D = cdist(dref, descs[s][f"{v}{k}"].astype(np.float64), metric)
                idx = np.argmin(D, axis=1)
                ml = idx == gt
                md = D[gt, idx]
                res[s][v][k] = (ref_pr(-md, ml, numpos=len(ml)), np.count_nonzero(ml) / len(ml))
    return res


def ref_retrieval(descs, task, distance, pool_sizes):
    metric = "euclidean" if distance == "L2" else "cityblock"
    q, dd = task.queries, task.distractors
    dq = np.array([descs[s]["ref"][i] for s, i in zip(q["s"], q["idx"])], np.float64)
    ddist = np.array([descs[s]["ref"][i] for s, i in zip(dd["s"], dd["idx"])], np.float64)
    D = cdist(dq, ddist, metric)
    out = {v: np.zeros((len(dq), len(pool_sizes))) for v in VARS}
    for i in range(len(dq)):
        for v in VARS:
            dint = np.array(
                [
                    cdist(dq[i : i + 1], descs[q["s"][i]][f"{v}{k}"][q["idx"][i]][None].astype(np.float64), metric)[
                        0, 0
                    ]
                    for k in range(1, 6)
                ]
            )
            row = D[i][np.asarray(dd["s"]) != q["s"][i]]
            full = np.hstack((dint, row))
            gt = np.hstack((np.ones(5), np.zeros(row.size)))
            for j, k in enumerate(pool_sizes):
                out[v][i, j] = ref_pr(-full[:k], gt[:k])
    return out


# ---------------------------------------------------------------------------------------------------
def random_descs(rng, lengths, dim, kind):
    """kind='int': small integers (many exact distance ties); 'dup': continuous with duplicated vectors;
    'cont': continuous, positives correlated with their ref."""
    out = {}
    for s, n in lengths.items():
        if kind == "int":
            base = rng.integers(0, 3, size=(n, dim)).astype(np.float32)
            out[s] = {
                t: np.where(rng.random((n, dim)) < 0.3, rng.integers(0, 3, size=(n, dim)), base).astype(np.float32)
                for t in TYPES
            }
        else:
            base = rng.normal(size=(n, dim)).astype(np.float32)
            out[s] = {t: (base + rng.normal(scale=0.8, size=(n, dim))).astype(np.float32) for t in TYPES}
            if kind == "dup":
                for t in TYPES:
                    out[s][t][1::3] = out[s][t][0:1]  # exact duplicates -> tied distances
                    out[s][t][2::5] = base[2::5]
    return out


LENGTHS = {"i_a": 23, "i_b": 17, "v_c": 20, "v_d": 14}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kind", ["int", "dup", "cont"])
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_verification_matches_reference(kind, distance, backend, monkeypatch):
    monkeypatch.setenv("HPATCHES_KIT_EVAL_BACKEND", backend)
    rng = np.random.default_rng(1)
    descs = random_descs(rng, LENGTHS, 6 if kind == "int" else 16, kind)
    pairs = generate_verification(LENGTHS, list(LENGTHS), n_pairs=300)
    ours = eval_verification(DescriptorSet(descs), pairs, distance, curves=False)
    ref = ref_verification(descs, pairs, distance)
    for v in VARS:
        for neg in ("intra", "inter"):
            assert abs(ours[v][neg]["balanced"]["auc"] - ref[v][neg][0]) <= 1e-9
            assert abs(ours[v][neg]["imbalanced"]["ap"] - ref[v][neg][1]) <= 1e-9


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kind", ["int", "dup", "cont"])
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_matching_matches_reference(kind, distance, backend, monkeypatch):
    monkeypatch.setenv("HPATCHES_KIT_EVAL_BACKEND", backend)
    rng = np.random.default_rng(2)
    descs = random_descs(rng, LENGTHS, 5 if kind == "int" else 16, kind)
    ours = eval_matching(DescriptorSet(descs), list(LENGTHS), distance)
    ref = ref_matching(descs, list(LENGTHS), distance)
    for s in LENGTHS:
        for v in VARS:
            for k in range(1, 6):
                assert abs(ours[s][v][k]["ap"] - ref[s][v][k][0]) <= 1e-9, (s, v, k)
                assert ours[s][v][k]["sr"] == ref[s][v][k][1]


def _retrieval_task(rng, lengths, nq, nd):
    allp = [(s, i) for s, n in lengths.items() for i in range(n)]
    perm = rng.permutation(len(allp))
    q = [allp[i] for i in perm[:nq]]
    d = [allp[i] for i in perm[nq : nq + nd]]
    return RetrievalTask(
        queries={"s": np.array([a for a, _ in q], object), "idx": np.array([b for _, b in q])},
        distractors={"s": np.array([a for a, _ in d], object), "idx": np.array([b for _, b in d])},
    )


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dense", [0.0, 1.0], ids=["dense", "sparse"])
@pytest.mark.parametrize("kind", ["int", "dup", "cont"])
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_retrieval_matches_reference(kind, distance, dense, backend, monkeypatch):
    monkeypatch.setenv("HPATCHES_KIT_EVAL_BACKEND", backend)
    rng = np.random.default_rng(3)
    descs = random_descs(rng, LENGTHS, 4 if kind == "int" else 16, kind)
    task = _retrieval_task(rng, LENGTHS, 25, 45)
    pools = (6, 10, 17, 30, 40, 100)  # includes pools beyond the distractors left after masking
    ours = eval_retrieval(DescriptorSet(descs), task, distance, pool_sizes=pools, chunk=7, dense_fraction=dense)
    ref = ref_retrieval(descs, task, distance, pools)
    for v in VARS:
        np.testing.assert_allclose(ours["ap"][v], ref[v], rtol=0, atol=1e-9)


def test_retrieval_positive_tied_with_distractor_ranks_first():
    # every descriptor is the same vector: all distances 0; stable order puts the 5 positives first -> AP 1
    lengths = {"i_a": 6, "v_b": 6}
    descs = {s: {t: np.ones((n, 4), np.float32) for t in TYPES} for s, n in lengths.items()}
    task = _retrieval_task(np.random.default_rng(0), lengths, 3, 8)
    ours = eval_retrieval(DescriptorSet(descs), task, "L2", pool_sizes=(8, 13))
    for v in VARS:
        np.testing.assert_array_equal(ours["ap"][v], 1.0)


# -- hand-worked metrics -----------------------------------------------------------------------------
def test_hand_worked_ap_auc():
    # ranking pos, neg, pos: curve (r, p) = (0,1) (1/2,1) (1/2,1/2) (1,2/3) -> AP = 1/2 + 1/2*(1/2+2/3)/2
    d = np.array([0.1, 0.2, 0.3])
    lab = np.array([1, 0, 1])
    assert metrics.pr(-d, lab)[2] == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2, abs=1e-12)
    # numpos=3 pads a never-retrieved positive: recall steps of 1/3 -> 1/3 + 1/3*(1/2+2/3)/2
    assert metrics.pr(-d, lab, numpos=3)[2] == pytest.approx(1 / 3 + (1 / 3) * (0.5 + 2 / 3) / 2, abs=1e-12)
    # ROC of pos, neg, pos, neg: (fpr, tpr) = (0,0) (0,.5) (.5,.5) (.5,1) (1,1) -> .25 + .5 = .75
    d4 = np.array([1.0, 2.0, 3.0, 4.0])
    lab4 = np.array([1, 0, 1, 0])
    assert metrics.roc(-d4, lab4)[2] == pytest.approx(0.75, abs=1e-12)
    # a tie between a negative listed first and a positive: the negative ranks first (stable sort);
    # curve (0,1) (0,1e-10) (1,1/2) -> AP = (1e-10 + 1/2) / 2 (listed the other way round it would be 1)
    assert metrics.pr(-np.array([1.0, 1.0]), np.array([0, 1]))[2] == pytest.approx((1e-10 + 0.5) / 2, abs=1e-12)
    assert metrics.pr(-np.array([1.0, 1.0]), np.array([1, 0]))[2] == pytest.approx(1.0, abs=1e-12)
    # ap_from_ranks closed form equals pr on the same ranking
    assert metrics.ap_from_ranks(np.array([1.0, 3.0]), 2) == pytest.approx(metrics.pr(-d, lab)[2], abs=1e-15)


def test_roc_auc_agrees_with_sklearn_without_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    d = rng.normal(size=500) + np.repeat([0.0, 1.0], 250)
    lab = np.repeat([1, 0], 250)
    assert metrics.roc(-d, lab)[2] == pytest.approx(roc_auc_score(lab, -d), abs=1e-12)


def test_metrics_match_naive_on_random_ties():
    rng = np.random.default_rng(6)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        d = rng.integers(0, 4, size=n).astype(float)
        lab = rng.integers(0, 2, size=n)
        if lab.sum() == 0:
            lab[0] = 1
        assert abs(metrics.pr(-d, lab)[2] - ref_pr(-d, lab)) <= 1e-12
        assert abs(metrics.pr(-d, lab, numpos=n + 3)[2] - ref_pr(-d, lab, numpos=n + 3)) <= 1e-12
        assert abs(metrics.roc(-d, lab)[2] - ref_roc(-d, lab)) <= 1e-12


# -- bad input -----------------------------------------------------------------------------------------
def _good(n=5, d=4):
    return {t: np.zeros((n, d), np.float32) for t in TYPES}


def test_descriptor_validation_errors():
    with pytest.raises(DataError, match=r"i_x/e3.*NaN"):
        bad = _good()
        bad["e3"][2, 1] = np.nan
        DescriptorSet({"i_x": bad})
    with pytest.raises(DataError, match=r"i_x/h1.*4 descriptors but ref has 5"):
        bad = _good()
        bad["h1"] = np.zeros((4, 4), np.float32)
        DescriptorSet({"i_x": bad})
    with pytest.raises(DataError, match=r"v_y/ref.*dimension 3"):
        DescriptorSet({"i_x": _good(), "v_y": _good(d=3)})
    with pytest.raises(DataError, match=r"i_x.*missing for types: t5"):
        bad = _good()
        del bad["t5"]
        DescriptorSet({"i_x": bad})


def test_task_errors_name_file_and_sequence():
    descs = {"i_a": _good(6), "v_b": _good(4)}
    ds = DescriptorSet(descs)
    task = RetrievalTask(
        queries={"s": np.array(["i_a"], object), "idx": np.array([2])},
        distractors={"s": np.array(["v_b", "v_zz"], object), "idx": np.array([0, 1])},
    )
    with pytest.raises(DataError, match=r"retr_distractors.*unknown sequence 'v_zz'"):
        eval_retrieval(ds, task)
    task.distractors = {"s": np.array(["v_b"], object), "idx": np.array([4])}
    with pytest.raises(DataError, match=r"retr_distractors.*index 4 out of range for v_b \(4 patches\)"):
        eval_retrieval(ds, task)


def test_generated_tasks_are_consistent():
    lengths = {"i_a": 30, "v_b": 25, "i_c": 12}
    pairs = generate_verification(lengths, list(lengths), 500)
    p, ni, ne = pairs.pos, pairs.neg_intra, pairs.neg_inter
    assert np.all(p["s1"] == p["s2"]) and np.all(p["idx1"] == p["idx2"]) and np.all(p["t1"] != p["t2"])
    assert np.all(ni["idx1"] != ni["idx2"]) and np.all(ni["s1"] == ni["s2"])
    assert set(np.unique(np.concatenate([p["t1"], p["t2"]]))) <= set(range(5))
    for t in (p, ni, ne):
        for a, b in (("s1", "idx1"), ("s2", "idx2")):
            assert all(0 <= i < lengths[s] for s, i in zip(t[a], t[b]))
    rng = np.random.default_rng(0)
    refs = {s: rng.integers(0, 255, size=(n, 8, 8)).astype(np.uint8) for s, n in lengths.items()}
    refs["i_c"][:6] = 7  # flat patches (std 0) must never be sampled
    task = generate_retrieval(refs, list(lengths), 10, 40)
    qset = set(zip(task.queries["s"], task.queries["idx"]))
    dset = list(zip(task.distractors["s"], task.distractors["idx"]))
    assert len(qset) == len(task.queries["s"]) == 10 and len(set(dset)) == len(dset) and not (qset & set(dset))
    assert all(not (s == "i_c" and i < 6) for s, i in list(qset) + dset)


# -- batched matching --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("kind", ["int", "cont"])
@pytest.mark.parametrize("distance", ["L2", "L1"])
def test_batched_matching_equals_per_target_and_loop(kind, distance, backend, monkeypatch):
    """All 15 targets in one pass (chunked rows) give the NN, distances and AP of one target at a time
    (bit for bit) and of the official-style loop (scipy cdist, argmin, pr)."""
    from hpatches_kit.evaluation.matching import matching_ap, nearest_neighbours, nearest_neighbours_multi

    rng = np.random.default_rng(7)
    descs = random_descs(rng, {"i_a": 40}, 5 if kind == "int" else 16, kind)
    st = DescriptorSet(descs).stacks["i_a"]
    for max_entries in (1 << 23, 700):  # one chunk, many chunks
        monkeypatch.setenv("HPATCHES_KIT_EVAL_BACKEND", backend)
        nn, md = nearest_neighbours_multi(st[0], st[1:], distance, max_entries=max_entries)
        ok = nn == np.arange(40)
        ap = matching_ap(md, ok)
        for j in range(15):
            nn1, md1 = nearest_neighbours(st[0], st[1 + j], distance)
            np.testing.assert_array_equal(nn[j], nn1)
            np.testing.assert_array_equal(md[j], md1)
            assert ap[j] == metrics.pr(-md1, nn1 == np.arange(40), numpos=40)[2]
    ref = ref_matching(descs, ["i_a"], distance)
    for vi, v in enumerate(VARS):
        for k in range(1, 6):
            assert abs(ap[5 * vi + k - 1] - ref["i_a"][v][k][0]) <= 1e-9


def test_matching_ap_equals_pr_on_ties():
    from hpatches_kit.evaluation.matching import matching_ap

    rng = np.random.default_rng(8)
    for n in (1, 2, 7, 300):
        md = rng.integers(0, 4, size=(6, n)).astype(np.float64)
        ok = rng.random((6, n)) < 0.5
        got = matching_ap(md, ok)
        for r in range(6):
            assert got[r] == metrics.pr(-md[r], ok[r], numpos=n)[2]
            assert abs(got[r] - ref_pr(-md[r], ok[r], numpos=n)) <= 1e-12
