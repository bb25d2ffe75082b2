"""--pca-dim: PCA reduction inside the .keras, checked against scikit-learn's PCA."""

from __future__ import annotations

import numpy as np
import pytest


def _net(dim=16):
    import keras

    inp = keras.Input((6, 6, 1))
    x = keras.layers.Flatten()(inp)
    return keras.Model(inp, keras.layers.Dense(dim, activation="tanh")(x), name="toy")


def test_fit_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    from hpatches_kit.models.pca import fit_pca

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    mean, comps, ratio = fit_pca(x, 5)
    ref = PCA(n_components=5, svd_solver="full").fit(x)
    np.testing.assert_allclose(mean, ref.mean_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(comps, ref.components_, rtol=1e-4, atol=1e-5)  # same signs (svd_flip)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-4)
    with pytest.raises(ValueError, match="dimensions"):
        fit_pca(x, 13)


def test_with_pca_equals_sklearn_transform_then_l2_and_round_trips(tmp_path):
    import keras
    from sklearn.decomposition import PCA

    import hpatches_kit  # noqa: F401
    from hpatches_kit.models import PCAProjection, with_pca

    keras.utils.set_random_seed(0)
    net = _net()
    rng = np.random.default_rng(1)
    train = rng.uniform(0, 1, (400, 6, 6, 1)).astype(np.float32)
    test = rng.uniform(0, 1, (50, 6, 6, 1)).astype(np.float32)
    red = with_pca(net, train, 4)
    assert red.output_shape == (None, 4) and not red.get_layer("pca").trainable_weights
    sk = PCA(n_components=4, svd_solver="full").fit(net.predict(train, verbose=0).astype(np.float64))
    want = sk.transform(net.predict(test, verbose=0).astype(np.float64))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = red.predict(test, verbose=0)
    np.testing.assert_allclose(got, want, atol=2e-4)
    path = tmp_path / "pca.keras"
    red.save(path)
    back = keras.saving.load_model(path)
    assert isinstance(back.get_layer("pca"), PCAProjection)
    np.testing.assert_allclose(back.predict(test, verbose=0), got, atol=1e-6)
    red.compile(optimizer="sgd", loss="mse")  # fine-tuning after PCA keeps the projection fixed
    red.fit(test, got, epochs=1, verbose=0)
    np.testing.assert_allclose(red.get_layer("pca").get_weights()[0], back.get_layer("pca").get_weights()[0])
