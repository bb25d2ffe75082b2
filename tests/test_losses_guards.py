"""Loss guards: finite gradients at zero distance (coincident embeddings), NaN input visible in the loss
value (never a finite loss with a NaN gradient), and S x K label layout checked by the structured HardNet."""

import numpy as np
import pytest
import tensorflow as tf

from hpatches_kit.losses import (
    BatchHardTripletLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    hardnet_loss,
    irt_loss,
    koleo_loss,
    sk_labels,
    triplet_semihard_loss,
)
from hpatches_kit.training.mining import KoLeoRegularised


def _value_and_grad(fn, x):
    x = tf.Variable(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        v = fn(x)
    return float(v), tape.gradient(v, x).numpy()


def test_koleo_and_irt_gradients_finite_on_identical_embeddings():
    same = np.tile(np.array([[0.6, 0.8, 0.0]], np.float32), (6, 1))
    labels = sk_labels(3, 2)
    v, g = _value_and_grad(lambda x: koleo_loss(x), same)
    assert v == pytest.approx(-np.log(1e-8), rel=1e-6)  # every nearest neighbour at distance 0
    assert np.isfinite(g).all()
    v, g = _value_and_grad(lambda x: irt_loss(labels, x), same)
    assert np.isfinite(v) and np.isfinite(g).all()
    wrapped = KoLeoRegularised(BatchHardTripletLoss(), weight=0.1, views_per_track=2)
    v, g = _value_and_grad(lambda x: wrapped(labels, x), same)
    assert np.isfinite(v) and np.isfinite(g).all()
    _koleo_away_from_zero_matches_reference()  # the guard changes nothing away from zero distance


def _koleo_away_from_zero_matches_reference():
    """Against a numpy float64 reference (value) and central differences of it (gradient)."""
    x = np.random.default_rng(0).normal(size=(5, 4))

    def ref(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        d = np.linalg.norm(z[:, None] - z[None], axis=-1) + np.eye(len(z)) * 1e9
        return -np.mean(np.log(d.min(1) + 1e-8))

    v, g = _value_and_grad(lambda t: koleo_loss(t), x)
    assert v == pytest.approx(ref(x), rel=1e-5)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        num[idx] = (ref(x + e) - ref(x - e)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=2e-3, atol=2e-3)


def test_nan_input_gives_a_nan_loss():
    """batch-all drops the NaN rows from its value (finite loss, NaN gradient): now NaN, like the others."""
    losses = {
        "batch-all": lambda y, x: batch_all_triplet_loss(y, x, views_per_track=2),
        "batch-hard": lambda y, x: batch_hard_triplet_loss(y, x),
        "semi-hard": lambda y, x: triplet_semihard_loss(y, x, views_per_track=2),
        "hardnet": lambda y, x: hardnet_loss(y, x, views_per_track=2),
        "koleo": lambda y, x: koleo_loss(x),
        "irt": lambda y, x: irt_loss(y, x),
    }
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[3, 1] = np.nan
    values = {name: float(fn(sk_labels(4, 2), x)) for name, fn in losses.items()}
    assert all(np.isnan(v) for v in values.values()), values


def test_structured_hardnet_checks_the_label_layout():
    x = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    good = sk_labels(4, 2)
    assert np.isfinite(float(hardnet_loss(good, x, views_per_track=2)))
    for bad in (np.arange(8), np.array([0, 0, 1, 1, 0, 0, 2, 2]), np.array([0, 1, 0, 1, 2, 3, 2, 3])):
        with pytest.raises(ValueError, match="labels are not S x K track-major"):
            hardnet_loss(bad, x, views_per_track=2)
        traced = tf.function(lambda y, e: hardnet_loss(y, e, views_per_track=2))
        assert np.isnan(float(traced(tf.constant(bad), tf.constant(x))))
    assert np.isfinite(float(tf.function(lambda y, e: hardnet_loss(y, e, views_per_track=2))(good, x)))
