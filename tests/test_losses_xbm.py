"""Cross-batch memory (XBM): the memory's content after k steps and the loss over batch + memory vs a NumPy
reference (a deque of the last M entries and loops over the formulas of Wang et al. 2020 / the package's
in-batch losses), its serialisation, validation not writing it, save/restore, and two replicas == one device."""

from __future__ import annotations

import collections
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hpatches_kit.losses as L

TOL = dict(rel=1e-4, abs=1e-5)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ref_loss(kind, qy, q, refs, margin=None, T=0.05):
    """Loops over queries i (the first len(q) refs are the queries) and references r = (label, vector)."""
    n = len(q)
    margin = {"contrastive": 0.5, "batch-hard": 1.0, "hardnet": 1.0}.get(kind) if margin is None else margin
    dist = lambda a, b: math.sqrt(max(float(np.sum((a - b) ** 2)), 0.0))  # noqa: E731
    cos = lambda a, b: float(unit(a) @ unit(b))  # noqa: E731
    P = [[r for r, (ly, _) in enumerate(refs) if ly == qy[i] and r != i] for i in range(n)]
    N = [[r for r, (ly, _) in enumerate(refs) if ly != qy[i]] for i in range(n)]
    if kind == "contrastive":
        tot = 0.0
        for i in range(n):
            tot += sum(1 - cos(q[i], refs[r][1]) for r in P[i])
            tot += sum(max(0.0, cos(q[i], refs[r][1]) - margin) for r in N[i])
        return tot / n
    if kind == "infonce":
        vals = []
        for i in range(n):
            lse = math.log(sum(math.exp(cos(q[i], refs[r][1]) / T) for r in range(len(refs)) if r != i))
            vals += [lse - cos(q[i], refs[p][1]) / T for p in P[i]]
        return float(np.mean(vals)) if vals else 0.0
    hn = [min(dist(q[i], refs[r][1]) for r in N[i]) for i in range(n)]
    if kind == "batch-hard":
        return float(np.mean([max(0.0, margin + max(dist(q[i], refs[p][1]) for p in P[i]) - hn[i]) for i in range(n)]))
    vals = [max(0.0, margin + dist(q[i], q[j]) - min(hn[i], hn[j])) for i in range(n) for j in P[i] if j < n]
    return float(np.mean(vals))


def run_reference(kind, batches, M, start, margin=None, validate_at=()):
    """Losses and final memory (oldest first) of the XBM recipe on a list of (labels, x) batches."""
    queue = collections.deque(maxlen=M)
    losses, step = [], 0
    for t, (y, x) in enumerate(batches):
        training = t not in validate_at
        yl = y + step * len(y)
        active = step >= start
        refs = list(zip(yl, x.astype(np.float64))) + (list(queue) if active else [])
        losses.append(ref_loss(kind, yl, x.astype(np.float64), refs, margin))
        if training:
            if active:
                queue.extend(zip(yl, x.astype(np.float64)))
            step += 1
    feats = np.array([v for _, v in queue]) if queue else np.zeros((0, batches[0][1].shape[1]))
    return losses, feats, np.array([lab for lab, _ in queue], np.int64)


def batches(n_steps, S=6, K=2, D=8, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(3 * S, D))  # tracks recur across batches: memory entries are near, hard negatives
    out = []
    for _ in range(n_steps):
        ids = rng.choice(len(base), S, replace=False)
        x = np.repeat(base[ids], K, axis=0) + 0.3 * rng.normal(size=(S * K, D))
        out.append((np.repeat(np.arange(S), K).astype(np.int32), unit(x).astype(np.float32)))
    return out


@pytest.mark.parametrize("kind", L.xbm.KINDS)
def test_loss_and_memory_match_numpy_reference(kind):
    bs = batches(7)
    M, start = 30, 2  # 30 is not a multiple of the batch (12): the ring wraps mid-batch
    want, feats, labels = run_reference(kind, bs, M, start, validate_at=(4,))
    loss = L.XBMLoss(kind, memory_size=M, dim=8, start=start)
    got = []
    for t, (y, x) in enumerate(bs):
        loss.memory.training.assign(0 if t == 4 else 1)  # what XBMCallback does around validation
        got.append(float(loss(y, x)))
    assert got == pytest.approx(want, **TOL)
    mf, ml = loss.memory.contents()
    np.testing.assert_array_equal(ml, labels)
    np.testing.assert_allclose(mf, feats, atol=1e-6)
    assert len(ml) == M and int(loss.memory.steps.numpy()) == 6
    # the memory changed the loss: without it (start never reached) the later steps differ
    plain = L.XBMLoss(kind, memory_size=M, dim=8, start=100)
    base = [float(plain(y, x)) for y, x in bs]
    assert max(abs(a - b) for a, b in zip(got[3:], base[3:])) > 1e-3


def test_empty_memory_is_the_in_batch_loss():
    y, x = batches(1, S=8, K=3)[0]
    assert float(L.XBMLoss("batch-hard", 64, 8)(y, x)) == pytest.approx(float(L.BatchHardTripletLoss()(y, x)), **TOL)
    assert float(L.XBMLoss("hardnet", 64, 8)(y, x)) == pytest.approx(float(L.HardNetLoss()(y, x)), **TOL)
    assert float(L.XBMLoss("contrastive", 64, 8)(y, x)) == pytest.approx(float(L.irt_contrastive_loss(y, x)), **TOL)


def test_pair_stacked_vit_batches_are_pairs_as_classes():
    bs = batches(4, S=6, K=2)
    a = L.XBMLoss("infonce", memory_size=30, dim=8, start=1)
    b = L.XBMLoss("infonce", memory_size=30, dim=8, start=1)
    for y, x in bs:
        pairs = np.stack([x[0::2], x[1::2]], axis=1)  # (6, 2, 8): left views, right views
        flat = np.concatenate([x[0::2], x[1::2]])  # pair_labels' order: all lefts, then all rights
        assert float(a(np.zeros(6), pairs)) == pytest.approx(
            float(b(np.concatenate([np.arange(6), np.arange(6)]), flat)), **TOL
        )
    np.testing.assert_array_equal(a.memory.contents()[1], b.memory.contents()[1])


def test_global_labels_and_errors():
    bs = batches(3)
    loss = L.XBMLoss("batch-hard", 64, 8, batch_labels=False)
    for y, x in bs:
        loss(y, x)
    assert sorted(set(loss.memory.contents()[1])) == list(range(6))  # labels stored as given
    with pytest.raises(ValueError, match="at least one"):
        L.XBMLoss("hardnet", 8, 8)(*bs[0])
    with pytest.raises(ValueError, match="dim=4"):
        L.XBMLoss("hardnet", 64, 4)(*bs[0])
    with pytest.raises(ValueError, match="unknown XBM loss"):
        L.XBMLoss("arcface")


def _model(dim=8):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((12,))
    return keras.Model(inp, keras.layers.UnitNormalization()(keras.layers.Dense(dim)(inp)))


def test_round_trip_fit_validation_and_restore(tmp_path):
    from conftest import assert_loss_round_trip

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(48, 12)).astype(np.float32)
    labels = np.tile(np.repeat(np.arange(6), 2), 4).astype(np.int32)
    assert_loss_round_trip(L.XBMLoss("contrastive", memory_size=36, dim=12, start=100), labels[:12], feats[:12])
    assert_loss_round_trip(
        L.XBMLoss("hardnet", 36, 8, start=100), labels[:12], feats[:12], tmp_path=tmp_path, model=_model()
    )
    loss = L.XBMLoss("hardnet", memory_size=36, dim=8, start=1)
    model = _model()
    model.compile(optimizer="adam", loss=loss)
    cb = loss.callback(directory=tmp_path / "ck")
    w0 = [w.copy() for w in model.get_weights()]
    h = model.fit(
        feats,
        labels,
        batch_size=12,
        epochs=2,
        shuffle=False,
        verbose=0,
        validation_data=(feats[:12], labels[:12]),
        callbacks=[cb],
    )
    assert np.all(np.isfinite(h.history["loss"])) and "val_loss" in h.history
    assert any(np.abs(a - b).max() > 0 for a, b in zip(w0, model.get_weights()))
    mem = loss.memory
    assert int(mem.steps.numpy()) == 8 and int(mem.count.numpy()) == 36  # validation wrote nothing
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["xbm-epoch-0001.npz", "xbm-epoch-0002.npz"]
    fresh = L.XBMLoss("hardnet", memory_size=36, dim=8, start=1)
    assert L.restore_memory(fresh, tmp_path / "ck", 2)
    for a, b in zip(fresh.memory.contents(), mem.contents()):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.memory.steps.numpy()) == 8 and not L.restore_memory(fresh, tmp_path / "ck", 5)
    with pytest.raises(ValueError, match="shape"):
        L.restore_memory(L.XBMLoss("hardnet", 48, 8), tmp_path / "ck", 2)


SCRIPT = textwrap.dedent(r"""
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np, keras
from hpatches_kit.losses import XBMLoss
from hpatches_kit.training import descriptor_dataset, get_strategy

rng = np.random.default_rng(0)
tracks = rng.integers(0, 256, (40, 16, 4, 4), dtype=np.uint8)
S, K, steps = 8, 2, 4
ds = descriptor_dataset(tracks, S, K, seed=0, augment=False).take(steps)
xs, ys = zip(*[(a.numpy() / 255.0, b.numpy()) for a, b in ds])
x, y = np.concatenate(xs), np.concatenate(ys)

def build():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 1))
    h = keras.layers.Dense(8)(keras.layers.Flatten()(inp))
    return keras.Model(inp, keras.layers.UnitNormalization()(h))

out = {}
for kind in ("hardnet", "contrastive"):
    res = {}
    for name, strat in (("one", tf.distribute.get_strategy()), ("two", get_strategy("mirrored"))):
        with strat.scope():
            m = build()
            loss = XBMLoss(kind, memory_size=40, dim=8, start=1)
            m.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        losses = []
        for t in range(steps):  # one batch per call: the loss of each step (batch + memory) is reported
            h = m.fit(x[t * S * K:(t + 1) * S * K], y[t * S * K:(t + 1) * S * K], batch_size=S * K, epochs=1,
                      shuffle=False, verbose=0)
            losses.append(h.history["loss"][0])
        f, l = loss.memory.contents()
        res[name] = dict(losses=losses, w=[w.tolist() for w in m.get_weights()], feats=f.tolist(),
                         labels=l.tolist(), replicas=strat.num_replicas_in_sync)
    out[kind] = res
print("RESULT" + json.dumps(out))
""")


@pytest.fixture(scope="module")
def distributed():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    assert p.returncode == 0 and line, p.stderr[-3000:]
    return json.loads(line[0][6:])


@pytest.mark.parametrize("kind", ["hardnet", "contrastive"])
def test_two_replicas_equal_one_device(distributed, kind):
    one, two = distributed[kind]["one"], distributed[kind]["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5, abs=1e-6)
    for a, b in zip(one["w"], two["w"]):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)
    assert two["labels"] == one["labels"] and len(one["labels"]) == 40  # the global batch went into the memory
    np.testing.assert_allclose(np.array(two["feats"]), np.array(one["feats"]), atol=1e-5)
    # the memory was used: losses of later steps differ from step 0's in-batch-only regime, weights moved
    assert len(set(np.round(one["losses"], 5))) == len(one["losses"])


@pytest.mark.parametrize("kind", ["batch-hard", "hardnet"])
def test_trainer_memory_never_takes_a_redrawn_track_for_a_negative(kind):
    # the trainer's XBM (xbm_loss_for) with the pipelines' dataset-wide track ids: tracks recur across steps;
    # a memory entry of the query's own track is a positive (NumPy reference: labels compared as they are), and
    # a per-batch-id memory would have counted it as a negative
    from hpatches_kit.training.xbm import xbm_loss_for

    rng = np.random.default_rng(3)
    base = rng.normal(size=(12, 8))
    loss = xbm_loss_for(kind, 64, 0, dim=8)
    queue, redrawn = [], 0
    for _ in range(5):
        ids = rng.choice(12, 6, replace=False)
        y = np.repeat(ids, 2).astype(np.int32)
        x = unit(np.repeat(base[ids], 2, axis=0) + 0.3 * rng.normal(size=(12, 8))).astype(np.float32)
        redrawn += sum(lab in {q for q, _ in queue} for lab in ids)
        refs = list(zip(y, x.astype(np.float64))) + queue
        assert float(loss(y, x)) == pytest.approx(ref_loss(kind, y, x.astype(np.float64), refs), **TOL)
        queue = (queue + list(zip(y, x.astype(np.float64))))[-64:]
    assert redrawn > 0  # the case the test is about did occur
