"""Descriptor-space diagnostics (evaluation/diagnostics.py) against NumPy loops and hand-worked examples, and the
plots drawn from them (written, non-trivial, PNG + PDF)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpatches_kit.data.hpatches import TYPES, HPatchesDataset
from hpatches_kit.data.sequences import Sequence
from hpatches_kit.evaluation import diagnostics as dg


def _descs(rng, seqs=("i_a", "v_b", "v_c"), n=12, d=8, noise=0.3):
    """Track-structured descriptors: one centre per track, each type a noisy copy (noise grows e < h < t)."""
    out = {}
    for s in seqs:
        centre = rng.normal(size=(n, d))
        out[s] = {}
        for t in TYPES:
            scale = {"r": 0.0, "e": noise, "h": 2 * noise, "t": 3 * noise}[t[0]]
            out[s][t] = (centre + scale * rng.normal(size=(n, d))).astype(np.float32)
    return out


def test_pca_energy_hand_example_and_numpy_reference():
    # points at +-c_k e_k: a diagonal covariance with variances proportional to c_k^2 = 4, 3, 2, 1
    c2 = np.array([4.0, 3.0, 2.0, 1.0])
    x = np.concatenate([np.diag(np.sqrt(c2)), -np.diag(np.sqrt(c2))])
    e = dg.pca_energy(x)
    np.testing.assert_allclose(e["energy"], [0.4, 0.7, 0.9, 1.0], atol=1e-12)
    assert (e["dims_90"], e["dims_99"], e["dim"]) == (3, 4, 4)
    # against the eigenvalues of NumPy's covariance
    x = np.random.default_rng(1).normal(size=(300, 16)) @ np.random.default_rng(2).normal(size=(16, 16))
    ref = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    e = dg.pca_energy(x)
    np.testing.assert_allclose(e["eigenvalues"], ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(e["energy"], np.cumsum(ref) / ref.sum(), rtol=1e-9)
    assert e["dims_90"] == int(np.argmax(np.cumsum(ref) / ref.sum() >= 0.9)) + 1
    # fewer rows than dimensions, and constant descriptors (collapse)
    assert len(dg.pca_energy(x[:5])["energy"]) == 5
    flat = dg.pca_energy(np.ones((50, 8)))
    assert flat["dims_90"] == flat["dims_99"] == 0 and not flat["energy"].any()


def test_matching_failures_against_a_loop():
    rng = np.random.default_rng(0)
    descs = _descs(rng, noise=0.9)
    got = dg.matching_failures(descs, worst=1000)
    for v in "eht":
        ref = []
        for s in descs:
            for t in [f"{v}{k}" for k in range(1, 6)]:
                a, b = descs[s]["ref"].astype(np.float64), descs[s][t].astype(np.float64)
                for i in range(len(a)):
                    d = [np.linalg.norm(a[i] - b[j]) for j in range(len(b))]
                    rank = sum(dj < d[i] for dj in d)
                    if rank:
                        ref.append((s, t, i, int(np.argmin(d)), rank, d[i], min(d)))
        # one entry per query: the target image where it ranks worst (then largest margin)
        best = {}
        for r in sorted(ref, key=lambda r: (-r[4], -(r[5] - r[6]), r[0], r[1], r[2])):
            best.setdefault((r[0], r[2]), r)
        exp = sorted(best.values(), key=lambda r: (-r[4], -(r[5] - r[6]), r[0], r[1], r[2]))
        assert len(got[v]) == len(exp) > 0
        for f, r in zip(got[v], exp):
            assert (f["sequence"], f["type"], f["query"], f["top"], f["rank"]) == r[:5]
            assert f["d_true"] == pytest.approx(r[5], rel=1e-5) and f["d_top"] == pytest.approx(r[6], rel=1e-5)
    # ranks grow with the variant's noise
    assert np.mean([f["rank"] for f in got["t"]]) > np.mean([f["rank"] for f in got["e"]])
    # L1 is honoured
    got1 = dg.matching_failures(descs, distance="L1", worst=3)["t"][0]
    a, b = descs[got1["sequence"]]["ref"][got1["query"]], descs[got1["sequence"]][got1["type"]]
    assert got1["d_true"] == pytest.approx(np.abs(a - b[got1["query"]]).sum(), rel=1e-5)


def test_distance_samples_are_the_pairs_they_claim():
    rng = np.random.default_rng(3)
    descs = _descs(rng)
    smp = dg.distance_samples(descs, max_pairs=10**6)
    for v in "eht":
        pos = np.sort(
            np.concatenate(
                [
                    np.linalg.norm(descs[s]["ref"].astype(np.float64) - descs[s][t], axis=1)
                    for s in descs
                    for t in [f"{v}{k}" for k in range(1, 6)]
                ]
            )
        )
        np.testing.assert_allclose(np.sort(smp[v]["pos"]), pos, rtol=1e-6)
        # every intra negative is a distance from a ref patch to ANOTHER patch of the same target image
        intra = {
            round(float(np.linalg.norm(descs[s]["ref"][i].astype(np.float64) - descs[s][t][j])), 5)
            for s in descs
            for t in [f"{v}{k}" for k in range(1, 6)]
            for i in range(12)
            for j in range(12)
            if i != j
        }
        assert len(smp[v]["neg_intra"]) == len(pos)
        assert all(round(float(x), 5) in intra for x in smp[v]["neg_intra"])
        # inter negatives pair sequences that differ
        inter = {
            round(float(np.linalg.norm(descs[s]["ref"][i].astype(np.float64) - descs[o][t][j])), 5)
            for s in descs
            for o in descs
            if o != s
            for t in [f"{v}{k}" for k in range(1, 6)]
            for i in range(12)
            for j in range(12)
        }
        assert all(round(float(x), 5) in inter for x in smp[v]["neg_inter"])
        assert smp[v]["pos"].mean() < smp[v]["neg_intra"].mean()
    assert smp["e"]["pos"].mean() < smp["h"]["pos"].mean() < smp["t"]["pos"].mean()
    # the subset options
    small = dg.distance_samples(descs, max_pairs=50, max_tracks=12)
    assert len(small["e"]["pos"]) == 50 and len(dg.distance_samples(descs, max_tracks=12)["e"]["pos"]) == 3 * 4 * 5


def test_verification_failures_threshold_and_order():
    rng = np.random.default_rng(4)
    descs = _descs(rng, noise=0.8)
    f = dg.verification_failures(descs, worst=5, recall=0.9)
    pos = np.concatenate(
        [np.linalg.norm(descs[s]["ref"].astype(np.float64) - descs[s][t], axis=1) for s in descs for t in TYPES[1:]]
    )
    assert f["threshold"] == pytest.approx(np.quantile(pos, 0.9), rel=1e-6)
    fn = [p["distance"] for p in f["false_negatives"]]
    np.testing.assert_allclose(fn, np.sort(pos)[::-1][:5], rtol=1e-6)  # the farthest positives
    for p in f["false_negatives"]:
        assert p["positive"] and p["idx1"] == p["idx2"]
        d = np.linalg.norm(
            descs[p["sequence"]]["ref"][p["idx1"]].astype(np.float64) - descs[p["sequence"]][p["type"]][p["idx2"]]
        )
        assert p["distance"] == pytest.approx(d, rel=1e-6)
    fp = [p["distance"] for p in f["false_positives"]]
    assert fp == sorted(fp) and all(d <= f["threshold"] for d in fp)
    for p in f["false_positives"]:
        assert not p["positive"] and p["idx1"] != p["idx2"]


def test_tsne_map_keeps_tracks_together():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(5)
    descs = _descs(rng, n=10, d=16, noise=0.05)
    m = dg.tsne_map(descs, tracks=8, seed=0)
    assert m["xy"].shape == (8 * 16, 2) and sorted(set(m["track"])) == list(range(8))
    assert set(m["variant"]) == {"ref", "e", "h", "t"} and (m["variant"] == "ref").sum() == 8
    # nearly noise-free tracks: each point's nearest neighbour in the map belongs to its own track
    xy = m["xy"]
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (m["track"][d.argmin(1)] == m["track"]).mean() > 0.95


def _dataset(descs, rng, p=16):
    seqs = [
        Sequence(name=s, tracks=rng.integers(0, 256, size=(len(descs[s]["ref"]), 16, p, p), dtype=np.uint8))
        for s in descs
    ]
    return HPatchesDataset(seqs)


def test_plot_diagnostics_writes_every_figure(tmp_path):
    pytest.importorskip("sklearn")
    from hpatches_kit.plots.diagnostics import plot_diagnostics

    rng = np.random.default_rng(6)
    descs = _descs(rng, noise=0.9)
    written = plot_diagnostics(descs, tmp_path, dataset=_dataset(descs, rng), tsne_tracks=10)
    names = {p.name for p in written}
    for stem in ("tsne", "pca_energy", "distance_histograms", "failures_matching", "failures_verification"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        png, pdf = (tmp_path / f"{stem}.png").read_bytes(), (tmp_path / f"{stem}.pdf").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000 and pdf[:5] == b"%PDF-"
    # without the patches: no gallery, the rest still drawn
    out = tmp_path / "nodata"
    written = {p.name for p in plot_diagnostics(descs, out, dataset=None, tsne_tracks=10)}
    assert "failures_matching.png" not in written and "tsne.png" in written


def test_evaluate_carries_a_diagnostics_block_and_compare_uses_it(tmp_path):
    from hpatches_kit.cli.eval import main
    from hpatches_kit.evaluation import evaluate
    from hpatches_kit.evaluation.compare import diagnostics_rows, format_csv, format_markdown, load_results

    rng = np.random.default_rng(7)
    descs = _descs(rng, seqs=("i_a", "i_b", "v_c", "v_d"), n=30, d=8)
    ds = _dataset(descs, rng, p=32)
    res = evaluate(descs, ds, progress=False, cache_dir=tmp_path / "tasks")
    d = res["meta"]["diagnostics"]
    rows = np.concatenate([descs[s][t] for s in descs for t in TYPES])
    assert d["pca_dims_90"] == dg.pca_energy(rows)["dims_90"] and d["dim"] == 8 and len(d["pca_energy"]) == 8
    assert d["distances"]["e"]["pos_mean"] < d["distances"]["e"]["neg_intra_mean"]
    assert (
        "diagnostics"
        not in evaluate(descs, ds, progress=False, cache_dir=tmp_path / "tasks", diagnostics=False)["meta"]
    )
    # compare: a second table, CSV columns and the PCA figure
    other = {s: {t: rng.normal(size=a.shape).astype(np.float32) for t, a in v.items()} for s, v in descs.items()}
    res2 = evaluate(other, ds, progress=False, cache_dir=tmp_path / "tasks")
    files = []
    for name, r in (("good", res), ("noise", res2)):
        r["meta"]["descriptor"] = name
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(r, default=lambda o: o.tolist()))
    entries = load_results(files)
    assert [r["name"] for r in diagnostics_rows(entries)] == ["good", "noise"]
    assert "PCA dims 90%" in format_markdown(entries) and "pca_dims_99" in format_csv(entries).splitlines()[0]
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, files), "--out", str(out)]) == 0
    assert (out / "comparison_pca_energy.png").stat().st_size > 10_000 and (out / "comparison.pdf").is_file()


def test_cli_plots_with_descriptors_only_skip_the_galleries_and_say_so(tmp_path, caplog, capsys):
    import logging

    import cv2

    from hpatches_kit.cli.eval import main
    from hpatches_kit.evaluation import write_descriptor_dir

    rng = np.random.default_rng(8)
    root = tmp_path / "data"
    descs = _descs(rng, seqs=("i_a", "i_b", "v_c", "v_d"), n=30, d=8)
    for s in descs:
        (root / s).mkdir(parents=True)
        for t in TYPES:
            cv2.imwrite(str(root / s / f"{t}.png"), rng.integers(0, 256, (30 * 65, 65), dtype=np.uint8))
    write_descriptor_dir(tmp_path / "descs" / "mine", descs)
    out = tmp_path / "plots"
    with caplog.at_level(logging.WARNING):
        assert (
            main(
                [
                    "--descriptors",
                    str(tmp_path / "descs" / "mine"),
                    "--data",
                    str(root),
                    "--plots",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
    names = {p.name for p in out.iterdir()}
    assert {"tsne.png", "pca_energy.pdf", "distance_histograms.png", "verification_curves.pdf"} <= names
    assert not any(n.startswith("failures_") for n in names)
    # the CLI's own stderr handler prints the warning (the toolkit's logger does not propagate under a CLI)
    said = [r.getMessage() for r in caplog.records] + capsys.readouterr().err.splitlines()
    assert any("failure galleries skipped" in m and "--descriptors" in m for m in said)


def test_pca_rows_are_drawn_without_copying_the_set():
    """The PCA rows of ``meta.diagnostics`` are the rows a concatenation of every sequence's ``(16 N, D)`` stack
    would give for the same seed (the reference below), gathered without that concatenation: the traced peak
    stays near the drawn rows' size, far under the set's (a copy of the set at full HPatches size is 1.2 GB)."""
    import tracemalloc

    from hpatches_kit.evaluation.descriptor_set import DescriptorSet
    from hpatches_kit.evaluation.diagnostics import _all_rows, _stack

    rng = np.random.default_rng(1)
    ds = DescriptorSet.empty({"a": 700, "b": 500, "c": 900}, 64)
    ds.flat[:] = rng.standard_normal(ds.flat.shape, dtype=np.float32)
    x = np.concatenate([_stack(ds, s).reshape(-1, 64) for s in ds.names])
    want = x[np.sort(np.random.default_rng(3).choice(len(x), 500, replace=False))]
    tracemalloc.start()
    got = _all_rows(ds, ds.names, 500, 3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(got, want)
    assert peak < ds.nbytes / 4, (peak, ds.nbytes)
    np.testing.assert_array_equal(_all_rows(ds, ds.names, len(x), 3), x)  # fewer rows than asked: all, in order
