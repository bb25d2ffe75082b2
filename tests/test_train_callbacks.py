"""Mining losses vs brute-force NumPy loops; collapse detection on a forced-collapse model; curriculum;
atomic checkpoints and resume continuing epochs and optimizer state exactly."""

import json
import warnings

import keras
import numpy as np
import pytest

from hpatches_kit.data import DataError
from hpatches_kit.losses import BatchHardTripletLoss
from hpatches_kit.models import L2Normalize
from hpatches_kit.training import (
    AtomicCheckpoint,
    CollapseDetector,
    CurriculumTripletLoss,
    MiningCurriculum,
    ReplicaLoss,
    descriptor_dataset,
    descriptor_spread,
    load_resume,
)
from hpatches_kit.training.callbacks import CollapseWarning, MetricsLogger


def _np_losses(labels, e, margin):
    n = len(labels)
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    hard, alls = [], []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [q for q in range(n) if labels[q] != labels[a]]
        if not pos or not neg:
            continue
        hard.append(max(0.0, max(d[a, p] for p in pos) - min(d[a, q] for q in neg) + margin))
        alls += [max(0.0, d[a, p] - d[a, q] + margin) for p in pos for q in neg]
    alls = np.array(alls)
    return np.mean(hard), alls.sum() / max((alls > 1e-16).sum(), 1)


def test_curriculum_loss_matches_numpy_loops():
    """The curriculum loss (built on the package's batch-all / batch-hard; those are checked against brute
    force in tests/test_losses_triplet.py) at weights 0, 1 and 0.25, general and S x K paths, int labels."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 3)
    e = rng.normal(size=(15, 6)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    for margin in (0.3, 1.0):
        hard, alls = _np_losses(labels, e, margin)
        for views in (None, 3):
            cur = CurriculumTripletLoss(margin=margin, hard_weight=0.0, views_per_track=views)
            assert float(cur(labels, e)) == pytest.approx(alls, rel=1e-4)
            cur.hard_weight.assign(1.0)
            assert float(cur(labels, e)) == pytest.approx(hard, rel=1e-4)
            cur.hard_weight.assign(0.25)
            assert float(cur(labels, e)) == pytest.approx(0.75 * alls + 0.25 * hard, rel=1e-4)
    # soft margin: softplus instead of the hinge
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    same = labels[:, None] == labels[None]
    hp = np.where(same & ~np.eye(15, dtype=bool), d, -np.inf).max(1)
    hn = np.where(~same, d, np.inf).min(1)
    soft = CurriculumTripletLoss(hard_weight=1.0, soft=True)
    assert float(soft(labels, e)) == pytest.approx(np.log1p(np.exp(hp - hn)).mean(), rel=1e-4)
    # ReplicaLoss outside a strategy is the wrapped (unscaled) loss; int64 ids beyond float32 precision stay exact
    big = (labels + 2**40).astype(np.int64)
    wrapped = ReplicaLoss(CurriculumTripletLoss(margin=1.0, hard_weight=1.0), global_batch=True)
    assert float(wrapped(big, e)) == pytest.approx(_np_losses(labels, e, 1.0)[0], rel=1e-4)
    # serialisable (config round trip keeps the weight, the wrapped loss and its options)
    cur = CurriculumTripletLoss(margin=0.5, hard_weight=0.25, views_per_track=3, distance_metric="squared-L2")
    for loss in (
        cur,
        BatchHardTripletLoss(0.5),
        ReplicaLoss(BatchHardTripletLoss(0.5), global_batch=True),
        ReplicaLoss(cur),
    ):
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is type(loss)
        assert float(again(labels, e)) == pytest.approx(float(loss(labels, e)), rel=1e-6)


def test_descriptor_spread_hand_example():
    assert descriptor_spread([[1, 0], [-1, 0]]) == pytest.approx(1.0)
    assert descriptor_spread(np.ones((5, 3))) == 0.0


def _collapsing_model(trainable_kernel=False):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inp)
    dense = keras.layers.Dense(4, kernel_initializer="zeros", bias_initializer="ones")
    x = dense(x)
    m = keras.Model(inp, L2Normalize()(x))
    dense.kernel.trainable = trainable_kernel
    return m


def test_collapse_detector_stops_a_collapsed_model():
    tracks = np.random.default_rng(1).integers(0, 256, (16, 16, 8, 8), dtype=np.uint8)
    ds = descriptor_dataset(tracks, 4, 2, seed=0)
    probe = next(iter(ds))[0].numpy()
    m = _collapsing_model()
    m.compile(optimizer="sgd", loss=BatchHardTripletLoss(margin=1.0))
    det = CollapseDetector(probe, margin=1.0, action="stop")
    with pytest.warns(CollapseWarning, match="collapse at epoch 1"):
        h = m.fit(ds, steps_per_epoch=2, epochs=5, verbose=0, callbacks=[det])
    assert len(h.history["loss"]) == 1 and det.collapsed_epochs == [0]
    assert h.history["loss"][0] == pytest.approx(1.0, abs=1e-5) and det.spreads[0] < 1e-6


def test_collapse_detector_quiet_on_a_healthy_model():
    tracks = np.random.default_rng(1).integers(0, 256, (16, 16, 8, 8), dtype=np.uint8)
    ds = descriptor_dataset(tracks, 4, 2, seed=0)
    probe = next(iter(ds))[0].numpy() / 255.0
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    m = keras.Model(inp, L2Normalize()(keras.layers.Dense(8)(keras.layers.Flatten()(inp))))
    m.compile(optimizer="sgd", loss=BatchHardTripletLoss(margin=1.0))
    det = CollapseDetector(probe, margin=1.0, action="stop")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        h = m.fit(ds.map(lambda x, y: (x / 255.0, y)), steps_per_epoch=2, epochs=2, verbose=0, callbacks=[det])
    assert len(h.history["loss"]) == 2 and det.collapsed_epochs == [] and min(det.spreads) > 0.3


class _FixedEmbeddings:
    """A stand-in model for :class:`CollapseDetector`: ``predict`` returns the embeddings set for the epoch."""

    def __init__(self):
        self.emb, self.stop_training = None, False

    def predict(self, x, verbose=0, batch_size=None):
        return self.emb


def _spread_embeddings(spread, n=64, dim=4):
    """``n`` descriptors whose root total variance is exactly ``spread`` (two antipodal points scaled)."""
    e = np.zeros((n, dim))
    e[: n // 2, 0], e[n // 2 :, 0] = spread, -spread
    assert descriptor_spread(e) == pytest.approx(spread, rel=1e-12)
    return e + 0.3  # a common offset changes no spread


def _drive(epochs, **kw):
    """Run the detector's epoch-end hook over ``[(loss, spread), ...]``: (flagged epochs, warnings, stop flags)."""
    kw.setdefault("margin", 1.0)
    det = CollapseDetector(np.zeros((64, 8, 8, 1), np.float32), **kw)
    model = _FixedEmbeddings()
    det.set_model(model)
    stops = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for epoch, (loss, spread) in enumerate(epochs):
            model.emb = _spread_embeddings(spread)
            logs = {"lr": 1e-3} if loss is None else {kw.get("monitor", "loss"): loss}
            det.on_epoch_end(epoch, logs)
            assert logs["descriptor_spread"] == pytest.approx(spread, rel=1e-9)
            stops.append(model.stop_training)
    msgs = [str(w.message) for w in rec if issubclass(w.category, CollapseWarning)]
    return det.collapsed_epochs, msgs, stops


def test_collapse_detector_truth_table():
    """Collapse = loss pinned at the margin AND low spread, ``patience`` epochs in a row; checked at the
    band edges (|loss - margin| <= 0.05 margin, spread < 0.05) so a detector using only one signal, OR instead
    of AND, a wrong band or a streak that does not reset fails here."""
    pinned, unpinned, low, high = 1.0, 0.5, 0.01, 0.9
    # each condition alone is not a collapse; both together are
    assert _drive([(pinned, high)])[0] == []
    assert _drive([(unpinned, low)])[0] == []
    assert _drive([(unpinned, high)])[0] == []
    flagged, msgs, stops = _drive([(pinned, low)])
    assert flagged == [0] and len(msgs) == 1 and "collapse at epoch 1" in msgs[0] and stops == [False]
    # the loss band is relative to the margin, both sides: margin 2 -> |loss - 2| <= 0.1
    assert _drive([(1.91, low), (2.09, low)], margin=2.0)[0] == [0, 1]
    assert _drive([(1.89, low), (2.11, low), (1.0, low)], margin=2.0)[0] == []
    # the spread threshold is strict (< spread_tol)
    assert _drive([(pinned, 0.049), (pinned, 0.051)])[0] == [0]
    assert _drive([(pinned, 0.2)], spread_tol=0.25)[0] == [0]
    # a missing monitored loss is never a collapse; monitor picks the log key
    assert _drive([(None, low)])[0] == []
    assert _drive([(pinned, low)], monitor="val_loss")[0] == [0]
    # patience: the streak must be consecutive and resets on a healthy epoch
    seq = [(pinned, low), (pinned, high), (pinned, low), (pinned, low), (pinned, low)]
    assert _drive(seq, patience=2)[0] == [3, 4]
    assert _drive(seq, patience=3)[0] == [4]
    assert _drive(seq[:4], patience=3)[0] == []
    # warn only warns; stop also stops training, from the flagged epoch on
    flagged, msgs, stops = _drive(seq[:4], patience=2, action="warn")
    assert flagged == [3] and len(msgs) == 1 and "collapse at epoch 4" in msgs[0] and stops == [False] * 4
    flagged, msgs, stops = _drive(seq[:4], patience=2, action="stop")
    assert flagged == [3] and len(msgs) == 1 and stops == [False, False, False, True]
    with pytest.raises(ValueError, match="action"):
        CollapseDetector(np.zeros((1, 8, 8, 1)), action="halt")


def test_mining_curriculum_schedule_reaches_the_loss():
    loss = CurriculumTripletLoss(hard_weight=1.0)
    cb = MiningCurriculum(loss, warmup=2, ramp=2)
    assert [cb.weight(e) for e in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    cb.on_epoch_begin(2)
    assert float(loss.hard_weight.numpy()) == 0.5


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("simulated crash after epoch 1")


def _small_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dense(8)(x)
    m = keras.Model(inp, L2Normalize()(x))
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BatchHardTripletLoss(0.5))
    return m


def test_checkpoint_resume_continues_epochs_and_optimizer(tmp_path):
    tracks = np.random.default_rng(2).integers(0, 256, (24, 16, 8, 8), dtype=np.uint8)
    steps = 3
    data = lambda skip=0: descriptor_dataset(tracks, 4, 2, seed=5).skip(skip)  # noqa: E731

    full = _small_model()
    full.fit(data(), steps_per_epoch=steps, epochs=2, verbose=0, callbacks=[AtomicCheckpoint(tmp_path / "a")])

    part = _small_model()
    with pytest.raises(KeyboardInterrupt):
        part.fit(
            data(),
            steps_per_epoch=steps,
            epochs=2,
            verbose=0,
            callbacks=[AtomicCheckpoint(tmp_path / "b"), _Interrupt()],
        )
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["epoch"] == 1
    assert not list((tmp_path / "b").glob(".*tmp*"))  # no temp files left behind
    res = load_resume(tmp_path / "b")
    assert res.initial_epoch == 1 and int(res.model.optimizer.iterations.numpy()) == steps
    res.model.fit(
        data(skip=steps * res.initial_epoch),
        steps_per_epoch=steps,
        epochs=2,
        initial_epoch=res.initial_epoch,
        verbose=0,
        callbacks=[AtomicCheckpoint(tmp_path / "b")],
    )
    assert int(res.model.optimizer.iterations.numpy()) == 2 * steps
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 2
    for a, b in zip(full.weights, res.model.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # and the interruption really mattered: the weights after epoch 1 differ from the final ones
    after1 = keras.models.load_model(tmp_path / "a" / "epoch-0001.keras")
    assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(after1.weights, full.weights)) > 1e-4


def test_resume_reports_missing_or_corrupt_checkpoint(tmp_path):
    assert load_resume(tmp_path) is None
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(DataError, match="state.json: corrupt"):
        load_resume(tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 1, "file": "last.keras"}))
    with pytest.raises(DataError, match="last.keras: checkpoint named by state.json is missing"):
        load_resume(tmp_path)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_loss_in_float32(policy):
    from hpatches_kit.training import set_precision

    tracks = np.random.default_rng(4).integers(0, 256, (8, 16, 8, 8), dtype=np.uint8)
    x, y = next(iter(descriptor_dataset(tracks, 4, 2, seed=0)))
    try:
        assert set_precision(policy) == policy
        m = _small_model()
        assert m.layers[-2].compute_dtype == policy.split("_")[1]
        assert keras.backend.standardize_dtype(m(x).dtype) == "float32"
        loss = float(m.train_on_batch(x, y))
        if policy == "mixed_float16":
            assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ref = _small_model()  # same seed, float32
    assert loss == pytest.approx(float(ref.evaluate(x, y, verbose=0)), abs=0.05)


def test_auto_device_defaults():
    from hpatches_kit.training import auto_jit, auto_precision

    amx = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    no_amx = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
    assert auto_precision("cpu", cpuinfo=amx) == "mixed_bfloat16" and auto_jit("cpu") is False
    assert auto_precision("cpu", cpuinfo=no_amx) == "float32"
    assert auto_precision("cpu", cpuinfo="") == "float32"  # no flags line (not Linux, or unreadable)
    assert auto_precision("tpu") == "mixed_bfloat16" and auto_jit("tpu") is True


def test_metrics_logger_keeps_every_metric_aligned_with_epochs(tmp_path):
    """A metric missing from an epoch's logs (validation every few epochs) is logged as null, one first
    seen late is front-padded, a resumed history carries on; the curves PNG plots only the logged points."""
    from hpatches_kit.plots.training import _logged

    log = MetricsLogger(tmp_path / "h.json", tmp_path / "c.png", history={"loss": [5.0], "epoch": [1]})
    for e, logs in enumerate([{"loss": 4.0}, {"loss": 3.0, "val_loss": 2.5}, {"loss": 2.0}], start=1):
        log.on_epoch_end(e, logs)
    want = {"loss": [5.0, 4.0, 3.0, 2.0], "val_loss": [None, None, 2.5, None], "epoch": [1, 2, 3, 4]}
    # epoch wall times start once a first epoch end is seen (no on_train_begin here): aligned and null-padded
    walls = log.history.pop("epoch_wall_s")
    assert walls[:2] == [None, None] and all(w >= 0 for w in walls[2:]) and len(walls) == 4
    assert log.history == want
    assert {
        k: v for k, v in json.loads((tmp_path / "h.json").read_text())["history"].items() if k != "epoch_wall_s"
    } == want
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert _logged(want["epoch"], want["val_loss"]) == ([3], [2.5])
    assert _logged([1, 2, 3], [1.0, float("nan"), 0.5]) == ([1, 3], [1.0, 0.5])
