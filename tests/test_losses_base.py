"""``hpatches_kit.losses.base``: the one loss base (a function plus its keyword arguments, serialised once).

* A NEW loss written as one function plus one registry entry (the example of ``docs/losses.md`` and
  ``docs/ARCHITECTURE.md``; the function body is the one in the docs, checked below) works end to end:
  ``losses.get``, ``compile``, one ``fit`` step, ``.keras`` round trip, checked against a brute-force NumPy loop
  (value, and the SGD step against central differences of the loop), with track ids a float32 cast would merge.
* ``MetricLoss`` keeps each keyword argument once (attribute reads and writes go to ``fn_kwargs``), refuses
  reserved names; the wrappers of ``training.mining`` round-trip with the loss they hold.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import assert_loss_round_trip
from keras import ops

from hpatches_kit import losses
from hpatches_kit.losses.base import FunctionLoss, MetricLoss

# --- the docs example: one function ... ----------------------------------------------------------------------------
from hpatches_kit.losses.distances import flat_labels, label_masks, masked_min, pairwise_distance, safe_mean


@keras.saving.register_keras_serializable(package="hpatches_kit_tests")
def mean_positive_loss(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """Per anchor ``max(0, margin + mean_p d(a, p) - min_n d(a, n))``, averaged over the anchors that have a
    positive and a negative; 0 when none has."""
    dist = pairwise_distance(y_pred, distance_metric)
    pos, neg = label_masks(flat_labels(y_true))
    n_pos = ops.sum(ops.cast(pos, dist.dtype), axis=1)
    mean_pos = ops.sum(ops.where(pos, dist, ops.zeros_like(dist)), axis=1) / ops.maximum(n_pos, 1.0)
    valid = ops.logical_and(n_pos > 0, ops.any(neg, axis=1))
    return safe_mean(ops.relu(margin + mean_pos - masked_min(dist, neg)), valid)


# --- ... and one registry entry (in the package: a line of registry.REGISTRY's built-ins; here at run time) ---------------
ENTRY = losses.function_loss(mean_positive_loss, uses=("margin", "distance_metric"))


def reference(labels, emb, margin):
    """Brute-force float64 loop over anchors, positives and negatives."""
    labels, emb = np.asarray(labels).reshape(-1), np.asarray(emb, np.float64)
    total, count = 0.0, 0
    for a in range(len(labels)):
        d_pos = [np.linalg.norm(emb[a] - emb[p]) for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        d_neg = [np.linalg.norm(emb[a] - emb[n]) for n in range(len(labels)) if labels[n] != labels[a]]
        if d_pos and d_neg:
            total += max(0.0, margin + np.mean(d_pos) - min(d_neg))
            count += 1
    return total / count if count else 0.0


def test_docs_example_is_this_function():
    import inspect
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "losses.md").read_text()
    block = doc[doc.index("def mean_positive_loss(") :]
    block = block[: block.index("```")].rstrip()
    src = inspect.getsource(mean_positive_loss)
    assert src[src.index("def mean_positive_loss(") :].rstrip() == block


@pytest.fixture
def registered():
    losses.register("mean-positive", ENTRY)
    yield "mean-positive"
    losses.unregister("mean-positive")


def _batch(S=6, K=4, seed=0):
    rng = np.random.default_rng(seed)
    x = (np.repeat(rng.normal(size=(S, 6)), K, axis=0) + 0.7 * rng.normal(size=(S * K, 6))).astype(np.float32)
    small = losses.sk_labels(S, K, dtype="int64")
    big = losses.sk_labels(S, K, track_ids=2**24 + np.arange(S), dtype="int64")  # 2**24 + 1 == 2**24 in float32
    return x, small, big


def _model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    return keras.Model(inp, keras.layers.Dense(5)(inp))


def test_new_function_loss_end_to_end(registered, tmp_path):
    margin, lr = 0.8, 0.1
    loss = losses.get(registered, margin=margin, distance_metric="L2", views_per_track=4, temperature=0.2)
    assert registered in losses.names("descriptor") and registered not in losses.names("pair")
    assert type(loss) is FunctionLoss and loss.fn is mean_positive_loss
    assert loss.fn_kwargs == {"margin": margin, "distance_metric": "L2"} and loss.margin == margin
    assert loss.name == "mean_positive_loss" and not hasattr(loss, "views_per_track")  # settings it does not use

    x, small, big = _batch()
    # the function alone vs the loop, and what a float32 cast of the labels would have computed (merged tracks)
    assert float(loss(big, x)) == pytest.approx(reference(small, x, margin), rel=1e-5)
    assert abs(reference(big.astype(np.float32), x, margin) - reference(small, x, margin)) > 1e-3

    # one fit step (full batch, SGD): the reported loss is the loop's value at the initial weights, and the update is
    # -lr x the loop's gradient (central differences in float64 over every kernel and bias entry)
    model = _model()
    kernel, bias = (w.numpy().astype(np.float64) for w in model.trainable_weights)

    def loop_loss(k, b):
        return reference(small, x.astype(np.float64) @ k + b, margin)

    h = 1e-5
    grads = []
    for w in (kernel, bias):
        g = np.zeros_like(w)
        for idx in np.ndindex(*w.shape):
            e = np.zeros_like(w)
            e[idx] = h
            args_p = (kernel + e, bias) if w is kernel else (kernel, bias + e)
            args_m = (kernel - e, bias) if w is kernel else (kernel, bias - e)
            g[idx] = (loop_loss(*args_p) - loop_loss(*args_m)) / (2 * h)
        grads.append(g)
    assert max(np.abs(g).max() for g in grads) > 1e-2  # the step really moves the weights
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=loss)
    hist = model.fit(x, big, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(loop_loss(kernel, bias), rel=1e-5)
    for w0, w1, g in zip((kernel, bias), model.trainable_weights, grads):
        np.testing.assert_allclose((w0 - w1.numpy()) / lr, g, rtol=2e-3, atol=2e-4)

    # .keras round trip of the trained, compiled model: same class, config (fn included) and value
    rt = assert_loss_round_trip(loss, big, x, tmp_path, model=model)
    assert rt["config"]["fn"]["config"] == "hpatches_kit_tests>mean_positive_loss"
    assert rt["loaded"].loss.fn is mean_positive_loss
    assert rt["value"] == pytest.approx(reference(small, model.predict(x, verbose=0), margin), rel=1e-5)


def test_registry_entries_are_checked(registered):
    with pytest.raises(ValueError, match="already registered"):
        losses.register(registered, ENTRY)
    with pytest.raises(ValueError, match="already registered"):
        losses.register("batch-hard", ENTRY, replace=True)  # built-ins are never replaced
    with pytest.raises(ValueError, match="unknown loss kind"):
        losses.register("other", ENTRY, kind="triplet")
    with pytest.raises(ValueError, match="built-in"):
        losses.unregister("hardnet")
    losses.register(registered, ENTRY, kind="pair", replace=True)
    assert registered in losses.names("pair") and registered not in losses.names("descriptor")


def test_metric_loss_keeps_each_keyword_argument_once():
    x, small, _ = _batch()
    loss = losses.BatchHardTripletLoss(margin=0.5)
    assert isinstance(loss, MetricLoss) and loss.fn is losses.batch_hard_triplet_loss
    before = float(loss(small, x))
    loss.margin = 2.0  # the attribute is the stored keyword argument: the value and the config follow it
    assert loss.fn_kwargs["margin"] == 2.0 and loss.get_config()["margin"] == 2.0 and "margin" not in vars(loss)
    assert float(loss(small, x)) == pytest.approx(float(losses.batch_hard_triplet_loss(small, x, margin=2.0)))
    assert float(loss(small, x)) > before
    import copy

    twin = copy.copy(loss)
    twin.margin = 0.1  # a copy's arguments are its own
    assert loss.margin == 2.0 and twin.margin == 0.1 and twin.fn is loss.fn
    with pytest.raises(AttributeError, match="anchor_swap"):
        loss.anchor_swap  # noqa: B018 - not one of its arguments
    with pytest.raises(ValueError, match="reserved"):
        MetricLoss(mean_positive_loss, {"name": "x"})
    with pytest.raises(TypeError, match="callable"):
        MetricLoss("batch-hard")
    with pytest.raises(TypeError):
        losses.BatchHardTripletLoss(marginn=1.0)  # a misspelt argument is an error, not a silent keyword


def test_mining_wrappers_round_trip_with_the_loss_they_hold(tmp_path):
    from hpatches_kit.training.mining import CurriculumTripletLoss, GlobalBatchLoss, KoLeoRegularised, ReplicaLoss

    x, small, big = _batch()
    inner = CurriculumTripletLoss(margin=0.5, hard_weight=0.0, views_per_track=4)
    inner.hard_weight.assign(0.3)  # moved by the curriculum callback: the config saves the value now
    loss = GlobalBatchLoss(KoLeoRegularised(inner, weight=0.2, views_per_track=4))
    rt = assert_loss_round_trip(loss, big, x, tmp_path, model=_model())
    cfg = rt["config"]["loss"]["config"]
    assert cfg["loss"]["config"]["hard_weight"] == pytest.approx(0.3) and rt["config"]["global_batch"] is True
    loaded = rt["loaded"].loss
    assert type(loaded) is ReplicaLoss and type(loaded.loss) is KoLeoRegularised
    assert type(loaded.loss.loss) is CurriculumTripletLoss
    assert float(loaded.loss.loss.hard_weight.numpy()) == pytest.approx(0.3)
    # the value is the composition of the parts (one device: the global batch is this batch)
    emb = rt["model"].predict(x, verbose=0)
    want = (
        0.7 * float(losses.batch_all_triplet_loss(small, emb, 0.5, views_per_track=4))
        + 0.3 * float(losses.batch_hard_triplet_loss(small, emb, 0.5))
        + 0.2 * float(losses.koleo_loss(emb[::4]))
    )
    assert rt["value"] == pytest.approx(want, rel=1e-5)
