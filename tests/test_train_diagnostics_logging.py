"""Training's per-epoch descriptor-space log: CollapseDetector's PCA dimensions (against a hand example) and
descriptor_spread / pca_dims_* reaching history.json and the training curves through TrainingRun.callbacks."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from hpatches_kit.losses import BatchHardTripletLoss
from hpatches_kit.models import L2Normalize
from hpatches_kit.training import CollapseDetector, descriptor_dataset, descriptor_spread


class _Fixed:
    def __init__(self, emb):
        self.emb, self.stop_training = emb, False

    def predict(self, x, verbose=0, batch_size=None):
        return self.emb


def test_detector_logs_pca_dims_hand_example():
    # points at +-c_k e_k: variances proportional to 4, 3, 2, 1 -> 90% of the energy in 3 dims, 99% in 4
    c = np.sqrt([4.0, 3.0, 2.0, 1.0, 0.0, 0.0])
    emb = np.concatenate([np.diag(c), -np.diag(c)])
    det = CollapseDetector(np.zeros((12, 8, 8, 1), np.float32))
    det.set_model(_Fixed(emb))
    logs = {"loss": 0.3}
    det.on_epoch_end(0, logs)
    assert logs["pca_dims_90"] == 3.0 and logs["pca_dims_99"] == 4.0 and det.pca_dims == [(3, 4)]
    assert logs["descriptor_spread"] == pytest.approx(descriptor_spread(emb))
    det.set_model(_Fixed(np.ones((12, 6))))  # collapsed: no energy at all
    det.on_epoch_end(1, logs)
    assert logs["pca_dims_90"] == 0.0 and det.pca_dims[-1] == (0, 0)
    assert det.reference_levels() == {"descriptor_spread": (0.05, "collapse level (spread < 0.05)")}


def test_spread_and_pca_dims_reach_history_json_and_the_curves(tmp_path):
    from hpatches_kit.training.run import TrainingRun

    tracks = np.random.default_rng(1).integers(0, 256, (16, 16, 8, 8), dtype=np.uint8)
    ds = descriptor_dataset(tracks, 4, 2, seed=0).map(lambda x, y: (x / 255.0, y))
    probe = next(iter(ds))[0].numpy()
    run = TrainingRun.start("descriptor", tmp_path / "run", {"test": 1}, strategy="default", precision="float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, L2Normalize()(keras.layers.Dense(8)(keras.layers.Flatten()(inp))))
    m.compile(optimizer="sgd", loss=BatchHardTripletLoss(margin=1.0))
    det = CollapseDetector(probe, margin=1.0)
    cbs = run.callbacks({}, [det], tensorboard=False, checkpoints=False)
    from hpatches_kit.training.callbacks import NonFiniteLossGuard

    # the NaN guard first (a NaN loss stops before anything is logged), then the detector, before the logger,
    # which then records its keys
    assert isinstance(cbs[0], NonFiniteLossGuard) and cbs[1] is det
    m.fit(ds, steps_per_epoch=2, epochs=3, verbose=0, callbacks=cbs)
    saved = json.loads((run.out / "history.json").read_text())
    h = saved["history"]
    assert h["descriptor_spread"] == pytest.approx(det.spreads)
    assert h["pca_dims_90"] == [float(a) for a, _ in det.pca_dims] and h["pca_dims_99"] == [
        float(b) for _, b in det.pca_dims
    ]
    assert all(1 <= a <= b <= 8 for a, b in det.pca_dims)
    assert saved["reference_levels"]["descriptor_spread"]["value"] == 0.05
    png, pdf = run.out / "training_curves.png", run.out / "training_curves.pdf"
    assert png.stat().st_size > 10_000 and pdf.read_bytes()[:5] == b"%PDF-"
