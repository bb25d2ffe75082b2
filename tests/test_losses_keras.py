"""Keras integration of the triplet-family losses: get_config, ``.keras`` save/load with
``model.compile(loss=...)``, graph-mode training with a dynamic batch, integer labels kept exact."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from conftest import assert_loss_round_trip
from keras import ops

import hpatches_kit.losses as L


@keras.saving.register_keras_serializable(package="test_losses")
def l1_distance(x):
    return ops.sum(ops.abs(ops.expand_dims(x, 1) - ops.expand_dims(x, 0)), axis=-1)


CASES = [
    (L.TripletHardLoss, dict(margin=0.4, soft=True, distance_metric="angular"), L.triplet_hard_loss),
    (L.TripletSemiHardLoss, dict(margin=0.3, distance_metric="squared-L2", views_per_track=4), L.triplet_semihard_loss),
    (L.BatchAllTripletLoss, dict(margin=0.2, average="all", distance_metric="L2"), L.batch_all_triplet_loss),
    (L.BatchHardTripletLoss, dict(margin=0.7, soft=False, distance_metric="angular"), L.batch_hard_triplet_loss),
    (L.HardNetLoss, dict(margin=1.0, views_per_track=4, anchor_swap=False), L.hardnet_loss),
    (L.PairContrastiveLoss, dict(margin=1.5, balance=False), L.pair_contrastive_loss),
    (L.PairCosineLoss, dict(margin=0.2), L.pair_cosine_loss),
]


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,))
    out = keras.layers.Dense(5)(inp)
    return keras.Model(inp, out)


def _data(S=6, K=4, big=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(S * K, 6)).astype(np.float32)
    ids = (2**24 + np.arange(S)).astype(np.int64) if big else np.arange(S, dtype=np.int64)
    return x, L.sk_labels(S, K, track_ids=ids, dtype="int64")


def _fn_value(fn, kwargs, y, emb):
    kw = dict(kwargs)
    if fn is L.triplet_semihard_loss:
        return float(fn(y, emb, kw.pop("margin"), kw.pop("distance_metric"), **kw))
    return float(fn(y, emb, **kw))


@pytest.mark.parametrize("cls,kwargs,fn", CASES, ids=[c[0].__name__ for c in CASES])
def test_config_and_keras_file_round_trip(tmp_path, cls, kwargs, fn):
    loss = cls(**kwargs)
    cfg = loss.get_config()
    for k, v in kwargs.items():
        assert cfg[k] == v

    x, y = _data(big=True)
    # config, keras.saving and .keras file round trips (the shared helper); the loaded model evaluates the same
    rt = assert_loss_round_trip(loss, y, x, tmp_path, model=_model())
    # value equals the functional loss on the model's output with *small* ids (proves the big ids stayed exact)
    emb = rt["model"].predict(x, verbose=0)
    _, y_small = _data()
    np.testing.assert_allclose(rt["value"], _fn_value(fn, kwargs, y_small, emb), rtol=1e-5, atol=1e-6)


def test_fit_graph_mode_dynamic_batch_large_ids():
    S, K = 8, 4
    rng = np.random.default_rng(3)
    x = (np.repeat(rng.normal(size=(S, 6)), K, axis=0) + 0.5 * rng.normal(size=(S * K, 6))).astype(np.float32)
    y = L.sk_labels(S, K, track_ids=2**24 + np.arange(S), dtype="int64")
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=L.TripletSemiHardLoss(views_per_track=K))
    # full-batch gradient descent (batch dim is None in the traced graph): the loss must go down
    hist = model.fit(x, y, batch_size=S * K, epochs=10, shuffle=False, verbose=0)
    losses = hist.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0]
    # mini-batches of 4 tracks x 4 views also run
    hist = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_callable_metric_round_trip():
    loss = L.TripletHardLoss(distance_metric=l1_distance)
    x, y = _data()
    assert_loss_round_trip(loss, y, x)
    again = L.TripletHardLoss.from_config(loss.get_config())
    assert again.distance_metric is l1_distance
    d = np.abs(x[:, None] - x[None]).sum(-1)
    np.testing.assert_allclose(np.asarray(L.pairwise_distance(x, l1_distance)), d, rtol=1e-5)
    assert float(again(y, x)) == pytest.approx(float(L.triplet_hard_loss(y, x, distance_metric=l1_distance)))


def test_half_precision_inputs():
    x, y = _data()
    want = float(L.triplet_semihard_loss(y, x.astype(np.float16).astype(np.float32)))
    got = L.triplet_semihard_loss(y, x.astype(np.float16))
    assert "float16" in str(got.dtype)  # as tfa: computed in float32, returned in the input dtype
    assert float(got) == pytest.approx(want, rel=1e-3)


def test_sample_weight_is_refused():
    x, y = _data()
    with pytest.raises(ValueError, match="per-sample weights"):
        L.TripletHardLoss()(y, x, sample_weight=np.ones(len(y)))


_MIRRORED = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import os

import keras
import hpatches_kit.losses as L
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 6)).astype(np.float32)
y = L.sk_labels(8, 4, dtype="int64")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(5)(inp))
    model.compile(optimizer="sgd", loss=L.TripletHardLoss())
got = model.evaluate(x, y, batch_size=32, verbose=0)
emb = model.predict(x, verbose=0)
halves = [float(L.triplet_hard_loss(y[i:i + 16], emb[i:i + 16])) for i in (0, 16)]
print("RESULT", got, np.mean(halves))
"""


def test_mirrored_strategy_loss_is_not_multiplied_by_replicas(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert lines, out.stderr[-3000:]
    got, want = (float(v) for v in lines[0].split()[1:])
    assert got == pytest.approx(want, rel=1e-5)


XLA_CASES = {
    "semihard_sorted": lambda y, e: L.triplet_semihard_loss(y, e),
    "semihard_sk": lambda y, e: L.triplet_semihard_loss(y, e, views_per_track=4),
    "batch_all_sk": lambda y, e: L.batch_all_triplet_loss(y, e, views_per_track=4),
    "hardnet_sk": lambda y, e: L.hardnet_loss(y, e, views_per_track=4),
}


@pytest.mark.parametrize("name", sorted(XLA_CASES))
def test_xla_compiles_and_matches_eager(name):
    # Keras uses jit_compile="auto" -> XLA on GPU machines: the sort/search and reshape paths must compile.
    import tensorflow as tf

    fn = XLA_CASES[name]
    x, y = _data(S=8, K=4)
    var = tf.Variable(x)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = fn(y, var)
        return loss, tape.gradient(loss, var)

    loss, g = step()
    assert float(loss) == pytest.approx(float(fn(y, x)), rel=1e-5, abs=1e-6)
    assert np.all(np.isfinite(g.numpy()))


def test_random_triplet_loss_keras_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(10, 3, 6)).astype(np.float32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((3, 6))
    model = keras.Model(inp, keras.layers.Dense(5)(inp))
    loss = L.RandomTripletLoss(margin=0.3, soft=False, distance_metric="squared-L2", swap=True)
    dummy = np.zeros(10, np.int64)
    rt = assert_loss_round_trip(loss, dummy, x, tmp_path, model=model)
    e = model.predict(x, verbose=0)
    want = float(L.triplet_margin_loss(e[:, 0], e[:, 1], e[:, 2], 0.3, False, "squared-L2", swap=True))
    assert rt["value"] == pytest.approx(want, rel=1e-5)
