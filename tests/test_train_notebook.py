"""docs/notebook.ipynb: its code cells run, in order, and train."""

from pathlib import Path

import numpy as np
import nbformat

NB = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"


def test_notebook_code_cells_run():
    nb = nbformat.read(NB, as_version=4)
    ns: dict = {}
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 3
    for src in code:
        exec(compile(src, str(NB), "exec"), ns)  # noqa: S102 - our own notebook
    h = ns["history"].history["loss"]
    assert len(h) == 2 and all(np.isfinite(h))
    assert 0.0 <= ns["accuracy"] <= 1.0
    assert ns["model"].output_shape == (None, 32)
    from hpatches_kit.losses import BatchHardTripletLoss

    assert isinstance(ns["model"].loss, BatchHardTripletLoss)  # the package loss, not a training-area copy
