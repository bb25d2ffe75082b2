"""ViT + adapters: parameter counts (ViT-B/16 formula), identity init, freezing, .keras round trip, and
Hugging Face checkpoint loading checked end to end against an independent NumPy ViT forward pass."""

import json
import math

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file
from scipy.special import erf

from hpatches_kit.data import DataError
from hpatches_kit.models.vit import (
    BottleneckAdapter,
    expected_adapter_params,
    get_preset,
    load_hf_weights,
    parameter_report,
    vit_adapter,
)
from hpatches_kit.models.vit.hf import weight_map


def n_params(ws):
    return int(sum(np.prod(w.shape) for w in ws))


@pytest.mark.parametrize("m,want", [(8, 313_536), (16, 608_640), (32, 1_198_848), (64, 2_379_264), (128, 4_740_096)])
def test_vit_b16_trainable_count(m, want):
    model = vit_adapter("vit-b16", bottleneck=m)
    assert want == 36_888 * m + 18_432
    assert n_params(model.trainable_weights) == want
    rep = parameter_report(model)
    assert rep["trainable"] == rep["adapters"] == want
    assert rep["backbone"] == 85_798_656  # HF ViTModel ViT-B/16 without pooler
    assert rep["adapter_overhead"] == pytest.approx(want / 85_798_656)
    keras.backend.clear_session()


def test_trainable_options_counts():
    cfg = get_preset("vit-tiny")
    d, L, m = cfg.hidden_size, cfg.num_layers, 4
    base = expected_adapter_params(d, L, m)
    assert base == L * 2 * (2 * d * m + m + d)
    assert n_params(vit_adapter("vit-tiny", bottleneck=m).trainable_weights) == base
    ln = (2 * L + 1) * 2 * d  # two LayerNorms per block + final, gamma and beta
    assert n_params(vit_adapter("vit-tiny", bottleneck=m, train_layernorms=True).trainable_weights) == base + ln
    assert n_params(vit_adapter("vit-tiny", bottleneck=m, head=16).trainable_weights) == base + d * 16 + 16
    assert n_params(vit_adapter("vit-tiny", bottleneck=m, head=16, train_head=False).trainable_weights) == base
    assert n_params(vit_adapter("vit-tiny", bottleneck=0).trainable_weights) == 0


def _copy_backbone(src, dst):
    a, b = weight_map(src), weight_map(dst)
    for k, (var, _) in a.items():
        b[k][0].assign(var.numpy())


def test_adapters_start_as_identity():
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("f4")
    plain = vit_adapter("vit-tiny", bottleneck=0)
    with_ad = vit_adapter("vit-tiny", bottleneck=8)
    _copy_backbone(plain, with_ad)
    y0, y1 = plain.predict(x, verbose=0), with_ad.predict(x, verbose=0)
    assert np.abs(y0).mean() > 0.1
    np.testing.assert_allclose(y1, y0, atol=1e-3 * np.abs(y0).max())
    # and the adapters really are in the path: large adapter weights change the output
    for l in with_ad.get_layer("block_0")._layers:
        if isinstance(l, BottleneckAdapter):
            for v in (l.down.kernel, l.up.kernel):
                v.assign(np.random.default_rng(1).normal(0, 0.5, v.shape).astype("f4"))
    assert np.abs(with_ad.predict(x, verbose=0) - y0).max() > 1e-2


def test_adapter_formula():
    ad = BottleneckAdapter(3, activation="relu")
    x = np.random.default_rng(1).normal(size=(2, 5, 6)).astype("f4")
    ad.build(x.shape)
    rng = np.random.default_rng(2)
    Wd, bd, Wu, bu = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=(3, 6)), rng.normal(size=6)
    for v, w in [(ad.down.kernel, Wd), (ad.down.bias, bd), (ad.up.kernel, Wu), (ad.up.bias, bu)]:
        v.assign(w.astype("f4"))
    want = x + np.maximum(x @ Wd + bd, 0) @ Wu + bu
    np.testing.assert_allclose(np.asarray(ad(x)), want, rtol=1e-5, atol=1e-5)


def test_only_adapters_change_when_training():
    model = vit_adapter("vit-tiny", bottleneck=4, head=8)
    frozen = {v.path: v.numpy().copy() for v in model.non_trainable_weights}
    train = {v.path: v.numpy().copy() for v in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(
        rng.uniform(-1, 1, (8, 32, 32, 3)).astype("f4"),
        rng.normal(size=(8, 8)).astype("f4"),
        epochs=2,
        batch_size=4,
        verbose=0,
    )
    for v in model.non_trainable_weights:
        np.testing.assert_array_equal(v.numpy(), frozen[v.path])
    assert all(not np.array_equal(v.numpy(), train[v.path]) for v in model.trainable_weights)


@pytest.mark.parametrize(
    "kw",
    [
        dict(bottleneck=4),
        dict(bottleneck=4, train_layernorms=True, head=12, pooling="gem", normalize=True),
        dict(bottleneck=2, pooling="mean", adapter_activation="relu"),
    ],
)
def test_keras_round_trip(tmp_path, kw):
    model = vit_adapter("vit-tiny", **kw)
    for v in model.trainable_weights:  # move adapters away from init so the round trip is meaningful
        v.assign(v.numpy() + np.random.default_rng(0).normal(0, 0.1, v.shape).astype("f4"))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("f4")
    path = tmp_path / "m.keras"
    model.save(path)
    back = keras.models.load_model(path)
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert n_params(back.trainable_weights) == n_params(model.trainable_weights)
    assert parameter_report(back) == parameter_report(model)


# ---------------------------------------------------------------- Hugging Face checkpoint + NumPy reference


def make_hf_tensors(cfg, rng, prefix="vit.", extras=True):
    D, C, p, F = cfg.hidden_size, cfg.channels, cfg.patch_size, cfg.mlp_dim
    N = cfg.num_patches
    t = {}

    def r(*shape, s=0.2):
        return (rng.normal(size=shape) * s).astype("f4")

    t[prefix + "embeddings.cls_token"] = r(1, 1, D)
    t[prefix + "embeddings.position_embeddings"] = r(1, N + 1, D)
    t[prefix + "embeddings.patch_embeddings.projection.weight"] = r(D, C, p, p, s=0.1)
    t[prefix + "embeddings.patch_embeddings.projection.bias"] = r(D)
    for i in range(cfg.num_layers):
        q = f"{prefix}encoder.layer.{i}."
        for ln in ("layernorm_before", "layernorm_after"):
            t[q + ln + ".weight"] = 1 + r(D)
            t[q + ln + ".bias"] = r(D)
        for n in ("query", "key", "value"):
            t[q + f"attention.attention.{n}.weight"] = r(D, D)
            t[q + f"attention.attention.{n}.bias"] = r(D)
        t[q + "attention.output.dense.weight"], t[q + "attention.output.dense.bias"] = r(D, D), r(D)
        t[q + "intermediate.dense.weight"], t[q + "intermediate.dense.bias"] = r(F, D), r(F)
        t[q + "output.dense.weight"], t[q + "output.dense.bias"] = r(D, F), r(D)
    t[prefix + "layernorm.weight"], t[prefix + "layernorm.bias"] = 1 + r(D), r(D)
    if extras:
        t["classifier.weight"], t["classifier.bias"] = r(10, D), r(10)
    return t


def np_layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def np_vit(images, t, cfg, prefix="vit."):
    """Straightforward NumPy ViT forward (Hugging Face ViTModel semantics), images NHWC -> CLS features."""
    D, p, H = cfg.hidden_size, cfg.patch_size, cfg.num_heads
    dh = D // H
    eps = cfg.layer_norm_eps
    g = cfg.image_size // p
    W = t[prefix + "embeddings.patch_embeddings.projection.weight"]  # (D, C, p, p)
    out = []
    for img in images.astype(np.float64):
        chw = img.transpose(2, 0, 1)
        toks = []
        for r in range(g):
            for c in range(g):
                patch = chw[:, r * p : (r + 1) * p, c * p : (c + 1) * p]
                toks.append(
                    np.tensordot(W, patch, axes=([1, 2, 3], [0, 1, 2]))
                    + t[prefix + "embeddings.patch_embeddings.projection.bias"]
                )
        x = np.concatenate([t[prefix + "embeddings.cls_token"][0], np.array(toks)], 0)
        x = x + t[prefix + "embeddings.position_embeddings"][0]
        for i in range(cfg.num_layers):
            q = f"{prefix}encoder.layer.{i}."

            def lin(name, v):
                return v @ t[q + name + ".weight"].T + t[q + name + ".bias"]

            h = np_layernorm(x, t[q + "layernorm_before.weight"], t[q + "layernorm_before.bias"], eps)
            Q, K, V = (lin(f"attention.attention.{n}", h) for n in ("query", "key", "value"))
            ctx = np.zeros_like(h)
            for hd in range(H):
                sl = slice(hd * dh, (hd + 1) * dh)
                s = Q[:, sl] @ K[:, sl].T / math.sqrt(dh)
                a = np.exp(s - s.max(1, keepdims=True))
                a /= a.sum(1, keepdims=True)
                ctx[:, sl] = a @ V[:, sl]
            x = x + lin("attention.output.dense", ctx)
            h = np_layernorm(x, t[q + "layernorm_after.weight"], t[q + "layernorm_after.bias"], eps)
            u = lin("intermediate.dense", h)
            u = 0.5 * u * (1 + erf(u / math.sqrt(2)))
            x = x + lin("output.dense", u)
        x = np_layernorm(x, t[prefix + "layernorm.weight"], t[prefix + "layernorm.bias"], eps)
        out.append(x[0])
    return np.array(out)


@pytest.fixture
def tiny_ckpt(tmp_path):
    cfg = get_preset("vit-tiny")
    tensors = make_hf_tensors(cfg, np.random.default_rng(7))
    path = tmp_path / "ckpt" / "model.safetensors"
    path.parent.mkdir()
    save_file(tensors, str(path))
    (path.parent / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": cfg.hidden_size,
                "num_hidden_layers": cfg.num_layers,
                "num_attention_heads": cfg.num_heads,
                "intermediate_size": cfg.mlp_dim,
                "patch_size": cfg.patch_size,
                "image_size": cfg.image_size,
                "num_channels": 3,
                "layer_norm_eps": 1e-12,
                "hidden_act": "gelu",
            }
        )
    )
    return cfg, tensors, path


def test_hf_checkpoint_matches_numpy_vit(tiny_ckpt, tmp_path):
    cfg, tensors, path = tiny_ckpt
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("f4")
    want = np_vit(x, tensors, cfg)
    for src in (path, path.parent):  # file or folder (with config.json check)
        model = vit_adapter("vit-tiny", bottleneck=0, weights=src)
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-4, atol=1e-4)
    info = load_hf_weights(model, path)
    assert info["loaded"] == len(tensors) - 2 and info["ignored"] == ["classifier.bias", "classifier.weight"]
    # with (near-identity) adapters the loaded model still reproduces the checkpoint's function
    ad = vit_adapter("vit-tiny", bottleneck=4, weights=path)
    np.testing.assert_allclose(ad.predict(x, verbose=0), want, atol=5e-3)
    # ViTModel naming (no "vit." prefix, with pooler) and a sharded folder
    bare = make_hf_tensors(cfg, np.random.default_rng(8), prefix="", extras=False)
    bare["pooler.dense.weight"] = np.zeros((cfg.hidden_size, cfg.hidden_size), "f4")
    shard = tmp_path / "sharded"
    shard.mkdir()
    keys = sorted(bare)
    save_file({k: bare[k] for k in keys[:10]}, str(shard / "model-00001-of-00002.safetensors"))
    save_file({k: bare[k] for k in keys[10:]}, str(shard / "model-00002-of-00002.safetensors"))
    (shard / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    k: ("model-00001-of-00002.safetensors" if i < 10 else "model-00002-of-00002.safetensors")
                    for i, k in enumerate(keys)
                }
            }
        )
    )
    m2 = vit_adapter("vit-tiny", bottleneck=0, weights=shard)
    np.testing.assert_allclose(m2.predict(x, verbose=0), np_vit(x, bare, cfg, prefix=""), rtol=1e-4, atol=1e-4)


def _write(tmp_path, tensors, name):
    p = tmp_path / name
    save_file(tensors, str(p))
    return p


def test_hf_checkpoint_errors_are_loud(tiny_ckpt, tmp_path):
    cfg, tensors, _ = tiny_ckpt
    model = vit_adapter("vit-tiny", bottleneck=2)
    before = [v.numpy().copy() for v in model.weights]
    t = dict(tensors)
    del t["vit.encoder.layer.1.attention.attention.key.bias"]
    with pytest.raises(DataError, match=r"missing.*encoder\.layer\.1\.attention\.attention\.key\.bias"):
        load_hf_weights(model, _write(tmp_path, t, "missing.safetensors"))
    t = dict(tensors, **{"vit.encoder.layer.2.output.dense.weight": np.zeros((4, 4), "f4")})
    with pytest.raises(DataError, match=r"unexpected.*encoder\.layer\.2\.output\.dense\.weight"):
        load_hf_weights(model, _write(tmp_path, t, "unexpected.safetensors"))
    t = dict(tensors, **{"vit.encoder.layer.0.intermediate.dense.weight": np.zeros((32, 64), "f4")})
    with pytest.raises(DataError, match=r"intermediate\.dense\.weight: shape \(32, 64\), model expects \(64, 32\)"):
        load_hf_weights(model, _write(tmp_path, t, "shape.safetensors"))
    wrong_pos = dict(tensors, **{"vit.embeddings.position_embeddings": np.zeros((1, 5, 32), "f4")})
    with pytest.raises(DataError, match=r"position_embeddings: shape \(1, 5, 32\), model expects \(1, 17, 32\)"):
        load_hf_weights(model, _write(tmp_path, wrong_pos, "pos.safetensors"))
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="corrupt.safetensors: cannot read"):
        load_hf_weights(model, bad)
    with pytest.raises(DataError, match="checkpoint not found"):
        load_hf_weights(model, tmp_path / "nope.safetensors")
    # a failed load leaves the model untouched
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)
    # config.json with another head count is refused
    (tmp_path / "ckpt" / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "patch_size": 8,
                "image_size": 32,
            }
        )
    )
    with pytest.raises(DataError, match="4 attention heads, model has 2"):
        load_hf_weights(model, tmp_path / "ckpt")


def test_pooling_modes_match_numpy():
    from hpatches_kit.models.vit import TokenPooling

    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("f4")
    np.testing.assert_allclose(np.asarray(TokenPooling("cls")(x)), x[:, 0])
    np.testing.assert_allclose(np.asarray(TokenPooling("mean")(x)), x[:, 1:].mean(1), rtol=1e-6)
    gem = (np.maximum(x[:, 1:], 1e-6) ** 3).mean(1) ** (1 / 3)
    np.testing.assert_allclose(np.asarray(TokenPooling("gem")(x)), gem, rtol=1e-5)
