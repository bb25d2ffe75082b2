"""FusedBatchNorm (TensorFlow's fused batch-norm kernel behind keras.layers.BatchNormalization's interface):
outputs, gradients and moving statistics against a NumPy reference and Keras' own layer, fp32 and bf16,
serialisation, and the committed models' descriptors before/after conversion."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from hpatches_kit.models.l2net import l2net
from hpatches_kit.models.layers import FusedBatchNorm, with_fused_batch_norm

MODELS = Path(__file__).resolve().parents[1] / "models"


def np_bn_steps(xs, momentum, eps, gamma=None, beta=None):
    """NumPy reference, float64: per training step the output and the moving stats afterwards (Keras'
    semantics: biased batch variance, moving = moving * momentum + batch * (1 - momentum))."""
    c = xs[0].shape[-1]
    mm, mv = np.zeros(c), np.ones(c)
    g = np.ones(c) if gamma is None else gamma
    b = np.zeros(c) if beta is None else beta
    outs = []
    for x in xs:
        x = x.astype(np.float64).reshape(-1, c)
        mean = x.mean(0)
        var = ((x - mean) ** 2).mean(0)
        outs.append((x - mean) / np.sqrt(var + eps) * g + b)
        mm = mm * momentum + mean * (1 - momentum)
        mv = mv * momentum + var * (1 - momentum)
    return outs, mm, mv


def batches(n=3, shape=(12, 5, 5, 6), seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(0, 1, shape) * rng.uniform(0.5, 4, shape[-1]) + rng.normal(0, 3, shape[-1])).astype("float32")
        for _ in range(n)
    ]


@pytest.mark.parametrize("shape", [(12, 5, 5, 6), (40, 6)])
@pytest.mark.parametrize("affine", [False, True])
def test_training_and_inference_match_numpy(shape, affine):
    xs = batches(shape=shape)
    kw = dict(momentum=0.9, epsilon=1e-3, center=affine, scale=affine)
    layer = FusedBatchNorm(**kw)
    layer.build(shape)
    gamma = beta = None
    if affine:
        gamma = np.linspace(0.5, 2, shape[-1])
        beta = np.linspace(-1, 1, shape[-1])
        layer.gamma.assign(gamma.astype("float32"))
        layer.beta.assign(beta.astype("float32"))
    ref, mm, mv = np_bn_steps(xs, 0.9, 1e-3, gamma, beta)
    for x, r in zip(xs, ref):
        y = np.asarray(layer(x, training=True)).reshape(r.shape)
        np.testing.assert_allclose(y, r, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), mv, rtol=1e-5, atol=1e-6)
    # inference: the moving statistics
    x = xs[0]
    y = np.asarray(layer(x, training=False)).reshape(-1, shape[-1])
    r = (x.reshape(-1, shape[-1]) - mm) / np.sqrt(mv + 1e-3)
    if affine:
        r = r * gamma + beta
    np.testing.assert_allclose(y, r, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("affine", [False, True])
def test_gradients_match_keras_batchnorm(affine):
    x = tf.constant(batches(1)[0])
    w = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))
    kw = dict(center=affine, scale=affine)
    ref, fused = keras.layers.BatchNormalization(**kw), FusedBatchNorm(**kw)
    ref.build(x.shape)
    fused.build(x.shape)
    fused.set_weights(ref.get_weights())
    grads = []
    for layer in (ref, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * w) + tf.reduce_sum(layer(x, training=True) ** 3)
        grads.append(tape.gradient(loss, [x] + layer.trainable_weights))
    assert len(grads[0]) == len(grads[1]) == (3 if affine else 1)
    for a, b in zip(*grads):  # float32 sums of ~300 terms with cancellation: tolerance relative to the largest
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))


def test_gradient_matches_numpy_finite_difference():
    """Independent of Keras: d/dx of sum(w * bn(x)) by central differences in float64 NumPy."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 2, 2, 3)).astype("float32") * 2
    w = rng.normal(size=x.shape)
    layer = FusedBatchNorm(center=False, scale=False, epsilon=1e-3)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(layer(xt, training=True) * tf.constant(w, tf.float32))
    g = tape.gradient(loss, xt).numpy()

    def f(a):
        a = a.reshape(-1, 3)
        m = a.mean(0)
        v = ((a - m) ** 2).mean(0)
        return float(np.sum(((a - m) / np.sqrt(v + 1e-3)).reshape(x.shape) * w))

    num = np.zeros_like(g, dtype=np.float64)
    h = 1e-4
    x64 = x.astype(np.float64)
    for i in np.ndindex(x.shape):
        p, m = x64.copy(), x64.copy()
        p[i] += h
        m[i] -= h
        num[i] = (f(p) - f(m)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-3)


def test_bfloat16_inputs_match_float32_reference():
    xs = batches()
    xs16 = [tf.cast(x, tf.bfloat16) for x in xs]
    rounded = [tf.cast(x, tf.float32).numpy() for x in xs16]  # the values the kernel actually sees
    ref, mm, mv = np_bn_steps(rounded, 0.99, 1e-3)
    fused = FusedBatchNorm(center=False, scale=False, dtype="mixed_bfloat16")
    keras_bn = keras.layers.BatchNormalization(center=False, scale=False, dtype="mixed_bfloat16")
    for x, r in zip(xs16, ref):
        y = fused(x, training=True)
        assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
        yk = keras_bn(x, training=True)
        # bfloat16 output: 8 bits of mantissa, |y| up to ~4
        np.testing.assert_allclose(tf.cast(y, tf.float32).numpy().reshape(r.shape), r, atol=3e-2, rtol=1e-2)
        np.testing.assert_allclose(
            tf.cast(y, tf.float32).numpy(), tf.cast(yk, tf.float32).numpy(), atol=3e-2, rtol=1e-2
        )
    assert fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(fused.moving_mean.numpy(), mm, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_variance.numpy(), mv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_variance.numpy(), keras_bn.moving_variance.numpy(), rtol=1e-4)
    with tf.GradientTape() as tape:
        tape.watch(xs16[0])
        loss = tf.reduce_sum(tf.cast(fused(xs16[0], training=True), tf.float32) ** 3)
    g = tape.gradient(loss, xs16[0])
    assert g.dtype == tf.bfloat16 and np.isfinite(tf.cast(g, tf.float32).numpy()).all()


def test_non_trainable_layer_runs_in_inference_mode():
    x = batches(1)[0]
    layer = FusedBatchNorm(center=False, scale=False)
    layer.build(x.shape)
    layer.moving_mean.assign(np.full(6, 2.0, "float32"))
    layer.moving_variance.assign(np.full(6, 4.0, "float32"))
    layer.trainable = False
    y = np.asarray(layer(x, training=True))
    np.testing.assert_allclose(y, (x - 2.0) / np.sqrt(4.0 + 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), 2.0)


def test_fallback_for_other_axes_and_masks_matches_keras():
    x = batches(1, shape=(4, 5, 6))[0]  # rank 3: the parent's keras.ops code
    a, b = keras.layers.BatchNormalization(axis=1), FusedBatchNorm(axis=1)
    np.testing.assert_allclose(np.asarray(b(x, training=True)), np.asarray(a(x, training=True)), atol=1e-5)
    np.testing.assert_allclose(b.moving_variance.numpy(), a.moving_variance.numpy(), rtol=1e-6)


def test_l2net_fused_matches_plain_and_round_trips(tmp_path):
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 1)).astype("float32")
    fused, plain = l2net(dim=32), l2net(dim=32, fused_bn=False)
    assert any(type(layer) is FusedBatchNorm for layer in fused.layers)
    assert not any(isinstance(layer, FusedBatchNorm) for layer in plain.layers)
    plain.set_weights(fused.get_weights())
    # training mode without dropout noise: compare dropout-free copies
    f0, p0 = l2net(dim=32, dropout=0.0), l2net(dim=32, dropout=0.0, fused_bn=False)
    p0.set_weights(f0.get_weights())
    np.testing.assert_allclose(np.asarray(f0(x, training=True)), np.asarray(p0(x, training=True)), atol=1e-5)
    np.testing.assert_allclose(
        [w.numpy() for w in f0.non_trainable_weights][0],
        [w.numpy() for w in p0.non_trainable_weights][0],
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(np.asarray(f0(x)), np.asarray(p0(x)), atol=1e-5)
    cfg = FusedBatchNorm(center=False, scale=False, momentum=0.9, name="b").get_config()
    assert FusedBatchNorm.from_config(cfg).get_config() == cfg
    path = tmp_path / "m.keras"
    f0.save(path)
    back = keras.models.load_model(path)
    assert type(back.get_layer("bn0")) is FusedBatchNorm
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(f0(x)), atol=1e-6)


def test_l2net_mixed_bfloat16_trains():
    from hpatches_kit.losses import BatchHardTripletLoss

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = l2net(dim=16)
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BatchHardTripletLoss(1.0))
        rng = np.random.default_rng(0)
        base = rng.uniform(0, 255, (16, 32, 32, 1)).astype("float32")
        x = np.concatenate([base, base + rng.normal(0, 5, base.shape).astype("float32")])
        y = np.concatenate([np.arange(16), np.arange(16)]).astype("int32")
        losses = [float(m.train_on_batch(x, y)) for _ in range(8)]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["l2net-embedded.keras", "l2net-synth-v2.keras"])
def test_committed_models_give_same_descriptors_after_conversion(name):
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    model = keras.models.load_model(path)
    # l2net-synth-v2 was saved with Keras' BatchNormalization; l2net-embedded (retrained 2026-12-03) with
    # FusedBatchNorm already, where the conversion must change nothing
    plain = any(type(layer) is keras.layers.BatchNormalization for layer in model.layers)
    assert plain == (name == "l2net-synth-v2.keras"), [type(layer).__name__ for layer in model.layers]
    conv = with_fused_batch_norm(model)
    assert not any(type(layer) is keras.layers.BatchNormalization for layer in conv.layers)
    assert any(type(layer) is FusedBatchNorm for layer in conv.layers)
    size = model.input_shape[1]
    x = np.random.default_rng(0).uniform(0, 255, (64, size, size, 1)).astype("float32")
    a, b = np.asarray(model.predict(x, verbose=0)), np.asarray(conv.predict(x, verbose=0))
    np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.parametrize("shape,fused", [((4, 3, 3, 6), True), ((8, 6), True), ((4, 5, 6), False)])
def test_dispatch_uses_the_fused_kernel_where_it_can(shape, fused):
    layer = FusedBatchNorm(center=False, scale=False)
    layer.build(shape)
    for training in (True, False):
        graph = (
            tf.function(lambda x: layer(x, training=training))
            .get_concrete_function(tf.TensorSpec(shape, tf.float32))
            .graph
        )
        ops_ = {op.type for op in graph.get_operations()}
        assert ("FusedBatchNormV3" in ops_) == fused, ops_
