"""PCA reduction of any descriptor to a target dimension, saved inside the ``.keras`` (``--pca-dim D``).

The image-retrieval recipe the toolkit follows reduces descriptors with PCA before the final L2 normalisation.
:func:`with_pca` fits the PCA on descriptors of training patches and returns ``model`` followed by
:class:`PCAProjection` (``y = (x - mean) @ components.T``, the mean and the ``D`` leading principal axes held
as fixed, non-trainable weights, as scikit-learn's ``PCA(n_components=D).transform``) and
:class:`~hpatches_kit.models.l2net.L2Normalize`. The wrapped model is one Keras model that saves and loads
like any other (``import hpatches_kit.models`` registers the layer).

Examples:
    >>> import numpy as np, keras
    >>> from hpatches_kit.models.pca import with_pca
    >>> inp = keras.Input((4, 4, 1)); net = keras.Model(inp, keras.layers.Dense(8)(keras.layers.Flatten()(inp)))
    >>> patches = np.random.default_rng(0).uniform(0, 255, (64, 4, 4, 1)).astype("float32")
    >>> reduced = with_pca(net, patches, 3)
    >>> reduced.output_shape
    (None, 3)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from .l2net import L2Normalize

__all__ = ["PCAProjection", "fit_pca", "with_pca"]


@keras.saving.register_keras_serializable(package="hpatches_kit")
class PCAProjection(layers.Layer):
    """``(x - mean) @ components.T``: a fixed (non-trainable) PCA projection from ``input_dim`` to ``dim``.

    Args:
        dim: output dimension ``D``.
        mean: ``(input_dim,)`` and components: ``(D, input_dim)`` (rows = principal axes); ``None`` when the
            layer is rebuilt from its config (the values then come from the saved weights).

    Shape:
        ``(N, input_dim) -> (N, D)``, float32 whatever the global policy.
    """

    def __init__(self, dim: int, mean=None, components=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.dim = int(dim)
        self._init = None if mean is None else (np.asarray(mean, np.float32), np.asarray(components, np.float32))

    def build(self, input_shape):
        n = int(input_shape[-1])
        if self.dim > n:
            raise ValueError(f"PCA to {self.dim} dimensions needs input of at least that many, got {n}")
        self.mean = self.add_weight(shape=(n,), initializer="zeros", trainable=False, name="mean")
        self.components = self.add_weight(shape=(n, self.dim), initializer="zeros", trainable=False, name="components")
        if self._init is not None:
            self.mean.assign(self._init[0])
            self.components.assign(self._init[1].T)
            self._init = None

    def call(self, x):
        return ops.matmul(ops.cast(x, self.compute_dtype) - self.mean, self.components)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def fit_pca(x, dim: int):
    """PCA of the rows of ``x``: ``(mean, components, explained_variance_ratio)``.

    Args:
        x: ``(N, F)`` descriptors (``N > dim``).
        dim: number of components ``D <= F``.

    Returns:
        ``mean`` ``(F,)``, ``components`` ``(D, F)`` (unit rows, by decreasing variance; each row's sign
        fixed as scikit-learn >= 1.5's ``PCA`` does: the largest-magnitude entry of each row positive),
        ``ratio`` ``(D,)``.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not 1 <= dim <= x.shape[1]:
        raise ValueError(f"PCA to {dim} dimensions of descriptors of shape {x.shape}: need 1 <= dim <= {x.shape[-1]}")
    if x.shape[0] <= dim:
        raise ValueError(f"PCA to {dim} dimensions needs more than {dim} descriptors, got {x.shape[0]}")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    var = s**2
    return mean.astype(np.float32), vt[:dim].astype(np.float32), (var[:dim] / var.sum()).astype(np.float32)


def with_pca(model, patches, dim: int, batch_size: int = 1024, normalize: bool = True):
    """``model`` followed by a PCA to ``dim`` fitted on its descriptors of ``patches`` and L2 normalisation.

    Args:
        model: a descriptor ``(N, P, P, C) -> (N, F)``.
        patches: ``(N, P, P, C)`` training patches as the model takes them (``N > dim``; a few thousand do).
        dim: target dimension ``1 <= dim <= F``.
        batch_size: for describing ``patches``.
        normalize: end with :class:`~hpatches_kit.models.l2net.L2Normalize` (default; PCA output is not unit
            length).

    Returns:
        A new ``keras.Model`` (the original nested inside, unchanged) named ``<model.name>_pca<dim>``.

    Shape:
        ``(N, P, P, C) -> (N, dim)``.
    """
    desc = np.asarray(model.predict(np.asarray(patches), batch_size=batch_size, verbose=0), np.float64)
    mean, comps, _ = fit_pca(desc, dim)
    inp = keras.Input(model.input_shape[1:], name="patch")
    x = PCAProjection(dim, mean, comps, name="pca")(model(inp))
    if normalize:
        x = L2Normalize(name="pca_l2norm")(x)
    return keras.Model(inp, x, name=f"{model.name}_pca{dim}")
