"""Distribution on two logical CPU devices (in a subprocess, since logical devices must be configured before
TensorFlow initialises): per-replica losses vs one device, global-batch mining vs one device."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(r"""
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np, keras
from keras import ops
from hpatches_kit.models import L2Normalize
from hpatches_kit.losses import BatchAllTripletLoss, BatchHardTripletLoss
from hpatches_kit.training import CurriculumTripletLoss, GlobalBatchLoss, KoLeoRegularised, ReplicaLoss, check_tracks_per_replica, descriptor_dataset, get_strategy


def batch_hard(labels, emb, margin=0.5):  # minimal reference loss (keras.ops), independent of the package's
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    d = ops.sqrt(ops.maximum(ops.sum(ops.square(emb[:, None] - emb[None]), -1), 1e-12))
    same = ops.cast(labels[:, None] == labels[None], "float32")
    eye = ops.eye(ops.shape(labels)[0])
    hp = ops.max(d * (same - eye), 1)
    hn = ops.min(d + 10.0 * same, 1)
    return ops.mean(ops.maximum(hp - hn + margin, 0.0))


class BH(keras.losses.Loss):
    def call(self, y, e):
        return batch_hard(y, e)


def build():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(8)(x)
    return keras.Model(inp, L2Normalize()(x))


rng = np.random.default_rng(0)
tracks = rng.integers(0, 256, (16, 16, 4, 4), dtype=np.uint8)
S, K = 8, 2
x, y = next(iter(descriptor_dataset(tracks, S, K, seed=0, augment=False)))
x, y = x.numpy() / 255.0, y.numpy()
out = {}

strat = get_strategy("mirrored")
out["replicas"] = strat.num_replicas_in_sync
check_tracks_per_replica(S, strat)
lr = 0.5

def step(model, loss):
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=loss)
    h = model.fit(x, y, batch_size=S * K, epochs=1, shuffle=False, verbose=0)
    return h.history["loss"][0], [w.numpy() for w in model.trainable_weights]

# one device, reference numbers
ref = build()
w0 = [w.numpy() for w in ref.trainable_weights]
half = S * K // 2
slices_loss = [float(batch_hard(y[i:i + half], ref(x[i:i + half]))) for i in (0, half)]
whole_loss = float(batch_hard(y, ref(x)))
def one_device_update(loss_fn):
    m = build()
    with tf.GradientTape() as tape:
        l = loss_fn(m)
    g = tape.gradient(l, m.trainable_weights)
    return [w.numpy() - lr * gi.numpy() for w, gi in zip(m.trainable_weights, g)]
w_slices = one_device_update(lambda m: 0.5 * (batch_hard(y[:half], m(x[:half])) + batch_hard(y[half:], m(x[half:]))))
w_whole = one_device_update(lambda m: batch_hard(y, m(x)))

with strat.scope():
    m = build()
    l_local, w_local = step(m, ReplicaLoss(BH()))
with strat.scope():
    m = build()
    l_global, w_global = step(m, GlobalBatchLoss(BH()))
out.update(slices=slices_loss, whole=whole_loss, local=l_local, global_=l_global,
           local_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_local, w_slices)),
           global_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_global, w_whole)),
           moved=max(float(np.abs(a - b).max()) for a, b in zip(w_whole, w0)),
           slices_vs_whole_w=max(float(np.abs(a - b).max()) for a, b in zip(w_slices, w_whole)))
with strat.scope():
    m = build()
    l_raw, _ = step(m, BH())  # a bare scalar loss: Keras does not divide it by the replicas
with strat.scope():
    m = build()
    l_pkg, w_pkg = step(m, BatchHardTripletLoss(margin=0.5))  # the package's own loss scales itself
with strat.scope():
    m = build()
    l_pkg_g, w_pkg_g = step(m, GlobalBatchLoss(BatchHardTripletLoss(margin=0.5)))  # no double scaling
out.update(pkg_global=l_pkg_g, pkg_global_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_pkg_g, w_whole)))
with strat.scope():  # curriculum at weight 1 = batch-hard; global mining over int labels, scaled once
    m = build()
    l_cur_g, w_cur_g = step(m, GlobalBatchLoss(CurriculumTripletLoss(margin=0.5, hard_weight=1.0, views_per_track=K)))
with strat.scope():  # batch-all (S x K fast path) mined globally == one device on the whole batch
    m = build()
    l_ba_g, w_ba_g = step(m, GlobalBatchLoss(BatchAllTripletLoss(margin=0.5, views_per_track=K)))
m = build()
l_ba_one, w_ba_one = step(m, BatchAllTripletLoss(margin=0.5, views_per_track=K))  # one device (default strategy)
with strat.scope():  # KoLeo on the gathered batch (one view per track of the global batch)
    m = build()
    l_ko_g, w_ko_g = step(m, GlobalBatchLoss(KoLeoRegularised(BatchHardTripletLoss(0.5), weight=0.2, views_per_track=K)))
m = build()
l_ko_one, w_ko_one = step(m, KoLeoRegularised(BatchHardTripletLoss(0.5), weight=0.2, views_per_track=K))
out.update(ko_global=l_ko_g, ko_one=l_ko_one,
           ko_global_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_ko_g, w_ko_one)))
with strat.scope():  # the same two losses mined per replica (each half batch alone): another objective
    m = build()
    l_ba_loc, w_ba_loc = step(m, BatchAllTripletLoss(margin=0.5, views_per_track=K))
with strat.scope():
    m = build()
    l_ko_loc, w_ko_loc = step(m, KoLeoRegularised(BatchHardTripletLoss(0.5), weight=0.2, views_per_track=K))
out.update(ba_local=l_ba_loc, ko_local=l_ko_loc,
           ba_local_w_diff=max(float(np.abs(a - b).max()) for a, b in zip(w_ba_loc, w_ba_one)),
           ko_local_w_diff=max(float(np.abs(a - b).max()) for a, b in zip(w_ko_loc, w_ko_one)))
out.update(cur_global=l_cur_g, cur_global_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_cur_g, w_whole)),
           ba_global=l_ba_g, ba_one=l_ba_one,
           ba_global_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_ba_g, w_ba_one)))
out.update(raw=l_raw, pkg=l_pkg, pkg_w_err=max(float(np.abs(a - b).max()) for a, b in zip(w_pkg, w_slices)))
try:
    check_tracks_per_replica(7, strat)
    out["odd_ok"] = True
except ValueError:
    out["odd_ok"] = False
print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def result():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT")]
    assert p.returncode == 0 and line, p.stderr[-3000:]
    return json.loads(line[0][6:])


def test_two_replicas(result):
    assert result["replicas"] == 2


def test_local_loss_is_mean_of_per_slice_losses(result):
    assert result["local"] == pytest.approx(sum(result["slices"]) / 2, rel=1e-5, abs=1e-6)
    assert result["local_w_err"] < 1e-5  # same update as the mean of the slice losses on one device


def test_package_loss_scales_itself_and_bare_scalar_loss_does_not(result):
    assert result["pkg"] == pytest.approx(sum(result["slices"]) / 2, rel=1e-5, abs=1e-6)
    assert result["pkg_w_err"] < 1e-5
    # why ReplicaLoss exists: Keras sums a scalar-valued loss over replicas (documented pitfall)
    assert result["raw"] == pytest.approx(sum(result["slices"]), rel=1e-5)


def test_global_batch_mining_equals_one_device(result):
    assert result["global_"] == pytest.approx(result["whole"], rel=1e-5, abs=1e-6)
    assert result["global_w_err"] < 1e-5
    assert result["pkg_global"] == pytest.approx(result["whole"], rel=1e-5, abs=1e-6)
    assert result["pkg_global_w_err"] < 1e-5
    # the comparison can fail: the two objectives really differ on this batch, and the step moved weights
    assert abs(result["whole"] - sum(result["slices"]) / 2) > 1e-3 or result["slices_vs_whole_w"] > 1e-4
    assert result["moved"] > 1e-3


def test_global_mining_package_losses_scale_once(result):
    """Curriculum (weight 1) and S x K batch-all, wrapped in GlobalBatchLoss, equal one device on the whole
    batch: the wrapper evaluates the unscaled loss and divides by the replicas exactly once."""
    assert result["cur_global"] == pytest.approx(result["whole"], rel=1e-5, abs=1e-6)
    assert result["cur_global_w_err"] < 1e-5
    assert result["ba_global"] == pytest.approx(result["ba_one"], rel=1e-5, abs=1e-6)
    assert result["ba_global_w_err"] < 1e-5
    assert result["ko_global"] == pytest.approx(result["ko_one"], rel=1e-5, abs=1e-6)
    assert result["ko_global_w_err"] < 1e-5
    # and per-replica mining of the same losses is a different objective, so the equalities above can fail
    assert abs(result["ba_local"] - result["ba_one"]) > 1e-4 or result["ba_local_w_diff"] > 1e-4
    assert abs(result["ko_local"] - result["ko_one"]) > 1e-4 or result["ko_local_w_diff"] > 1e-4


def test_tracks_must_split_evenly(result):
    assert result["odd_ok"] is False


def test_get_strategy_names(monkeypatch):
    import tensorflow as tf

    from hpatches_kit.training import get_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert get_strategy("default") is tf.distribute.get_strategy()
    assert get_strategy("auto").num_replicas_in_sync == 1  # one CPU, no TPU, no TF_CONFIG
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("horovod")
    with pytest.raises(RuntimeError, match="needs TF_CONFIG"):
        get_strategy("multiworker")
    with pytest.raises(RuntimeError, match="no TPU"):
        get_strategy("tpu")
