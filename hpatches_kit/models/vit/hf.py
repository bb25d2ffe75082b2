"""Load Hugging Face ViT checkpoints (``transformers`` ``ViTModel`` / ``ViTForImageClassification``
safetensors, e.g. ``google/vit-base-patch16-224``) into :func:`~hpatches_kit.models.vit.vit_adapter` models.

Tensor names (``vit.`` prefix present for ``ViTForImageClassification``, absent for ``ViTModel``)::

    vit.embeddings.cls_token                                   (1, 1, D)
    vit.embeddings.position_embeddings                         (1, 1+N, D)
    vit.embeddings.patch_embeddings.projection.{weight,bias}   (D, C, p, p), (D,)
    vit.encoder.layer.{i}.layernorm_before.{weight,bias}
    vit.encoder.layer.{i}.attention.attention.{query,key,value}.{weight,bias}   Linear: weight (out, in)
    vit.encoder.layer.{i}.attention.output.dense.{weight,bias}
    vit.encoder.layer.{i}.layernorm_after.{weight,bias}
    vit.encoder.layer.{i}.intermediate.dense.{weight,bias}
    vit.encoder.layer.{i}.output.dense.{weight,bias}
    vit.layernorm.{weight,bias}
    classifier.*, pooler.*, embeddings.mask_token              (accepted, not used)

Every backbone tensor must be present with the right shape and nothing else may be there: any missing,
unexpected or mis-shaped tensor raises :class:`~hpatches_kit.data.DataError` naming the checkpoint and
listing every problem. Adapters and the projection head are not in HF checkpoints and keep their init.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...data.errors import DataError
from .layers import ClassTokenPosition, EncoderBlock, PatchEmbedding, find_backbone
from .presets import ViTConfig

IGNORED_PREFIXES = ("classifier.", "pooler.", "embeddings.mask_token")


def _checkpoint_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        single = path / "model.safetensors"
        if single.is_file():
            return [single]
        index = path / "model.safetensors.index.json"
        if index.is_file():
            try:
                wmap = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise DataError(index, f"not a safetensors index ({e})") from None
            files = [path / f for f in sorted(set(wmap.values()))]
            for f in files:
                if not f.is_file():
                    raise DataError(f, "shard listed in model.safetensors.index.json is missing")
            return files
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found
        raise DataError(
            path,
            "no model.safetensors (or index) in folder"
            if not found
            else f"several .safetensors files and no model.safetensors.index.json: {[f.name for f in found]}",
        )
    raise DataError(path, "checkpoint not found")


def read_hf_checkpoint(path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors checkpoint (file, folder, or sharded folder) as float32 NumPy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for f in _checkpoint_files(Path(path)):
        try:
            tensors = load_file(str(f))
        except (SafetensorError, OSError, ValueError) as e:
            raise DataError(f, f"cannot read safetensors file ({e})") from None
        for k, v in tensors.items():
            out[k] = np.asarray(v, dtype=np.float32)
    return out


def hf_config_to_vit(config) -> ViTConfig:
    """A Hugging Face ``ViTConfig`` (``config.json`` path or dict) as our :class:`ViTConfig`."""
    if not isinstance(config, dict):
        p = Path(config)
        try:
            config = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise DataError(p, f"cannot read config ({e})") from None
    try:
        return ViTConfig(
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=int(config["num_attention_heads"]),
            mlp_dim=int(config["intermediate_size"]),
            patch_size=int(config["patch_size"]),
            image_size=int(config["image_size"]),
            channels=int(config.get("num_channels", 3)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        )
    except KeyError as e:
        raise ValueError(f"Hugging Face ViT config lacks {e}") from None


def _linear(w):
    return np.ascontiguousarray(w.T)


def _conv(w):
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _ident(w):
    return w


def weight_map(model) -> dict[str, tuple]:
    """``{hf_name (no 'vit.' prefix): (keras_variable, transform)}`` for every backbone weight of ``model``."""
    vit = find_backbone(model)
    m: dict[str, tuple] = {}
    pe = next(l for l in vit.layers if isinstance(l, PatchEmbedding))
    m["embeddings.patch_embeddings.projection.weight"] = (pe.projection.kernel, _conv)
    m["embeddings.patch_embeddings.projection.bias"] = (pe.projection.bias, _ident)
    ct = next(l for l in vit.layers if isinstance(l, ClassTokenPosition))
    m["embeddings.cls_token"] = (ct.cls_token, _ident)
    m["embeddings.position_embeddings"] = (ct.position_embeddings, _ident)

    def dense(prefix, layer):
        m[prefix + ".weight"] = (layer.kernel, _linear)
        m[prefix + ".bias"] = (layer.bias, _ident)

    def norm(prefix, layer):
        m[prefix + ".weight"] = (layer.gamma, _ident)
        m[prefix + ".bias"] = (layer.beta, _ident)

    blocks = [l for l in vit.layers if isinstance(l, EncoderBlock)]
    for i, b in enumerate(blocks):
        p = f"encoder.layer.{i}."
        norm(p + "layernorm_before", b.layernorm_before)
        for n in ("query", "key", "value"):
            dense(p + f"attention.attention.{n}", getattr(b, n))
        dense(p + "attention.output.dense", b.attention_output)
        norm(p + "layernorm_after", b.layernorm_after)
        dense(p + "intermediate.dense", b.intermediate)
        dense(p + "output.dense", b.output_dense)
    norm("layernorm", vit.get_layer("layernorm"))
    return m


def load_hf_weights(model, path, config_check: bool = True) -> dict:
    """Copy a Hugging Face ViT checkpoint into ``model``'s backbone. Strict: raises :class:`DataError` on any
    missing, unexpected or mis-shaped tensor (all listed). When ``path`` is a folder holding ``config.json``,
    its head count and LayerNorm epsilon must match the model too. Returns ``{"loaded": n, "ignored": [...]}``."""
    path = Path(path)
    raw = read_hf_checkpoint(path)
    prefixed = any(k.startswith("vit.") for k in raw)
    tensors, ignored, problems = {}, [], []
    for k, v in raw.items():
        name = k[4:] if prefixed and k.startswith("vit.") else k
        if name.startswith(IGNORED_PREFIXES) or k.startswith(IGNORED_PREFIXES):
            ignored.append(k)
            continue
        tensors[name] = (k, v)
    wmap = weight_map(model)
    pre = "vit." if prefixed else ""
    missing = sorted(pre + n for n in wmap if n not in tensors)
    unexpected = sorted(tensors[n][0] for n in tensors if n not in wmap)
    if missing:
        problems.append(
            f"{len(missing)} missing tensor(s): {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else "")
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:8])}"
            + (" ..." if len(unexpected) > 8 else "")
        )
    converted = {}
    for n, (var, fn) in wmap.items():
        if n not in tensors:
            continue
        k, v = tensors[n]
        w = fn(v) if v.ndim == len(var.shape) or fn is _ident else None
        if w is None or tuple(w.shape) != tuple(var.shape):
            want = fn(np.zeros(var.shape, np.float32)).shape if fn is _ident else _inverse_shape(fn, var.shape)
            problems.append(f"{k}: shape {tuple(v.shape)}, model expects {tuple(want)}")
            continue
        converted[n] = (var, w)
    cfg_file = path / "config.json" if path.is_dir() else None
    if config_check and cfg_file is not None and cfg_file.is_file():
        hcfg = hf_config_to_vit(cfg_file)
        block = next(l for l in find_backbone(model).layers if isinstance(l, EncoderBlock))
        if hcfg.num_heads != block.num_heads:
            problems.append(f"config.json has {hcfg.num_heads} attention heads, model has {block.num_heads}")
        if not np.isclose(hcfg.layer_norm_eps, block.layer_norm_eps, rtol=1e-3, atol=0):
            problems.append(f"config.json layer_norm_eps {hcfg.layer_norm_eps}, model {block.layer_norm_eps}")
    if problems:
        raise DataError(path, "checkpoint does not match the model: " + "; ".join(problems))
    for var, w in converted.values():
        var.assign(w.astype(var.dtype if isinstance(var.dtype, str) else "float32"))
    return {"loaded": len(converted), "ignored": sorted(ignored)}


def _inverse_shape(fn, shape):
    shape = tuple(shape)
    if fn is _linear:
        return shape[::-1]
    if fn is _conv:  # (kh, kw, in, out) -> (out, in, kh, kw)
        return (shape[3], shape[2], shape[0], shape[1])
    return shape
