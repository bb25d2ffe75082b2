"""ViT building blocks as serialisable Keras 3 layers (``keras.ops`` only).

Freezing is decided per sub-layer when a layer is built from its config (``train_backbone``,
``train_layernorms``), so a saved and re-loaded model has exactly the same trainable weights.
"""

from __future__ import annotations

import math

import keras
from keras import ops

PKG = "hpatches_kit.vit"


def _gelu(x):
    return ops.gelu(x, approximate=False)  # exact erf GELU, as Hugging Face ViT ("gelu")


ACTIVATIONS = {
    "gelu": _gelu,
    "relu": ops.relu,
    "swish": ops.silu,
    "tanh": ops.tanh,
}


def _activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown adapter activation {name!r}; expected one of {', '.join(ACTIVATIONS)}") from None


@keras.saving.register_keras_serializable(package=PKG)
class PatchEmbedding(keras.layers.Layer):
    """``(B, H, W, C)`` image -> ``(B, (H/p)*(W/p), D)`` tokens with one ``p x p`` stride-``p`` convolution
    (row-major patch order, as Hugging Face's ``Conv2d`` + ``flatten(2)``)."""

    def __init__(self, hidden_size: int, patch_size: int, train_backbone: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.patch_size = int(patch_size)
        self.train_backbone = bool(train_backbone)
        self.projection = keras.layers.Conv2D(
            self.hidden_size,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            trainable=self.train_backbone,
            name="projection",
        )

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, x):
        y = self.projection(x)
        return ops.reshape(y, (-1, y.shape[1] * y.shape[2], self.hidden_size))

    def compute_output_shape(self, input_shape):
        n = (input_shape[1] // self.patch_size) * (input_shape[2] // self.patch_size)
        return (input_shape[0], n, self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "patch_size": self.patch_size,
            "train_backbone": self.train_backbone,
        }


@keras.saving.register_keras_serializable(package=PKG)
class ClassTokenPosition(keras.layers.Layer):
    """Prepend a learned class token and add learned position embeddings: ``(B, N, D) -> (B, N+1, D)``."""

    def __init__(self, train_backbone: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.train_backbone = bool(train_backbone)

    def build(self, input_shape):
        n, d = int(input_shape[1]), int(input_shape[2])
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.cls_token = self.add_weight(
            shape=(1, 1, d), initializer=init, trainable=self.train_backbone, name="cls_token"
        )
        self.position_embeddings = self.add_weight(
            shape=(1, n + 1, d), initializer=init, trainable=self.train_backbone, name="position_embeddings"
        )

    def call(self, x):
        cls = ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (ops.shape(x)[0], 1, x.shape[-1]))
        return ops.concatenate([cls, x], axis=1) + ops.cast(self.position_embeddings, x.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "train_backbone": self.train_backbone}


@keras.saving.register_keras_serializable(package=PKG)
class BottleneckAdapter(keras.layers.Layer):
    """Houlsby et al. (2019) adapter: ``x + W_up . act(W_down . x + b_down) + b_up``.

    Both projections start near zero (truncated normal, ``init_scale``; biases zero) so the adapter starts
    as (almost exactly) the identity and the frozen network's function is unchanged at step 0.
    """

    def __init__(self, bottleneck: int, activation: str = "gelu", init_scale: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if int(bottleneck) < 1:
            raise ValueError(f"adapter bottleneck must be >= 1, got {bottleneck}")
        self.bottleneck = int(bottleneck)
        self.activation = str(activation)
        self.init_scale = float(init_scale)
        self._act = _activation(self.activation)

    def build(self, input_shape):
        d = int(input_shape[-1])
        init = keras.initializers.TruncatedNormal(stddev=self.init_scale)
        self.down = keras.layers.Dense(self.bottleneck, kernel_initializer=init, name="down")
        self.up = keras.layers.Dense(d, kernel_initializer=init, name="up")
        self.down.build(input_shape)
        self.up.build(tuple(input_shape[:-1]) + (self.bottleneck,))

    def call(self, x):
        return x + self.up(self._act(self.down(x)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "bottleneck": self.bottleneck,
            "activation": self.activation,
            "init_scale": self.init_scale,
        }


@keras.saving.register_keras_serializable(package=PKG)
class EncoderBlock(keras.layers.Layer):
    """Pre-LayerNorm transformer block (Hugging Face ``ViTLayer``) with optional Houlsby adapters::

        h = x + A1(attn_out(MHSA(LN1(x))))        # adapter after the attention output projection
        y = h + A2(fc2(gelu(fc1(LN2(h)))))       # adapter after the MLP output, before the residual add

    ``bottleneck=0`` builds the plain block (no adapters).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_dim: int,
        layer_norm_eps: float = 1e-12,
        bottleneck: int = 0,
        adapter_activation: str = "gelu",
        adapter_init_scale: float = 1e-3,
        train_backbone: bool = False,
        train_layernorms: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} not divisible by num_heads {num_heads}")
        self.hidden_size, self.num_heads, self.mlp_dim = int(hidden_size), int(num_heads), int(mlp_dim)
        self.layer_norm_eps = float(layer_norm_eps)
        self.bottleneck = int(bottleneck or 0)
        self.adapter_activation = adapter_activation
        self.adapter_init_scale = float(adapter_init_scale)
        self.train_backbone = bool(train_backbone)
        self.train_layernorms = bool(train_layernorms)
        tb, tl = self.train_backbone, self.train_backbone or self.train_layernorms
        d = self.hidden_size
        self.layernorm_before = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, trainable=tl, name="layernorm_before"
        )
        self.query = keras.layers.Dense(d, trainable=tb, name="query")
        self.key = keras.layers.Dense(d, trainable=tb, name="key")
        self.value = keras.layers.Dense(d, trainable=tb, name="value")
        self.attention_output = keras.layers.Dense(d, trainable=tb, name="attention_output")
        self.layernorm_after = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_eps, trainable=tl, name="layernorm_after"
        )
        self.intermediate = keras.layers.Dense(self.mlp_dim, trainable=tb, name="intermediate")
        self.output_dense = keras.layers.Dense(d, trainable=tb, name="output_dense")
        if self.bottleneck:
            kw = dict(activation=adapter_activation, init_scale=self.adapter_init_scale)
            self.adapter_attention = BottleneckAdapter(self.bottleneck, name="adapter_attention", **kw)
            self.adapter_mlp = BottleneckAdapter(self.bottleneck, name="adapter_mlp", **kw)

    def build(self, input_shape):
        d = self.hidden_size
        shp = tuple(input_shape)
        for layer in (
            self.layernorm_before,
            self.query,
            self.key,
            self.value,
            self.attention_output,
            self.layernorm_after,
            self.intermediate,
        ):
            layer.build(shp)
        self.output_dense.build(shp[:-1] + (self.mlp_dim,))
        if self.bottleneck:
            self.adapter_attention.build(shp[:-1] + (d,))
            self.adapter_mlp.build(shp[:-1] + (d,))

    def _heads(self, t, n):
        t = ops.reshape(t, (-1, n, self.num_heads, self.hidden_size // self.num_heads))
        return ops.transpose(t, (0, 2, 1, 3))

    def call(self, x):
        n = x.shape[1]
        h = self.layernorm_before(x)
        q, k, v = (self._heads(f(h), n) for f in (self.query, self.key, self.value))
        scale = 1.0 / math.sqrt(self.hidden_size // self.num_heads)
        att = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale, axis=-1)
        ctx = ops.reshape(ops.transpose(ops.matmul(att, v), (0, 2, 1, 3)), (-1, n, self.hidden_size))
        a = self.attention_output(ctx)
        if self.bottleneck:
            a = self.adapter_attention(a)
        x = x + a
        m = self.output_dense(_gelu(self.intermediate(self.layernorm_after(x))))
        if self.bottleneck:
            m = self.adapter_mlp(m)
        return x + m

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "layer_norm_eps": self.layer_norm_eps,
            "bottleneck": self.bottleneck,
            "adapter_activation": self.adapter_activation,
            "adapter_init_scale": self.adapter_init_scale,
            "train_backbone": self.train_backbone,
            "train_layernorms": self.train_layernorms,
        }


POOLINGS = ("cls", "mean", "gem")


@keras.saving.register_keras_serializable(package=PKG)
class TokenPooling(keras.layers.Layer):
    """``(B, 1+N, D) -> (B, D)``: ``cls`` (class token), ``mean`` (mean of the N patch tokens) or ``gem``
    (generalised mean of the patch tokens, ``(mean(max(x, eps)^p))^(1/p)``, fixed ``p``)."""

    def __init__(self, mode: str = "cls", gem_p: float = 3.0, gem_eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS:
            raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLINGS)}")
        self.mode, self.gem_p, self.gem_eps = mode, float(gem_p), float(gem_eps)

    def call(self, x):
        if self.mode == "cls":
            return x[:, 0]
        t = x[:, 1:]
        if self.mode == "mean":
            return ops.mean(t, axis=1)
        return ops.power(ops.mean(ops.power(ops.maximum(t, self.gem_eps), self.gem_p), axis=1), 1.0 / self.gem_p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "gem_p": self.gem_p, "gem_eps": self.gem_eps}


def find_backbone(model) -> keras.Model:
    """The ViT functional model inside ``model`` (``model`` itself, or a nested one, e.g. a siamese wrapper)."""
    if any(isinstance(l, EncoderBlock) for l in model.layers):
        return model
    for l in model.layers:
        if isinstance(l, keras.Model) and any(isinstance(s, EncoderBlock) for s in l.layers):
            return l
    raise ValueError(f"model {model.name!r} holds no ViT encoder blocks")
