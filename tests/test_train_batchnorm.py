"""Batch-norm re-estimation (training/batchnorm.py) against NumPy statistics over the same data."""

import keras
import numpy as np
import pytest

from hpatches_kit.models.layers import FusedBatchNorm
from hpatches_kit.training.batchnorm import batch_norm_layers, reestimate_batch_norm


def _model(seed=0):
    """Nested: outer(inner(x)); inner = Dense(5) -> FusedBatchNorm -> ReLU -> Dropout(0.5) -> Dense(3) -> BN."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,))
    x = keras.layers.Dense(5, name="d1")(inp)
    x = FusedBatchNorm(momentum=0.99, name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Dense(3, name="d2")(x)
    out = keras.layers.BatchNormalization(name="bn2")(x)
    inner = keras.Model(inp, out, name="inner")
    i2 = keras.Input((4,))
    return keras.Model(i2, inner(i2)), inner


def _reference(inner, batches):
    """NumPy: bn1's inputs over all batches; bn2's inputs with bn1 normalising each batch by its own (biased)
    statistics, as in training, and no dropout; population mean and biased variance over everything."""
    W1, b1 = inner.get_layer("d1").get_weights()
    g1, be1 = inner.get_layer("bn1").get_weights()[:2]
    eps1 = inner.get_layer("bn1").epsilon
    W2, b2 = inner.get_layer("d2").get_weights()
    h1s, h2s = [], []
    for x in batches:
        h1 = x.astype(np.float64) @ W1 + b1
        n1 = (h1 - h1.mean(0)) / np.sqrt(h1.var(0) + eps1) * g1 + be1
        h2 = np.maximum(n1, 0) @ W2 + b2
        h1s.append(h1)
        h2s.append(h2)
    h1, h2 = np.concatenate(h1s), np.concatenate(h2s)
    return {"bn1": (h1.mean(0), h1.var(0)), "bn2": (h2.mean(0), h2.var(0))}


def test_reestimated_statistics_equal_numpy_statistics_of_the_data():
    m, inner = _model()
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (70, 4)).astype(np.float32)
    batches = [x[:32], x[32:64], x[64:]]  # uneven last batch: the statistics are over all 70 samples exactly
    trainable = [w.numpy().copy() for w in m.trainable_weights]
    stats = reestimate_batch_norm(m, batches)
    ref = _reference(inner, batches)
    for name in ("bn1", "bn2"):
        la = inner.get_layer(name)
        np.testing.assert_allclose(la.moving_mean.numpy(), ref[name][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(la.moving_variance.numpy(), ref[name][1], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats[name]["mean"], ref[name][0], rtol=1e-4, atol=1e-5)
        assert stats[name]["count"] == 70
    for a, b in zip(trainable, m.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())
    # the hooks are gone: inference mode uses the new moving statistics (bn1 by hand)
    probe = keras.Model(inner.input, inner.get_layer("bn1").output)
    W1, b1 = inner.get_layer("d1").get_weights()
    g1, be1 = inner.get_layer("bn1").get_weights()[:2]
    h1 = x @ W1 + b1
    want = (h1 - ref["bn1"][0]) / np.sqrt(ref["bn1"][1] + inner.get_layer("bn1").epsilon) * g1 + be1
    np.testing.assert_allclose(probe(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)
    assert "call" not in inner.get_layer("bn1").__dict__


def test_conv_batch_norm_statistics_are_per_channel_over_batch_and_positions():
    keras.utils.set_random_seed(2)
    inp = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(3, 3, padding="valid", name="c")
    out = FusedBatchNorm(name="bn")(conv(inp))
    m = keras.Model(inp, out)
    x = np.random.default_rng(3).uniform(0, 255, (10, 6, 6, 1)).astype(np.float32)
    reestimate_batch_norm(m, [x[:6], x[6:]])
    k, b = conv.get_weights()
    # NumPy valid convolution (cross-correlation) over every 3x3 window
    win = np.stack([x[:, i : i + 4, j : j + 4, 0] for i in range(3) for j in range(3)], -1).astype(np.float64)
    h = win @ k.reshape(9, 3) + b  # (10, 4, 4, 3)
    np.testing.assert_allclose(m.get_layer("bn").moving_mean.numpy(), h.reshape(-1, 3).mean(0), rtol=1e-4)
    np.testing.assert_allclose(m.get_layer("bn").moving_variance.numpy(), h.reshape(-1, 3).var(0), rtol=1e-3)


def test_batch_norm_layers_and_errors():
    m, inner = _model()
    assert [la.name for la in batch_norm_layers(m)] == ["bn1", "bn2"]
    before = [w.copy() for w in inner.get_layer("bn1").get_weights()]
    with pytest.raises(ValueError, match="no batches"):
        reestimate_batch_norm(m, [])
    for a, b in zip(before, inner.get_layer("bn1").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert reestimate_batch_norm(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), [np.ones((2, 2))]) == {}
