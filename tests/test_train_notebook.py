"""docs/notebook.ipynb: its code cells run, in order, and train."""

from pathlib import Path

import numpy as np
import nbformat

from hpatches_kit.losses import BatchHardTripletLoss

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
    # the notebook's accuracy is what a plain loop over its model's held-out descriptors gives, and it is
    # far above chance (1 / 16 held-out tracks)
    test, model = ns["test"], ns["model"]
    ref = model.predict(test[:, 0, :, :, None].astype("float32"), verbose=0).astype(np.float64)
    tgt = model.predict(test[:, 15, :, :, None].astype("float32"), verbose=0).astype(np.float64)
    hits = sum(int(np.argmin([np.linalg.norm(r - t) for t in tgt]) == i) for i, r in enumerate(ref))
    assert ns["accuracy"] == hits / len(test)
    assert ns["accuracy"] >= 0.5
    # training learned: the loss falls, and on fixed training batches the trained model's loss is below
    # that of the same network at its (seeded) initialisation
    assert h[1] < h[0]
    import keras

    from hpatches_kit.models import l2net
    from hpatches_kit.training import descriptor_dataset

    keras.utils.set_random_seed(0)
    init = l2net(input_size=32, dim=32)  # the notebook's initialisation
    loss = BatchHardTripletLoss(margin=1.0)
    for m in (init, model):  # batch statistics as in training, without dropout's randomness
        for layer in m.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    batches = list(descriptor_dataset(ns["train"], tracks_per_batch=8, views=4, seed=0).take(3))
    before = np.mean([float(loss(y, init(x, training=True))) for x, y in batches])
    after = np.mean([float(loss(y, model(x, training=True))) for x, y in batches])
    assert after < before - 0.005, (before, after)
    assert ns["model"].output_shape == (None, 32)
    assert isinstance(ns["model"].loss, BatchHardTripletLoss)  # the package loss, not a training-area copy
