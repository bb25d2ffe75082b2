"""The model registry (hpatches_kit.models.registry), the --init architecture check, HardNet8's frozen PCA and
``import hpatches_kit`` registering the toolkit's Keras layers."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import REPO

from hpatches_kit import models
from hpatches_kit.data import DataError
from hpatches_kit.models import registry
from hpatches_kit.training.descriptor import compare_architectures, init_weights


def test_builtins_and_their_contract():
    assert registry.names("descriptor") == ("l2net", "hardnet", "hardnet8", "sosnet", "tfeat")
    assert set(registry.names("denoiser")) == {"shallow_unet", "deep_unet"}
    # the old dict and function are views of the registry
    assert list(models.MODELS) == list(registry.names()) and models.MODELS["l2net"] is registry.entry("l2net").builder
    assert models.get_model("shallow-unet", input_size=16).output_shape == (None, 16, 16, 1)
    for name in ("hardnet", "hardnet8", "sosnet", "tfeat"):
        e = registry.entry(name)
        assert (e.input_size, e.dim, e.input_range) == (32, 128, (0, 255)) and e.normalisation
        net = registry.build_descriptor(name)
        assert net.input_shape == (None, 32, 32, 1) and net.output_shape == (None, 128) and net.name == name
        # the ports take grey levels in [0, 255] and rescale themselves (x / 255 first)
        assert isinstance(net.layers[1], keras.layers.Rescaling) and net.layers[1].scale == pytest.approx(1 / 255)
    assert registry.entry("tfeat").normalised is False and registry.entry("sosnet").normalised is True
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    for name in ("hardnet", "hardnet8", "sosnet", "l2net"):  # L2-normalised outputs have unit norm
        y = registry.build_descriptor(name)(x, training=False)
        np.testing.assert_allclose(np.linalg.norm(np.asarray(y), axis=1), 1.0, rtol=1e-5)


def test_contract_errors_name_the_flags():
    with pytest.raises(ValueError, match=r"--model hardnet8 takes 32x32 patches only: use --patch-size 32, not 64"):
        registry.build_descriptor("hardnet8", input_size=64)
    with pytest.raises(ValueError, match=r"--model sosnet outputs 128-d descriptors: use --dim 128, not 64"):
        registry.build_descriptor("sosnet", dim=64)
    with pytest.raises(ValueError, match=r"--model l2net needs a --patch-size that is a positive multiple of 4"):
        registry.build_descriptor("l2net", input_size=30)
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; expected one of l2net, hardnet"):
        registry.entry("resnet")
    with pytest.raises(ValueError, match="is a denoiser"):
        registry.build_descriptor("shallow_unet")


def _tiny(input_size=32, dim=16):
    x = keras.Input((input_size, input_size, 1))
    y = keras.layers.Dense(dim)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(x)))
    return keras.Model(x, y, name="tiny")


def test_register_reference_and_built_model_check():
    registry.register("tiny-test", _tiny, normalised=False)
    try:
        assert "tiny_test" in registry.names("descriptor")
        assert registry.build_descriptor("tiny-test", input_size=8, dim=4).output_shape == (None, 4)
        with pytest.raises(ValueError, match="already registered"):
            registry.register("tiny_test", _tiny)
        with pytest.raises(ValueError, match="built-in"):
            registry.unregister("l2net")
    finally:
        registry.unregister("tiny-test")
    assert "tiny_test" not in registry.names()
    # MODULE:FUNCTION: resolved on the fly; a builder that ignores dim is caught on the built model
    assert registry.build_descriptor("test_models_registry:_tiny", input_size=8, dim=4).output_shape == (None, 4)
    with pytest.raises(
        ValueError,
        match=r"outputs descriptors of shape \(16,\), not \(128,\) as --dim 128 asks "
        r"\(set --dim 16\)",
    ):
        registry.build_descriptor("test_models_registry:_fixed16", input_size=8, dim=128)
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        registry.entry("test_models_registry:nope")


def _fixed16(input_size=32):
    return _tiny(input_size, 16)


def test_hardnet8_pca_is_a_fixed_buffer(tmp_path):
    """PyTorch's HardNet8 keeps the PCA (mean, components) as buffers: a training step must not move them."""
    net = registry.build_descriptor("hardnet8")
    pca = net.get_layer("pca")
    assert pca.trainable is False
    assert not any(w is pca.kernel or w is pca.bias for w in net.trainable_weights)
    k = np.asarray(pca.kernel)
    np.testing.assert_allclose(k.T @ k, np.eye(128), atol=1e-5)  # a random orthonormal projection from scratch
    before = [np.asarray(w).copy() for w in pca.weights]
    conv0 = np.asarray(net.get_layer("features_0").kernel).copy()
    net.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    net.fit(x, np.random.default_rng(1).normal(size=(4, 128)).astype("float32"), epochs=1, verbose=0)
    for a, b in zip(before, pca.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert not np.allclose(conv0, np.asarray(net.get_layer("features_0").kernel))  # the rest did train
    path = tmp_path / "h8.keras"
    net.save(path)
    assert keras.models.load_model(path).get_layer("pca").trainable is False


def test_init_checks_architecture_and_input_contract(tmp_path):
    src = registry.build_descriptor("l2net", input_size=32, dim=128)
    path = tmp_path / "l2net.keras"
    src.save(path)
    same = registry.build_descriptor("l2net", input_size=32, dim=128)
    assert compare_architectures(same, src) is None
    init_weights(same, path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(same(x, training=False), src(x, training=False), atol=1e-6)

    # the HardNet port has the same weight shapes but another input normalisation: refused, and said so
    port = registry.build_descriptor("hardnet")
    assert [w.shape for w in port.get_weights()] == [w.shape for w in src.get_weights()]
    with pytest.raises(
        DataError,
        match=r"l2net.keras: --init model does not match --model: its input normalisation "
        r"is PatchStandardize\(epsilon=1e-07, ddof=0\), this run's model's is "
        r"Rescaling\(scale=0.00392.*PatchStandardize\(epsilon=1e-06, ddof=1\)",
    ):
        init_weights(port, path)

    # another dimension: the first layer whose weights differ is named, with both shapes (no "64 vs 64" message)
    small = registry.build_descriptor("l2net", input_size=32, dim=64)
    msg = compare_architectures(small, src)
    assert msg == (
        "layer 19: 'conv_final' (Conv2D, weights (8, 8, 128, 128)) where this run's model has "
        "'conv_final' (Conv2D, weights (8, 8, 128, 64))"
    ), msg
    # a setting that changes the computation with equal weight shapes (PyTorch-style explicit padding vs "same")
    sos, hn = registry.build_descriptor("sosnet"), registry.build_descriptor("hardnet")
    assert "input normalisation" in compare_architectures(sos, hn)
    # another patch size
    assert compare_architectures(registry.build_descriptor("l2net", input_size=16), src).startswith(
        "its input is (32, 32, 1), this run's model takes (16, 16, 1)"
    )


def _python(code: str, **env):
    import os

    e = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=e, timeout=300)


def test_import_hpatches_kit_registers_layers_without_importing_keras():
    r = _python(
        "import sys, hpatches_kit; assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules; "
        "import keras; m = keras.models.load_model('models/l2net-synth-v2.keras'); print(m.name)"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "l2net"
    # Keras first, then the toolkit; and Keras imported by a toolkit module itself (the deferred registration)
    r = _python("import keras, hpatches_kit; print(keras.models.load_model('models/unet-shallow-embedded.keras').name)")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-2000:]
    r = _python(
        "from hpatches_kit.models.l2net import l2net; l2net(16); import json; import keras; "
        "print('hpatches_kit>InstanceNorm' in keras.saving.get_custom_objects())"
    )
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr[-2000:]


def test_import_modules_and_resolve(tmp_path, monkeypatch):
    from hpatches_kit.plugins import import_modules, resolve

    (tmp_path / "plugmod_x.py").write_text("VALUE = 41\ndef f():\n    return VALUE + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (mod,) = import_modules(["plugmod_x"])
    assert mod.VALUE == 41 and resolve("plugmod_x:f")() == 42
    (other,) = import_modules([str(tmp_path / "plugmod_x.py")])
    assert other.f() == 42
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_q'"):
        import_modules(["no_such_module_q"])
    with pytest.raises(ValueError, match="expected MODULE:FUNCTION"):
        resolve("plugmod_x")


@pytest.mark.parametrize("name", ["hardnet", "hardnet8", "sosnet", "tfeat"])
def test_ports_train_under_mixed_bfloat16(name):
    """Every port trains a step under the bf16 policy (the automatic precision on AMX CPUs, GPUs, TPUs) with float32
    descriptors out, as the trainer compiles it."""
    from hpatches_kit import losses

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    net = registry.build_descriptor(name)
    assert net.output.dtype == "float32"
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get("batch-hard", margin=1.0))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 1)).astype("float32")
    y = np.repeat(np.arange(4), 2)
    before = [np.asarray(w, dtype="float32").copy() for w in net.trainable_weights]
    loss = float(net.train_on_batch(x, y))
    assert np.isfinite(loss)
    assert any(not np.array_equal(b, np.asarray(w, dtype="float32")) for b, w in zip(before, net.trainable_weights))


def test_entry_point_plugins_join_the_registry(monkeypatch):
    """``[options.entry_points] hpatches_kit.models = tiny-ep = pkg.mod:build`` (a builder) or a ModelEntry."""
    import hpatches_kit.plugins as plugins

    groups = []
    ep = registry.ModelEntry("ignored", _tiny, input_size=8, dim=None, normalised=False)
    monkeypatch.setattr(
        plugins,
        "entry_point_objects",
        lambda group: groups.append(group) or {"tiny-ep": _tiny, "entry-ep": ep, "l2net": _tiny},
    )
    monkeypatch.setattr(registry.REGISTRY, "_plugins_loaded", False)
    try:
        names = registry.names()
        assert groups == ["hpatches_kit.models"] and names[-2:] == ("tiny_ep", "entry_ep")
        assert registry.entry("l2net").builder is not _tiny  # a plug-in never shadows a registered name
        assert registry.entry("entry-ep").input_size == 8 and registry.entry("entry-ep").name == "entry_ep"
        assert registry.get("tiny-ep", input_size=8, dim=3).output_shape == (None, 3)
    finally:
        registry.REGISTRY._entries.pop("tiny_ep", None)
        registry.REGISTRY._entries.pop("entry_ep", None)


def test_joint_start_with_a_registered_port(tmp_path):
    """The joint U-Net + descriptor takes any registry descriptor (what --joint --model sosnet builds)."""
    from hpatches_kit.models.joint import joint_parts
    from hpatches_kit.training.joint import load_joint_start

    desc = registry.build_descriptor("sosnet")
    joint = load_joint_start(REPO / "models" / "unet-shallow-embedded.keras", desc)
    den, d2 = joint_parts(joint)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    ref = desc(np.clip(den(x, training=False), 0, 255), training=False)
    np.testing.assert_allclose(joint(x, training=False), ref, atol=1e-5)
    path = tmp_path / "joint.keras"
    joint.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x, training=False), ref, atol=1e-5)
