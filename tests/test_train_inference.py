"""The inference path: what ``hpatches-train descriptor`` learns survives into the saved model used in inference
mode (batch-norm moving averages, no batch statistics) and matches held-out tracks.

Independent references: the saved model's inference output checked against a NumPy forward pass that normalises with the layers' stored moving averages;
nearest-neighbour matching written as a loop.
"""

import argparse
import json

import keras
import numpy as np
import pytest
from conftest import write_dataset


def _views(n, p, rng):
    """(n, 16, p, p) uint8 tracks whose views differ by a per-view gain/offset, a 1-pixel shift and noise, so raw
    pixels (L2 on intensities) are a weak descriptor while a patch-normalising network can learn invariance."""
    import cv2

    base = np.stack(
        [cv2.GaussianBlur(b, (0, 0), 1.2) for b in rng.normal(128, 60, (n, p + 4, p + 4)).astype(np.float32)]
    )
    out = np.empty((n, 16, p, p), np.float32)
    for i in range(n):
        for v in range(16):
            dy, dx = rng.integers(1, 4, 2)
            crop = base[i, dy : dy + p, dx : dx + p]
            out[i, v] = rng.uniform(0.4, 1.6) * (crop - 128) + 128 + rng.uniform(-70, 70) + rng.normal(0, 10, (p, p))
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(3)
    names = ["i_a", "v_b", "i_c", "v_d", "i_e", "v_f"]
    seqs = {n: _views(c, 32, rng) for n, c in zip(names, [40, 40, 40, 40, 24, 24])}
    root = write_dataset(tmp_path_factory.mktemp("inf") / "data", seqs)
    (root / "splits.json").write_text(json.dumps({"a": {"train": names[:4], "test": names[4:]}}))
    out = tmp_path_factory.mktemp("inf") / "run"
    from hpatches_kit.cli import train_descriptor

    p = argparse.ArgumentParser()
    train_descriptor.configure(p)
    argv = [
        "--data",
        str(root),
        "--batch-size",
        "32",
        "--views",
        "2",
        "--steps-per-epoch",
        "100",
        "--epochs",
        "3",
        "--patch-size",
        "16",
        "--dim",
        "32",
        "--dropout",
        "0",
        "--lr",
        "0.003",
        "--out",
        str(out),
        "--verbose",
        "0",
        "--mixed-precision",
        "float32",
        "--collapse",
        "off",
        "--seed",
        "0",
    ]
    assert train_descriptor.run(p.parse_args(argv)) == 0
    return root, out


def _nn_matching(describe, tracks):
    """Loop reference: share of reference patches whose nearest (L2) view-k patch is their own track's, over
    the 15 other views."""
    ref = describe(tracks[:, 0]).astype(np.float64)
    hits = total = 0
    for v in range(1, 16):
        tgt = describe(tracks[:, v]).astype(np.float64)
        for i in range(len(tracks)):
            hits += int(np.argmin(((tgt - ref[i]) ** 2).sum(1)) == i)
            total += 1
    return hits / total


def test_bn_moving_averages_were_learned_and_are_used_at_inference(trained):
    """The saved model's inference output equals a forward pass that normalises with the stored moving averages
    (not batch statistics), and those averages moved far from their initial (0, 1): the inference path is
    the one that was trained."""
    root, out = trained
    from hpatches_kit.data import load_sequence

    model = keras.models.load_model(out / "model.keras")
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns
    for bn in bns:
        mean, var = (np.asarray(w) for w in (bn.moving_mean, bn.moving_variance))
        assert np.abs(mean).max() > 0.05 or np.abs(var - 1).max() > 0.05, bn.name  # moved from the init
    x = load_sequence(root / "i_e").tracks[:8, 0]
    x16 = keras.ops.convert_to_numpy(keras.ops.image.resize(x[..., None].astype("float32"), (16, 16)))
    # the output of the last BN, reproduced from its input with its moving averages (NumPy)
    bn = bns[-1]
    pre = keras.Model(model.inputs, bn.input)(x16, training=False).numpy()
    post = keras.Model(model.inputs, bn.output)(x16, training=False).numpy()
    want = (pre - np.asarray(bn.moving_mean)) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    np.testing.assert_allclose(post, want, rtol=1e-4, atol=1e-4)
    # and a single patch described alone gives the same descriptor as in a batch (no batch statistics)
    d_batch = model.predict(x16, verbose=0)
    d_one = model.predict(x16[:1], verbose=0)
    np.testing.assert_allclose(d_one[0], d_batch[0], atol=1e-5)


def test_trained_model_in_inference_mode_matches_heldout_tracks(trained):
    """Held-out matching with the saved model through the evaluation describer (predict, inference mode)
    is far above an untrained twin's and chance."""
    root, out = trained
    from hpatches_kit.data import load_sequence
    from hpatches_kit.evaluation import keras_describer
    from hpatches_kit.models.l2net import l2net

    tracks = np.concatenate([load_sequence(root / n).tracks for n in ("i_e", "v_f")])
    trained_acc = _nn_matching(keras_describer(keras.models.load_model(out / "model.keras")), tracks)
    keras.utils.set_random_seed(0)
    fresh_acc = _nn_matching(keras_describer(l2net(input_size=16, dim=32, dropout=0.0)), tracks)
    m = json.loads((out / "metrics.json").read_text())
    assert trained_acc > fresh_acc + 0.15 and trained_acc > 0.5, (fresh_acc, trained_acc, m["heldout_nn_matching"])
