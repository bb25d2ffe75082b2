"""Models: architecture against hand-counted parameters, custom layers against NumPy, .keras round trips."""

import keras
import numpy as np
import pytest

from hpatches_kit.models import L2Normalize, PatchStandardize, deep_unet, get_model, shallow_unet
from hpatches_kit.models.l2net import l2net


def _roundtrip(model, x, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert [(type(l).__name__, l.name) for l in loaded.layers] == [(type(l).__name__, l.name) for l in model.layers]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return loaded


def test_patch_standardize_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (5, 8, 8, 1)).astype(np.float32)
    ref = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-7)
    layer = PatchStandardize()
    np.testing.assert_allclose(np.asarray(layer(x)), ref, rtol=1e-4, atol=1e-4)
    assert PatchStandardize.from_config(layer.get_config()).epsilon == layer.epsilon


def test_l2normalize_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 10)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(L2Normalize()(x)), x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-5)


def test_l2net_architecture_matches_hardnet():
    m = l2net()
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    got = [(c.filters, c.kernel_size, c.strides, c.use_bias) for c in convs]
    want = [
        (32, (3, 3), (1, 1), False),
        (32, (3, 3), (1, 1), False),
        (64, (3, 3), (2, 2), False),
        (64, (3, 3), (1, 1), False),
        (128, (3, 3), (2, 2), False),
        (128, (3, 3), (1, 1), False),
        (128, (8, 8), (1, 1), False),
    ]
    assert got == want
    bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 7 and all(not b.center and not b.scale for b in bns)
    # hand count: conv kernels 9*(1*32+32*32+32*64+64*64+64*128+128*128) + 64*128*128; BN moving mean/var 2*channels
    kernels = 9 * (32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128) + 64 * 128 * 128
    bn = 2 * (32 + 32 + 64 + 64 + 128 + 128 + 128)
    assert m.count_params() == kernels + bn == 1335712
    assert any(isinstance(l, keras.layers.Dropout) and l.rate == 0.3 for l in m.layers)


def test_l2net_unit_norm_and_intensity_invariance(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (4, 32, 32, 1)).astype(np.float32)
    m = l2net(dim=64)
    d = m.predict(x, verbose=0)
    assert d.shape == (4, 64) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    # per-patch standardisation makes the descriptor invariant to an affine intensity change
    np.testing.assert_allclose(m.predict(0.5 * x + 40.0, verbose=0), d, atol=1e-4)
    _roundtrip(m, x, tmp_path)


def test_l2net_other_size_and_bad_args():
    assert l2net(input_size=64, dim=32, dropout=0.0).output_shape == (None, 32)
    with pytest.raises(ValueError, match="multiple of 4"):
        l2net(input_size=30)
    with pytest.raises(ValueError, match="unknown model"):
        get_model("resnet")


def test_shallow_unet_structure_and_roundtrip(tmp_path):
    m = shallow_unet()
    convs = [l.filters for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs == [16, 32, 64, 64, 1]
    # hand count: (in*9+1)*out for 1->16, 16->32, 32->64, (64+16)->64, 64->1
    assert m.count_params() == (9 + 1) * 16 + (16 * 9 + 1) * 32 + (32 * 9 + 1) * 64 + (80 * 9 + 1) * 64 + (64 * 9 + 1)
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    assert m.predict(x, verbose=0).shape == (2, 32, 32, 1)
    _roundtrip(m, x, tmp_path)


def test_unet_pixel_scaling_identity():
    """With the last conv set to pass the input-scaled skip through, the output equals the input: the
    model maps [0,255] to [0,255] (Rescaling 1/255 in, x255 out)."""
    m = shallow_unet()
    conv16 = m.get_layer("conv16")
    k = np.zeros(conv16.kernel.shape, np.float32)
    k[1, 1, 0, 0] = 1.0  # channel 0 of conv16 = scaled input (ReLU keeps it: inputs >= 0)
    conv16.set_weights([k, np.zeros(16, np.float32)])
    c64 = m.get_layer("conv64")
    k = np.zeros(c64.kernel.shape, np.float32)
    k[1, 1, 64, 0] = 1.0  # concat puts conv16's channels after the 64 upsampled ones
    c64.set_weights([k, np.zeros(64, np.float32)])
    c1 = m.get_layer("conv1")
    k = np.zeros(c1.kernel.shape, np.float32)
    k[1, 1, 0, 0] = 1.0
    c1.set_weights([k, np.zeros(1, np.float32)])
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x, verbose=0), x, rtol=1e-5, atol=1e-3)


def test_deep_unet_levels_and_roundtrip(tmp_path):
    m = deep_unet(input_size=32, base=8, depth=4)
    pools = [l for l in m.layers if isinstance(l, keras.layers.MaxPooling2D)]
    ups = [l for l in m.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert len(pools) == 3 and len(ups) == 3
    assert m.get_layer("bottom_conv1").filters == 64 and m.get_layer("bottom_conv1").output.shape[1] == 4
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in m.layers) == 14
    x = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    _roundtrip(m, x, tmp_path)
    with pytest.raises(ValueError, match="multiple of 8"):
        deep_unet(input_size=36, depth=4)


def test_deep_unet_bn_momentum_is_the_moving_average_rate(tmp_path):
    """One training-mode call moves each moving mean by (1 - momentum) of the way to the batch mean."""
    m = deep_unet(input_size=16, base=4, depth=2, bn_momentum=0.9)
    bns = [la for la in m.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(la.momentum == 0.9 for la in bns)
    back = _roundtrip(m, np.zeros((1, 16, 16, 1), np.float32), tmp_path)
    assert all(la.momentum == 0.9 for la in back.layers if isinstance(la, keras.layers.BatchNormalization))
    x = np.random.default_rng(8).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    probe = keras.Model(m.input, m.get_layer("down0_conv1").output)
    batch_mean = probe.predict(x, verbose=0).mean(axis=(0, 1, 2))
    m(x, training=True)
    np.testing.assert_allclose(m.get_layer("down0_bn1").moving_mean.numpy(), 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="bn_momentum"):
        deep_unet(input_size=16, depth=2, bn_momentum=1.0)


def test_deep_unet_is_residual():
    """clean = noisy + 255 * conv_out(features): the untrained model (zero-initialised head) is exactly the
    identity, and a constant bias b with a zero kernel shifts every pixel by 255 * b."""
    m = deep_unet(input_size=32, base=4, depth=3)
    head = m.get_layer("conv_out")
    k, b = head.get_weights()
    x = np.random.default_rng(6).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x, verbose=0), x)  # untrained: the zero-initialised head
    head.set_weights([np.random.default_rng(7).normal(size=k.shape).astype(np.float32), np.zeros_like(b)])
    assert np.abs(m.predict(x, verbose=0) - x).max() > 1.0  # the head does feed the output
    head.set_weights([np.zeros_like(k), np.full_like(b, 0.01)])
    np.testing.assert_allclose(m.predict(x, verbose=0), x + 2.55, rtol=1e-6, atol=1e-4)


def test_l2net_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = l2net(dim=16)
        assert m.get_layer("conv0").compute_dtype == "bfloat16"
        out = m(np.zeros((2, 32, 32, 1), np.float32) + np.arange(32, dtype=np.float32)[None, :, None, None])
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_deep_unet_default_bn_momentum_is_0_9():
    """The default lets the moving averages follow: one training-mode call moves each moving mean 10% of the
    way to the batch mean (NumPy mean of the first conv's output)."""
    from hpatches_kit.models.unet import DEEP_UNET_BN_MOMENTUM

    assert DEEP_UNET_BN_MOMENTUM == 0.9
    m = deep_unet(input_size=16, base=4, depth=2)
    bns = [la for la in m.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bns) == 6 and all(la.momentum == 0.9 for la in bns)
    x = np.random.default_rng(9).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    k = m.get_layer("down0_conv1").get_weights()[0]  # (3, 3, 1, 4), no bias; input scaled by 1/255, 'same'
    xp = np.pad(x[..., 0].astype(np.float64) / 255.0, ((0, 0), (1, 1), (1, 1)))
    conv = sum(xp[:, i : i + 16, j : j + 16, None] * k[i, j, 0] for i in range(3) for j in range(3))
    m(x, training=True)
    np.testing.assert_allclose(
        m.get_layer("down0_bn1").moving_mean.numpy(), 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
    )
