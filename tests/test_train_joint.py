"""The joint denoiser + descriptor (models/joint.py, training/joint.py, pipelines.joint_dataset).

References are independent of the code under test: a brute-force NumPy loop for the batch-hard triplet loss and
the MAE, a central finite difference for the gradient the triplet loss sends into the U-Net, and brute-force
look-ups of where every batch patch came from.
"""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_tracks

from hpatches_kit import losses
from hpatches_kit.data.errors import DataError
from hpatches_kit.evaluation import keras_describer
from hpatches_kit.models import shallow_unet
from hpatches_kit.models.joint import denoise_describe, is_joint, joint_parts, joint_training_model
from hpatches_kit.models.l2net import l2net
from hpatches_kit.training import descriptor_dataset
from hpatches_kit.training.joint import compile_joint, load_joint_start, train_joint
from hpatches_kit.training.pipelines import joint_dataset

REPO = Path(__file__).resolve().parents[1]
UNET = REPO / "models" / "unet-shallow-embedded.keras"  # a MAE-trained U-Net: its outputs are in [0, 255]


def _pairs(t, p, seed=0, sigma=20.0):
    rng = np.random.default_rng(seed)
    clean = make_tracks(t, p, rng)
    noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)
    return noisy, clean


def _small_joint(p=16, seed=0):
    keras.utils.set_random_seed(seed)
    return denoise_describe(shallow_unet(p), l2net(p, dim=16, dropout=0.0))


def _batch(noisy, clean, S, K):
    """S tracks x K views, track-major, from the first S tracks (views 0..K-1)."""
    x = noisy[:S, :K].reshape(S * K, *noisy.shape[2:], 1).astype(np.float32)
    c = clean[:S, :K].reshape(S * K, *clean.shape[2:], 1).astype(np.float32)
    return x, c, np.repeat(np.arange(S, dtype=np.int32), K)


def _batch_hard_loop(labels, emb, margin=1.0):
    """Batch-hard triplet loss by loops (float64): per anchor, hardest positive and hardest negative."""
    e = emb.astype(np.float64)
    vals = []
    for i in range(len(e)):
        dp = [np.linalg.norm(e[i] - e[j]) for j in range(len(e)) if j != i and labels[j] == labels[i]]
        dn = [np.linalg.norm(e[i] - e[j]) for j in range(len(e)) if labels[j] != labels[i]]
        vals.append(max(0.0, margin + max(dp) - min(dn)))
    return float(np.mean(vals))


# -- the model -------------------------------------------------------------------------------------------


def test_joint_model_round_trips_and_evaluates_on_raw_noisy_patches(tmp_path):
    joint = _small_joint()
    noisy, _ = _pairs(6, 16)
    x = noisy.reshape(-1, 16, 16, 1).astype(np.float32)
    path = tmp_path / "joint.keras"
    joint.save(path)
    back = keras.models.load_model(path, compile=False)
    assert is_joint(back) and [la.name for la in back.layers] == ["noisy", "denoiser", "denoised", "descriptor"]
    np.testing.assert_allclose(back.predict(x, verbose=0), joint.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # the pipeline by hand: clip(U-Net(x), 0, 255) into the descriptor
    den, desc = joint_parts(back)
    by_hand = desc.predict(np.clip(den.predict(x, verbose=0), 0, 255), verbose=0)
    np.testing.assert_allclose(back.predict(x, verbose=0), by_hand, rtol=1e-5, atol=1e-6)
    # what hpatches-eval --model joint.keras --noisy computes: the describer on the raw uint8 noisy patches
    d = keras_describer(str(path), precision="float32")(noisy.reshape(-1, 16, 16))
    np.testing.assert_allclose(d, by_hand, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="joint.keras.*joint denoiser \\+ descriptor"):
        keras_describer(str(path), denoiser=str(path))


def test_joint_training_twin_shares_weights_and_names_its_outputs():
    joint = _small_joint()
    tm = joint_training_model(joint)
    x = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    out = tm(x, training=False)
    assert set(out) == {"descriptor", "denoised"}
    np.testing.assert_allclose(out["descriptor"], joint(x, training=False), rtol=1e-6)
    np.testing.assert_allclose(out["denoised"], joint_parts(joint)[0](x, training=False), rtol=1e-6)
    assert {id(v) for v in tm.trainable_weights} == {id(v) for v in joint.trainable_weights}


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="descriptor takes"):
        denoise_describe(shallow_unet(16), l2net(32))
    with pytest.raises(DataError, match="missing.keras.*cannot load the denoiser"):
        load_joint_start(tmp_path / "missing.keras", l2net(16))
    with pytest.raises(ValueError, match="recon_weight"):
        compile_joint(_small_joint(), losses.get("batch-hard"), recon_weight=-1)


# -- the objective ---------------------------------------------------------------------------------------


def _loss_and_grads(tm, x, y):
    with tf.GradientTape() as tape:
        pred = tm(x, training=False)
        loss = tm.compute_loss(x=x, y=y, y_pred=pred, training=False)
    return float(loss), pred, tape.gradient(loss, tm.trainable_weights)


@pytest.mark.parametrize("w", [0.0, 0.25])
def test_recon_weight_matches_hand_computation(w):
    joint = _small_joint()
    noisy, clean = _pairs(8, 16)
    x, c, lab = _batch(noisy, clean, 8, 2)
    tm = compile_joint(joint, losses.get("batch-hard", margin=1.0), recon_weight=w, optimizer="sgd")
    y = {"descriptor": lab, "denoised": c}
    loss, pred, grads = _loss_and_grads(tm, x, y)
    trip = _batch_hard_loop(lab, pred["descriptor"].numpy())
    mae = float(np.abs(pred["denoised"].numpy().astype(np.float64) - c).mean())
    assert mae > 1.0  # a fresh U-Net: the reconstruction term is far from zero, so w shows
    np.testing.assert_allclose(loss, trip + w * mae, rtol=1e-5)
    # the gradient: total(w) - total(0) = w * d MAE (on the U-Net), and the MAE does not touch the descriptor
    tm0 = compile_joint(joint, losses.get("batch-hard", margin=1.0), recon_weight=0.0, optimizer="sgd")
    _, _, g0 = _loss_and_grads(tm0, x, y)
    with tf.GradientTape() as tape:
        m = tf.reduce_mean(tf.abs(tm(x, training=False)["denoised"] - c))
    gm = tape.gradient(m, tm.trainable_weights)
    den_ids = {id(v) for v in joint_parts(joint)[0].trainable_weights}
    for v, a, b, gr in zip(tm.trainable_weights, grads, g0, gm):
        if id(v) in den_ids:
            np.testing.assert_allclose(a.numpy() - b.numpy(), w * gr.numpy(), rtol=1e-4, atol=1e-6)
        else:
            assert gr is None or not np.any(gr.numpy())
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_triplet_loss_alone_sends_gradients_into_the_unet():
    keras.utils.set_random_seed(0)
    joint = load_joint_start(UNET, l2net(32, dim=32, dropout=0.0))
    noisy, clean = _pairs(8, 32, seed=2)
    x, c, lab = _batch(noisy, clean, 8, 2)
    tm = compile_joint(joint, losses.get("batch-hard", margin=1.0), recon_weight=0.0, optimizer="sgd")
    y = {"descriptor": lab, "denoised": c}
    loss, _, grads = _loss_and_grads(tm, x, y)
    assert loss > 0
    den = joint_parts(joint)[0]
    den_ids = {id(v): v for v in den.trainable_weights}
    g = {id(v): gr for v, gr in zip(tm.trainable_weights, grads) if id(v) in den_ids}
    assert len(g) == len(den.trainable_weights) == 10
    for k, gr in g.items():
        assert gr is not None and float(tf.norm(gr)) > 0, f"no gradient reaches {den_ids[k].path}"
    # and it is the loss's true derivative: central difference along a random direction of the U-Net weights
    rng = np.random.default_rng(3)
    vs = [den_ids[k] for k in g]
    base = [v.numpy().copy() for v in vs]
    dirs = [rng.normal(size=b.shape).astype(np.float32) * (np.abs(b).mean() + 1e-3) for b in base]
    analytic = sum(float(np.sum(g[id(v)].numpy() * d)) for v, d in zip(vs, dirs))
    eps, vals = 1e-3, []
    for sgn in (1, -1):
        for v, b, d in zip(vs, base, dirs):
            v.assign(b + sgn * eps * d)
        vals.append(_loss_and_grads(tm, x, y)[0])
    for v, b in zip(vs, base):
        v.assign(b)
    numeric = (vals[0] - vals[1]) / (2 * eps)
    assert abs(analytic) > 1e-4
    np.testing.assert_allclose(numeric, analytic, rtol=0.05)


def test_train_joint_trains_both_parts():
    noisy, clean = _pairs(16, 16, seed=4)
    joint = _small_joint(seed=1)
    den, desc = joint_parts(joint)
    before = [w.copy() for w in den.get_weights()], [w.copy() for w in desc.get_weights()]
    joint2, hist = train_joint(
        noisy, clean, joint, recon_weight=0.05, tracks_per_batch=4, views=2, epochs=2, steps_per_epoch=2, seed=0
    )
    assert joint2 is joint and len(hist["loss"]) == 2 and len(hist["epoch_wall_s"]) == 2
    np.testing.assert_allclose(
        hist["loss"], np.array(hist["descriptor_loss"]) + 0.05 * np.array(hist["denoised_loss"]), rtol=1e-5
    )
    for old, new in zip(before, (den.get_weights(), desc.get_weights())):
        assert any(not np.array_equal(a, b) for a, b in zip(old, new))


# -- the batches -----------------------------------------------------------------------------------------


def test_joint_batches_pair_each_noisy_patch_with_its_clean_twin():
    rng = np.random.default_rng(6)
    clean = rng.integers(0, 256, (20, 16, 8, 8), dtype=np.uint8)
    noisy = (255 - clean).astype(np.uint8)  # a bijection: every noisy patch names its clean twin
    S, K = 4, 3
    ds = joint_dataset(noisy, clean, S, K, seed=2, augment=False, repeat=False)
    spec = ds.element_spec
    assert spec[0].shape == (S * K, 8, 8, 1) and spec[1]["descriptor"].shape == (S * K,)
    assert spec[1]["denoised"].shape == (S * K, 8, 8, 1)
    ref = list(descriptor_dataset(noisy, S, K, seed=2, augment=False, repeat=False))
    got = list(ds)
    assert len(got) == len(ref) == 20 // S
    for (x, y), (xr, yr) in zip(got, ref):
        np.testing.assert_array_equal(x.numpy(), xr.numpy())  # the same stream as the noisy-only pipeline
        np.testing.assert_array_equal(y["descriptor"].numpy(), yr.numpy())
        np.testing.assert_array_equal(y["denoised"].numpy(), 255 - x.numpy())


def test_joint_batches_augment_both_twins_alike():
    rng = np.random.default_rng(7)
    clean = rng.integers(0, 256, (12, 16, 8, 8), dtype=np.uint8)
    got = next(iter(joint_dataset(clean, clean, 4, 2, seed=5, augment=True, geometric=True)))
    ref = next(iter(descriptor_dataset(clean, 4, 2, seed=5, augment=True, geometric=True)))
    np.testing.assert_allclose(got[1]["denoised"].numpy(), got[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(got[0].numpy(), ref[0].numpy(), atol=1e-4)
    # noisy = clean + delta: the output difference is the gain times the input difference (about the clean mean)
    delta = np.where(rng.random(clean.shape) < 0.5, -3, 3)
    noisy = np.clip(clean.astype(int) + delta, 0, 255).astype(np.uint8)
    x, y = next(iter(joint_dataset(noisy, clean, 4, 2, seed=5, augment=True, geometric=False)))
    x0, _ = next(iter(joint_dataset(noisy, clean, 4, 2, seed=5, augment=False)))
    c0 = next(iter(joint_dataset(noisy, clean, 4, 2, seed=5, augment=False)))[1]["denoised"]
    diff_in, diff_out = (x0 - c0).numpy(), (x - y["denoised"]).numpy()
    inside = (x.numpy() > 0) & (x.numpy() < 255) & (y["denoised"].numpy() > 0) & (y["denoised"].numpy() < 255)
    for i in range(len(x)):
        m = inside[i] & (diff_in[i] != 0)
        g = diff_out[i][m] / diff_in[i][m]
        assert 0.8 - 1e-4 <= g.min() and g.max() <= 1.2 + 1e-4 and np.ptp(g) < 1e-3  # one gain per patch


# -- hpatches-train descriptor --joint, then hpatches-eval --model on the noisy patches --------------------


def test_descriptor_cli_joint_end_to_end_resume_and_eval(tmp_path, capsys):
    import argparse
    import json

    from conftest import write_split_dataset

    from hpatches_kit.cli import eval as eval_cli
    from hpatches_kit.cli import train_descriptor

    data = write_split_dataset(
        tmp_path / "nh", {"i_a": 14, "v_b": 12, "i_c": 10, "v_d": 8}, 32, np.random.default_rng(0), 2, noise_sigma=20
    )
    out = tmp_path / "joint"
    base = [
        "--data",
        str(data),
        "--noisy",
        "--denoiser",
        str(UNET),
        "--joint",
        "--recon-weight",
        "0.1",
        "--batch-size",
        "16",
        "--steps-per-epoch",
        "2",
        "--dim",
        "32",
        "--out",
        str(out),
        "--verbose",
        "0",
        "--mixed-precision",
        "float32",
    ]

    def run(argv):
        p = argparse.ArgumentParser()
        train_descriptor.configure(p)
        return train_descriptor.run(p.parse_args(argv))

    assert run(base + ["--epochs", "1", "--no-eval"]) == 0
    capsys.readouterr()
    assert run(base + ["--epochs", "2", "--resume"]) == 0  # continues from the training twin's checkpoint
    assert "1 epochs done, optimizer step 2" in capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    h = m["history"]
    assert h["epoch"] == [1, 2] and all(len(h[k]) == 2 for k in ("loss", "descriptor_loss", "denoised_loss"))
    np.testing.assert_allclose(
        h["loss"], np.array(h["descriptor_loss"]) + 0.1 * np.array(h["denoised_loss"]), rtol=1e-4
    )
    assert (
        m["joint"]["recon_weight"] == 0.1 and m["heldout_denoise"]["mae_denoised"] < m["heldout_denoise"]["mae_noisy"]
    )
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert is_joint(model) and model.output_shape == (None, 32)
    head = m["evaluation"]["headline"]
    assert set(head) == {"verification", "matching", "retrieval"}
    capsys.readouterr()
    # the saved model is one descriptor for hpatches-eval: raw noisy patches in, no --denoiser
    res_path = tmp_path / "res.json"
    assert (
        eval_cli.main(
            [
                "--task",
                "all",
                "--data",
                str(data),
                "--model",
                str(out / "model.keras"),
                "--noisy",
                "--json",
                str(res_path),
            ]
        )
        == 0
    )
    res = json.loads(res_path.read_text())
    assert all(np.isfinite(res[t]["headline"]["value"]) for t in head)


def test_joint_options_are_checked_before_any_work(tmp_path):
    from hpatches_kit.training.descriptor import DescriptorOptions, check_options, train_descriptor
    from hpatches_kit.training.joint_run import train_joint_descriptor

    with pytest.raises(ValueError, match="--joint .* needs --noisy and --denoiser"):
        check_options(DescriptorOptions(joint=True, noisy=True))
    with pytest.raises(ValueError, match="--recon-weight applies to --joint"):
        check_options(DescriptorOptions(recon_weight=0.1))
    with pytest.raises(ValueError, match="--recon-weight must be >= 0"):
        check_options(DescriptorOptions(joint=True, noisy=True, denoiser="u.keras", recon_weight=-1.0))
    o = DescriptorOptions(joint=True, noisy=True, denoiser=str(tmp_path / "nope.keras"), out=str(tmp_path / "r"))
    with pytest.raises(ValueError, match="joint_run"):
        train_descriptor(o)
    with pytest.raises(ValueError, match="do not ask for --joint"):
        train_joint_descriptor(DescriptorOptions())


# -- the U-Net's own learning rate (training/joint.unet_lr_optimizer) --------------------------------------------


def _numpy_adam(w, grads, lrs, b1=0.9, b2=0.999, eps=1e-7):
    """Keras' Adam by hand (float64): step t uses lr ``lrs[t]`` and bias corrections of step t + 1."""
    w, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    for t, (g, lr) in enumerate(zip(grads, lrs)):
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        alpha = lr * np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        w -= m * alpha / (np.sqrt(v) + eps)
    return w


def test_unet_lr_optimizer_scales_and_warms_up_the_unet_only():
    """Three steps with fixed gradients equal a NumPy Adam whose U-Net learning rate is
    lr * 0.1 * min(1, (t + 1) / 4) and whose descriptor learning rate is lr."""
    from hpatches_kit.training.joint import unet_lr_optimizer

    model = _small_joint()
    den, _ = joint_parts(model)
    unet_ids = {id(v) for v in den.trainable_variables}
    variables = model.trainable_variables
    w0 = [v.numpy().copy() for v in variables]
    rng = np.random.default_rng(3)
    grads = [[rng.normal(size=v.shape).astype(np.float32) for v in variables] for _ in range(3)]
    lr = 1e-2
    opt = unet_lr_optimizer(model, lr, unet_lr_scale=0.1, unet_warmup_steps=4)
    for g in grads:
        opt.apply([tf.constant(x) for x in g], variables)
    for i, v in enumerate(variables):
        lrs = [lr * 0.1 * min(1.0, (t + 1) / 4) if id(v) in unet_ids else lr for t in range(3)]
        want = _numpy_adam(w0[i], [g[i] for g in grads], lrs)
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-4, atol=1e-6, err_msg=v.path)
    assert any(id(v) in unet_ids for v in variables) and any(id(v) not in unet_ids for v in variables)
    with pytest.raises(ValueError, match="unet_lr_scale"):
        unet_lr_optimizer(model, lr, unet_lr_scale=-1.0)
    with pytest.raises(ValueError, match="unet_warmup_steps"):
        unet_lr_optimizer(model, lr, unet_warmup_steps=-1)


def test_train_joint_unet_lr_scale_zero_freezes_the_unet_in_fit():
    """Through train_joint's compiled fit: scale 0 leaves every U-Net weight as it was while the descriptor
    trains; the default (scale 1) moves the U-Net."""
    noisy, clean = _pairs(24, 16)
    model = _small_joint()
    den, desc = joint_parts(model)
    u0 = [w.copy() for w in den.get_weights()]
    d0 = [w.copy() for w in desc.get_weights()]
    train_joint(
        noisy,
        clean,
        model,
        tracks_per_batch=8,
        views=2,
        epochs=1,
        steps_per_epoch=2,
        recon_weight=0.1,
        unet_lr_scale=0.0,
        unet_warmup_steps=3,
    )
    for a, b in zip(u0, den.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(d0, desc.get_weights()))
    model2 = _small_joint()
    train_joint(noisy, clean, model2, tracks_per_batch=8, views=2, epochs=1, steps_per_epoch=2, recon_weight=0.1)
    assert any(not np.allclose(a, b) for a, b in zip(u0, joint_parts(model2)[0].get_weights()))
