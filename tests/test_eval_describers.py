"""Baseline describers against direct OpenCV/NumPy computations, Keras describers (incl. .keras round trip and
a chained denoiser), descriptor computation and the official CSV folder layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hpatches_kit.data import TYPES, DataError, load_dataset
from hpatches_kit.evaluation import (
    compute_descriptors,
    get_baseline,
    keras_describer,
    read_descriptor_dir,
    write_descriptor_dir,
)


def _patches(n=6, p=65, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(128, 40, size=(n, p, p)).astype(np.float32)
    x = np.stack([cv2.GaussianBlur(a, (0, 0), 2.0) for a in x])
    return np.clip(x, 0, 255).astype(np.uint8)


def test_sift_is_opencv_sift_of_the_centre_keypoint():
    p = _patches()
    d = get_baseline("sift")(p)
    sift = cv2.SIFT_create()
    # exactly the official extract_opencv_sift.py: get_center_kp(PS) leaves OpenCV's default angle (-1)
    kp = cv2.KeyPoint()
    kp.pt = (65 / 2.0, 65 / 2.0)
    kp.size = 2 * (65 / 2.0) / 5.303
    assert kp.angle == -1
    upright = cv2.KeyPoint(32.5, 32.5, 65 / 5.303, 0.0)
    differs = False
    for i in range(len(p)):
        ref = sift.compute(p[i], [kp])[1][0]
        np.testing.assert_array_equal(d[i], ref)
        differs |= not np.array_equal(ref, sift.compute(p[i], [upright])[1][0])
    assert differs  # the angle matters: an angle-0 keypoint would not reproduce the official rows
    r = get_baseline("rootsift")(p)
    np.testing.assert_allclose(r, np.sqrt(d / d.sum(axis=1, keepdims=True)), rtol=1e-6)
    np.testing.assert_allclose((r**2).sum(axis=1), 1.0, rtol=1e-5)


def test_raw_is_standardised_pixels():
    p = _patches(p=32)
    p[0] = 77  # constant patch -> zeros, not NaN
    d = get_baseline("raw")(p)
    assert d.shape == (6, 1024) and d.dtype == np.float32
    np.testing.assert_array_equal(d[0], 0)
    x = p[1].reshape(-1).astype(np.float64)
    np.testing.assert_allclose(d[1], (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown baseline"):
        get_baseline("orb")


def _tiny_models(tmp_path):
    import keras

    inp = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(8, kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    model = keras.Model(inp, out, name="tinydesc")
    dinp = keras.Input((16, 16, 1))
    den = keras.Model(dinp, keras.layers.Rescaling(0.5)(dinp), name="halver")
    mp, dp = tmp_path / "desc.keras", tmp_path / "den.keras"
    model.save(mp)
    den.save(dp)
    return model, den, mp, dp


def test_keras_describer_resizes_and_chains_denoiser(tmp_path):
    model, den, mp, dp = _tiny_models(tmp_path)
    p = _patches(n=5)
    d = keras_describer(mp, batch_size=2, precision="float32")(p)  # loaded from .keras
    x = np.stack([cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA) for a in p]).astype(np.float32)
    np.testing.assert_allclose(d, model.predict(x[..., None], verbose=0), rtol=1e-5, atol=1e-5)
    d2 = keras_describer(model, denoiser=dp, precision="float32")(p)
    x16 = np.rint(np.stack([cv2.resize(a, (16, 16), interpolation=cv2.INTER_AREA) for a in p]).astype(np.float32) * 0.5)
    x32 = np.stack([cv2.resize(a, (32, 32), interpolation=cv2.INTER_LINEAR) for a in x16])
    np.testing.assert_allclose(d2, model.predict(x32[..., None], verbose=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="missing.keras: model file not found"):
        keras_describer(tmp_path / "missing.keras")


def test_compute_descriptors_and_csv_round_trip(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset, progress=False)
    descs = compute_descriptors(ds, get_baseline("raw"), progress=False)
    assert set(descs) == set(ds.names)
    s = ds["v_gamma"]
    np.testing.assert_array_equal(descs["v_gamma"]["h3"], get_baseline("raw")(s.patches("h3")))
    out = tmp_path / "raw"
    write_descriptor_dir(out, descs)
    back = read_descriptor_dir(out, progress=False)
    for name in descs:
        for t in TYPES:
            np.testing.assert_array_equal(back[name][t], descs[name][t])  # %.9g round-trips float32
    # any delimiter
    a = descs["i_alpha"]["e1"]
    (out / "i_alpha" / "e1.csv").write_text("\n".join(";".join(f"{v:.9g}" for v in r) for r in a) + "\n")
    np.testing.assert_array_equal(read_descriptor_dir(out, ["i_alpha"], progress=False)["i_alpha"]["e1"], a)
    (out / "i_alpha" / "e1.csv").write_text("\n".join(" ".join(f"{v:.9g}" for v in r) for r in a) + "\n")
    np.testing.assert_array_equal(read_descriptor_dir(out, ["i_alpha"], progress=False)["i_alpha"]["e1"], a)
    (out / "i_alpha" / "t4.csv").unlink()
    with pytest.raises(DataError, match=r"i_alpha: missing descriptor files: t4.csv"):
        read_descriptor_dir(out, progress=False)
    (out / "v_delta" / "ref.csv").write_text("1,2,nan\n")
    with pytest.raises(DataError, match=r"v_delta/ref.csv: row 1 contains NaN"):
        read_descriptor_dir(out, ["v_delta"], progress=False)


def test_model_describes_in_full_batches_across_sequences(tiny_dataset, tmp_path):
    """compute_descriptors feeds a Keras model fixed-size batches spanning sequences: the model is traced once,
    for one batch shape; the descriptors are the model's outputs patch by patch, in each sequence's type order."""
    model, _, _, _ = _tiny_models(tmp_path)
    traced = []
    real = model.call
    model.call = lambda x, *a, **k: traced.append(tuple(x.shape)) or real(x, *a, **k)  # runs once per trace
    ds = load_dataset(tiny_dataset, progress=False)
    assert sum(16 * s.tracks.shape[0] for s in ds) > 3 * 64 and len(ds) > 1
    got = compute_descriptors(ds, keras_describer(model, batch_size=64, precision="float32"), progress=False)
    assert [s[0] for s in traced] == [64]
    model.call = real
    for s in ds:
        for j, t in enumerate(TYPES):
            x = np.stack([cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA) for a in s.tracks[:, j]]).astype(
                np.float32
            )
            np.testing.assert_allclose(got[s.name][t], model.predict_on_batch(x[..., None]), rtol=1e-5, atol=1e-5)


def test_describing_progress_counts_patches(monkeypatch):
    """The describing bar counts patches (total = 16 x tracks) and moves once per describer call of at most
    ``progress_patches`` patches (whole tracks, across sequences); the descriptors equal one call over every
    patch (the reference)."""
    import tqdm.auto

    from hpatches_kit.data import HPatchesDataset
    from hpatches_kit.data.sequences import Sequence

    rng = np.random.default_rng(0)
    seqs = [Sequence(f"i_{k}", rng.integers(0, 255, (n, 16, 8, 8), dtype=np.uint8)) for k, n in enumerate((7, 5, 9))]
    bars, calls = [], []

    class Bar:
        def __init__(self, total=None, **kw):
            self.total, self.n, self.updates = total, 0, []
            bars.append(self)

        def update(self, k):
            self.n += k
            self.updates.append(k)

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)

    def mean_max(p):
        calls.append(len(p))
        return np.stack([p.mean((1, 2)), p.max((1, 2))], 1)

    got = compute_descriptors(HPatchesDataset(seqs), mean_max, progress_patches=100)
    # 100 patches -> 6 whole tracks (96 patches) per call; 21 tracks = 6 + 6 + 6 + 3
    assert bars[0].total == bars[0].n == 16 * 21 and bars[0].updates == calls == [96, 96, 96, 48]
    for s in seqs:
        for j, t in enumerate(TYPES):
            np.testing.assert_allclose(got[s.name][t], mean_max(s.tracks[:, j]))
