"""Verification ROC / PR curves (results JSON and plot) against the official fpr/tpr and precision/recall
arrays, written out here as the official ``utils/metrics.py`` computes them (scores = -distance, stable
mergesort of [negatives; positives], cumulative tp/fp with a leading 0)."""

from __future__ import annotations

import numpy as np
import pytest

from hpatches_kit.data import TYPES
from hpatches_kit.evaluation.api import summarise_verification
from hpatches_kit.evaluation.descriptor_set import DescriptorSet
from hpatches_kit.evaluation.tasks import generate_verification
from hpatches_kit.evaluation.verification import eval_verification, verification_distances


def official_curve(d_neg, d_pos):
    """Official ``tpfp`` on ``[negatives; positives]``: rates after each ranked item, from (0, 0)."""
    d = np.concatenate([d_neg, d_pos])
    lab = np.r_[np.zeros(len(d_neg), int), np.ones(len(d_pos), int)]
    perm = np.argsort(d, kind="mergesort")  # = argsort(-score) stable
    tp = np.r_[0, np.cumsum(lab[perm] == 1)]
    fp = np.r_[0, np.cumsum(lab[perm] == 0)]
    fpr, tpr = fp / max(len(d_neg), 1e-10), tp / max(len(d_pos), 1e-10)
    prec = np.maximum(tp, 1e-10) / np.maximum(tp + fp, 1e-10)
    return fpr, tpr, tpr.copy(), prec, d[perm]


def _case():
    rng = np.random.default_rng(9)
    lengths = {"i_a": 30, "v_b": 25, "i_c": 18}
    descs = {s: {t: rng.normal(size=(n, 8)).astype(np.float32) for t in TYPES} for s, n in lengths.items()}
    for s in descs:  # views closer to their reference for e than h than t, so the curves differ
        for j, t in enumerate(TYPES[1:]):
            descs[s][t] = (descs[s]["ref"] + (0.3 + 0.15 * j) * descs[s][t]).astype(np.float32)
        descs[s]["e2"][:3] = descs[s]["ref"][:3]  # exact zero distances: ties at the first threshold
    pairs = generate_verification(lengths, list(lengths), n_pairs=400)
    return DescriptorSet(descs), pairs


def test_sampled_curves_lie_on_the_official_curves():
    ds, pairs = _case()
    raw = eval_verification(ds, pairs, "L2", curves=True)
    d = verification_distances(ds, pairs, "L2")
    npos = len(d["pos"]["e"])
    n_imb = npos + int(0.2 * npos)
    checked = 0
    for v in "eht":
        for neg in ("intra", "inter"):
            dn, dp = d[f"neg_{neg}"][v], d["pos"][v]
            fpr, tpr, _, _, _ = official_curve(dn, dp)
            # imbalanced: the first n_imb rows of [negatives; positives]
            n_neg = min(n_imb, len(dn))
            _, _, rc, pr, _ = official_curve(dn[:n_neg], dp[: n_imb - n_neg])
            e = raw[v][neg]
            got = {
                k: np.asarray(e["balanced" if k in ("fpr", "tpr") else "imbalanced"][k])
                for k in ("fpr", "tpr", "rc", "pr")
            }
            assert len(got["fpr"]) == len(got["tpr"]) == len(got["rc"]) == len(got["pr"]) > 50
            # both curves start at the official first point and end at the official last point
            assert (got["fpr"][0], got["tpr"][0]) == (0.0, 0.0) and (got["fpr"][-1], got["tpr"][-1]) == (1.0, 1.0)
            assert (got["rc"][0], got["pr"][0]) == (0.0, 1.0)
            assert got["rc"][-1] == pytest.approx(rc[-1]) and got["pr"][-1] == pytest.approx(pr[-1])
            # every sampled point is a point of the official curve (same fpr and tpr at one rank)
            official = set(zip(fpr.round(12), tpr.round(12)))
            assert all((a, b) in official for a, b in zip(got["fpr"].round(12), got["tpr"].round(12))), (v, neg)
            official_pr = set(zip(rc.round(12), pr.round(12)))
            assert all((a, b) in official_pr for a, b in zip(got["rc"].round(12)[1:], got["pr"].round(12)[1:])), (
                v,
                neg,
            )
            assert np.all(np.diff(got["fpr"]) >= 0) and np.all(np.diff(got["tpr"]) >= 0)
            # and the sampled ROC integrates to the official AUC within the sampling error
            assert np.trapezoid(got["tpr"], got["fpr"]) == pytest.approx(e["balanced"]["auc"], abs=0.02)
            assert e["balanced"]["auc"] == pytest.approx(np.trapezoid(tpr, fpr), abs=1e-12)
            checked += 1
    assert checked == 6
    # the variants really differ (so a curve taken from the wrong variant shows)
    assert raw["e"]["intra"]["balanced"]["tpr"] != raw["t"]["intra"]["balanced"]["tpr"]


def test_results_json_and_plot_carry_those_curves(tmp_path, monkeypatch):
    import matplotlib.axes

    from hpatches_kit.plots.eval import plot_verification_curves

    ds, pairs = _case()
    raw = eval_verification(ds, pairs, "L2", curves=True)
    res = {"verification": summarise_verification(raw, {"pos": 400})}
    for v in "eht":
        for neg in ("intra", "inter"):
            c = res["verification"]["curves"][v][neg]
            assert c["fpr"] == raw[v][neg]["balanced"]["fpr"] and c["tpr"] == raw[v][neg]["balanced"]["tpr"]
            assert c["recall"] == raw[v][neg]["imbalanced"]["rc"] and c["precision"] == raw[v][neg]["imbalanced"]["pr"]
    drawn = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, *args, **kw):
        drawn.append((self.get_title() or "", list(args[0]), list(args[1]), kw.get("label")))
        return real_plot(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    plot_verification_curves(res, tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 1000
    assert len(drawn) == 12
    names = {"e": "Easy", "h": "Hard", "t": "Tough"}
    for v in "eht":
        for neg in ("intra", "inter"):
            c = res["verification"]["curves"][v][neg]
            lines = [(x, y) for _, x, y, lab in drawn if lab == f"{names[v]} {neg}"]
            assert lines == [(c["fpr"], c["tpr"]), (c["recall"], c["precision"])], (v, neg)
