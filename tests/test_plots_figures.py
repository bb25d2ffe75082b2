"""What the paper figures show (issue 31): PDF twins, AUC/AP in the curve legends, retrieval pools beyond the
distractors not drawn (and said), the compare figure's marker legend, readable training-curve titles and the
collapse level. The figures are captured before saving and inspected through matplotlib's objects."""

from __future__ import annotations

import numpy as np
import pytest

from hpatches_kit.plots import _figure


@pytest.fixture
def captured(monkeypatch):
    figs = []
    real = _figure.save

    def keep(fig, path, **kw):
        figs.append(fig)
        return real(fig, path, **kw)

    monkeypatch.setattr(_figure, "save", keep)
    return figs


def _results():
    curve = {
        "fpr": np.linspace(0, 1, 5),
        "tpr": np.linspace(0.5, 1, 5),
        "recall": np.linspace(0, 1, 5),
        "precision": np.linspace(1, 0.5, 5),
    }
    return {
        "meta": {"split": "a", "sequences": 2, "tracks": 100},
        "verification": {
            "table": {
                v: {n: {"auc": 90.0 + i, "ap": 80.0 + i} for n in ("intra", "inter")} for i, v in enumerate("eht")
            },
            "curves": {v: {n: curve for n in ("intra", "inter")} for v in "eht"},
            "headline": {"value": 81.0},
        },
        "retrieval": {
            "pool_sizes": [100, 500, 1000, 5000, 10000, 15000, 20000],
            "table": {v: {str(p): 90.0 - p / 1000 for p in (100, 500, 1000, 5000, 10000, 15000, 20000)} for v in "eht"},
            "per_variant": {v: 85.0 for v in "eht"},
            "effective_pool_max": 1205,
            "headline": {"value": 85.0},
        },
    }


def test_curves_legends_carry_auc_and_ap_and_a_pdf_is_written(tmp_path, captured):
    from hpatches_kit.plots.eval import plot_verification_curves

    written = plot_verification_curves(_results(), tmp_path / "v.png")
    assert [p.name for p in written] == ["v.png", "v.pdf"] and (tmp_path / "v.pdf").read_bytes()[:5] == b"%PDF-"
    roc, pr = captured[0].axes
    roc_labels = [t.get_text() for t in roc.get_legend().get_texts()]
    pr_labels = [t.get_text() for t in pr.get_legend().get_texts()]
    assert "Easy intra (AUC 90.00%)" in roc_labels and "Tough inter (AUC 92.00%)" in roc_labels
    assert "Hard intra (AP 81.00%)" in pr_labels


def test_retrieval_pools_beyond_the_distractors_are_not_drawn(tmp_path, captured):
    from hpatches_kit.plots.eval import plot_retrieval_pools

    plot_retrieval_pools(_results(), tmp_path / "r.png")
    ax = captured[0].axes[0]
    for line in ax.get_lines():
        assert list(line.get_xdata()) == [100, 500, 1000]  # 5 + 1200 distractors: pools up to 1205 only
    note = " ".join(t.get_text() for t in ax.texts)
    assert "5,000, 10,000, 15,000, 20,000 not drawn" in note and "1,200 distractors" in note


def test_compare_figure_explains_its_markers(tmp_path, captured):
    from hpatches_kit.plots.eval import plot_hpatches_bars

    r = _results()
    r["matching"] = {
        "table": {v: {"illum": 50.0, "view": 60.0, "all": 55.0} for v in "eht"},
        "headline": {"value": 55.0},
    }
    r["retrieval"]["headline"] = {"value": 99.9}
    plot_hpatches_bars([("a", r), ("b", r)], tmp_path / "c.png")
    fig = captured[0]
    panel_legends = {tuple(t.get_text() for t in ax.get_legend().get_texts()) for ax in fig.axes}
    assert ("intra-sequence negatives", "inter-sequence negatives") in panel_legends
    assert ("illumination sequences", "viewpoint sequences") in panel_legends
    assert ("mean over pool sizes",) in panel_legends
    top = [t.get_text() for t in fig.legends[0].get_texts()]
    assert top[:3] == ["Easy", "Hard", "Tough"] and "headline" in top[3]
    for ax in fig.axes:  # markers are never clipped at the axis edge
        assert all(not line.get_clip_on() for line in ax.get_lines())


def test_training_curves_titles_and_collapse_level(tmp_path, captured):
    from hpatches_kit.plots.training import plot_training_curves

    h = {
        "epoch": [1, 2, 3],
        "loss": [0.9, 0.7, 0.6],
        "epoch_wall_s": [7.0, 7.1, 6.9],
        "descriptor_spread": [0.5, 0.6, 0.7],
        "pca_dims_90": [10.0, 12.0, 14.0],
        "pca_dims_99": [30.0, 32.0, 35.0],
    }
    plot_training_curves(h, tmp_path / "t.png", levels={"descriptor_spread": (0.05, "collapse level")}, vector=True)
    fig = captured[0]
    titles = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert "epoch_wall_s" not in titles and any(t.startswith("epoch wall time") for t in titles)
    spread = titles["descriptor spread (probe batch)"]
    assert any(list(line.get_ydata()) == [0.05, 0.05] for line in spread.get_lines())  # the collapse level
    pca = titles["PCA dims holding 90% / 99% of the energy (probe)"]
    assert len(pca.get_lines()) == 2 and (tmp_path / "t.pdf").is_file()
