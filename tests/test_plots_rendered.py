"""Rendered-figure checks (issue 39): in every saved figure no text (value labels, legends, captions, titles,
tick labels) covers a data artist (bars, markers, curves), markers stay inside the saved image, epochs tick as
integers, the MMA figure has no empty or repeated panel, and the comparison caption names the test set, the
split, the capped retrieval pools and a model trained on the test photos. The figures are captured when saved
(so laid out and drawn) and measured in display coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from hpatches_kit.plots import _figure


@pytest.fixture
def captured(monkeypatch):
    figs = []
    real = _figure.save

    def keep(fig, path, **kw):
        out = real(fig, path, **kw)  # saving draws the figure: positions are final
        fig._renderer_for_test = fig.canvas.get_renderer()  # kept: closing the figure drops its canvas
        figs.append(fig)
        return out

    from hpatches_kit.plots import benchmarks

    monkeypatch.setattr(_figure, "save", keep)
    monkeypatch.setattr(benchmarks, "save", keep)
    return figs


def _texts(fig):
    """(label, display bbox) of every visible, non-empty text and legend of ``fig``."""
    r = fig._renderer_for_test
    out = []
    for ax in fig.axes:
        texts = list(ax.texts) + [ax.title, ax.xaxis.label, ax.yaxis.label]
        texts += list(ax.get_xticklabels()) + list(ax.get_yticklabels())
        out += [(t.get_text(), t.get_window_extent(r)) for t in texts if t.get_visible() and t.get_text().strip()]
        if ax.get_legend() is not None:
            out.append(("legend", ax.get_legend().get_window_extent(r)))
    out += [(t.get_text(), t.get_window_extent(r)) for t in fig.texts if t.get_text().strip()]
    out += [("figure legend", leg.get_window_extent(r)) for leg in fig.legends]
    if fig._suptitle is not None:
        out.append((fig._suptitle.get_text(), fig._suptitle.get_window_extent(r)))
    return out


def _data(fig):
    """(what, display points) sampled along every curve and marker, and (what, bbox) of every bar."""
    from matplotlib.patches import Rectangle

    r = fig._renderer_for_test
    points, boxes = [], []
    for ax in fig.axes:
        for line in ax.get_lines():
            xy = np.asarray(line.get_xydata(), float)
            xy = xy[np.isfinite(xy).all(axis=1)]
            if len(xy) > 1 and line.get_linestyle() not in ("None", "", " "):
                t = np.linspace(0, 1, 25)[:, None]
                xy = np.concatenate([a + t * (b - a) for a, b in zip(xy[:-1], xy[1:])])
            if len(xy):
                points.append((line.get_label(), line.get_transform().transform(xy)))
        for p in ax.patches:
            if isinstance(p, Rectangle):
                boxes.append(("bar", p.get_window_extent(r)))
            else:  # histogram outlines
                points.append(("patch", p.get_transform().transform(p.get_path().interpolated(40).vertices)))
    return points, boxes


def assert_no_text_over_data(fig):
    texts = _texts(fig)
    points, boxes = _data(fig)
    assert texts and (points or boxes)
    for label, tb in texts:
        inner = tb.expanded(1.0, 1.0).padded(-1.0)  # a pixel of tolerance at the edges
        for what, pts in points:
            hit = inner.contains_points(pts) if hasattr(inner, "contains_points") else None
            if hit is None:
                hit = (pts[:, 0] > inner.x0) & (pts[:, 0] < inner.x1) & (pts[:, 1] > inner.y0) & (pts[:, 1] < inner.y1)
            assert not hit.any(), f"text {label!r} covers {what!r} at {pts[hit][0]}"
        for what, bb in boxes:
            assert not inner.overlaps(bb), f"text {label!r} overlaps a {what} ({bb})"


def assert_markers_inside(fig, path):
    """Every marker lies inside the saved image (the tight bounding box the file was cut to)."""
    r = fig._renderer_for_test
    bb = fig.get_tightbbox(r).transformed(fig.dpi_scale_trans)
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() in (None, "None", ""):
                continue
            pts = line.get_transform().transform(np.asarray(line.get_xydata(), float))
            ms = line.get_markersize() * fig.dpi / 72
            assert (pts[:, 0] - ms / 2 >= bb.x0 - 1).all() and (pts[:, 0] + ms / 2 <= bb.x1 + 1).all(), path


def _hp_result(ver, mat, ret, **meta):
    def table(x):
        return {v: {n: {"auc": x, "ap": x + d} for n, d in (("intra", -1), ("inter", 1))} for v in "eht"}

    return {
        "meta": {"split": "a", "sequences": 14, "tracks": 3547, "data": "/cache/embedded-v2/hpatches", **meta},
        "verification": {"table": table(ver), "headline": {"value": ver}},
        "matching": {
            "table": {v: {"illum": mat - 2 + i, "view": mat + 2 - i, "all": mat} for i, v in enumerate("eht")},
            "headline": {"value": mat},
        },
        "retrieval": {
            "per_variant": {v: min(100.0, ret + 1 - i) for i, v in enumerate("eht")},
            "pool_sizes": [100, 500, 1000, 5000, 10000, 15000, 20000],
            "effective_pool_max": 705,
            "headline": {"value": ret},
        },
    }


def test_comparison_figure_has_no_text_over_data_and_a_caption(tmp_path, captured):
    from hpatches_kit.plots.eval import NOT_HELD_OUT, plot_hpatches_bars

    entries = [
        ("sift", _hp_result(80.1, 40.2, 60.3)),
        ("rootsift", _hp_result(82.0, 45.0, 63.0)),
        ("l2net-synth-v2", _hp_result(99.2, 89.5, 99.6, not_held_out="models/l2net-synth-v2.md: embedded-v2")),
        ("my-run", _hp_result(97.3, 84.6, 99.9)),
    ]
    plot_hpatches_bars(entries, tmp_path / "c.png")
    fig = captured[-1]
    assert_no_text_over_data(fig)
    assert_markers_inside(fig, "c.png")
    caption = "\n".join(t.get_text() for t in fig.texts)
    assert "/cache/embedded-v2/hpatches" in caption and "split a (14 sequences, 3547 tracks)" in caption
    assert "pools 1,000, 5,000, 10,000, 15,000, 20,000 capped at 705 (700 distractors)" in caption
    assert f"{NOT_HELD_OUT} l2net-synth-v2: trained on the photos of this test set" in caption
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert f"l2net-synth-v2{NOT_HELD_OUT}" in names and "sift" in names
    # the Easy / Hard / Tough markers of a bar sit at three heights: scores near 100 do not pile up
    ys = {round(float(line.get_ydata()[0]) % 1, 2) for line in fig.axes[2].get_lines()}
    assert ys == {0.0, 0.22, 0.78}


def _mma_result(name, illum_pairs, view_pairs, base):
    th = list(range(1, 11))

    def summary(n, b):
        return {
            "pairs": n,
            "mma": [min(1.0, b + 0.07 * t) for t in th] if n else None,
            "homography": {"1": b, "3": b + 0.2, "5": b + 0.3} if n else None,
            "mean_matches": 100.0 if n else None,
        }

    return {
        "meta": {
            "descriptor": name,
            "thresholds": th,
            "sequences": ["v_a", "v_b"],
            "detector": "dog",
            "max_keypoints": 500,
            "patch_size": 65,
            "mutual": True,
            "ratio": None,
        },
        "overall": summary(illum_pairs + view_pairs, base),
        "illumination": summary(illum_pairs, base),
        "viewpoint": summary(view_pairs, base),
    }


def test_mma_figure_has_no_empty_or_repeated_panel(tmp_path, captured):
    from hpatches_kit.plots.benchmarks import plot_mma

    # viewpoint scenes alone: one panel (no "illumination (0 pairs)", no "overall" repeating the curve)
    plot_mma(
        [_mma_result(n, 0, 10, b) for n, b in (("sift", 0.1), ("rootsift", 0.15), ("mine", 0.3))], tmp_path / "m.png"
    )
    fig = captured[-1]
    assert [ax.get_title() for ax in fig.axes] == ["viewpoint (10 pairs)"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["sift", "rootsift", "mine"]
    assert_no_text_over_data(fig)
    plot_mma([_mma_result("sift", 5, 10, 0.2)], tmp_path / "m2.png")
    assert [ax.get_title() for ax in captured[-1].axes] == [
        "overall (15 pairs)",
        "illumination (5 pairs)",
        "viewpoint (10 pairs)",
    ]
    assert_no_text_over_data(captured[-1])


def test_real_pca_histogram_and_retrieval_figures_keep_text_off_the_data(tmp_path, captured):
    from hpatches_kit.plots.benchmarks import plot_real
    from hpatches_kit.plots.diagnostics import plot_distance_histograms, plot_pca_energy
    from hpatches_kit.plots.eval import plot_retrieval_pools

    rows = {"SIFT": {"verification": 70.0, "matching": 30.0, "retrieval": 55.0}}
    rows["RootSIFT"] = {"verification": 72.0, "matching": 33.0, "retrieval": 57.0}
    rows["my-run"] = {"verification": 96.0, "matching": 80.0, "retrieval": 99.0}  # the best bar, top right
    plot_real({"hpatches": {"rows": rows, "tracks": 500}}, tmp_path / "real.png")
    assert_no_text_over_data(captured[-1])

    e = np.cumsum(np.sort(np.random.default_rng(0).random(64))[::-1])
    e /= e[-1]
    curves = {n: {"energy": e**p, "dims_90": 20, "dims_99": 50} for n, p in (("sift", 1.0), ("mine", 0.5))}
    plot_pca_energy(curves, tmp_path / "pca.png")
    assert_no_text_over_data(captured[-1])

    rng = np.random.default_rng(1)
    samples = {
        v: {
            "pos": rng.gamma(2, 0.2, 300),
            "neg_intra": 1 + rng.normal(0, 0.2, 300),
            "neg_inter": 1.2 + rng.normal(0, 0.2, 300),
        }
        for v in "eht"
    }
    plot_distance_histograms(samples, tmp_path / "hist.png")
    assert_no_text_over_data(captured[-1])

    r = _hp_result(80, 40, 60)["retrieval"]
    r["table"] = {v: {str(p): 90.0 - i for p in r["pool_sizes"]} for i, v in enumerate("eht")}
    plot_retrieval_pools({"retrieval": r}, tmp_path / "ret.png")
    assert_no_text_over_data(captured[-1])


def test_training_curves_tick_whole_epochs(tmp_path, captured):
    from hpatches_kit.plots.training import plot_training_curves

    plot_training_curves(
        {"epoch": [1, 2, 3], "loss": [0.9, 0.7, 0.6], "val_loss": [None, None, 0.65]}, tmp_path / "t.png"
    )
    ax = captured[-1].axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert_no_text_over_data(captured[-1])
