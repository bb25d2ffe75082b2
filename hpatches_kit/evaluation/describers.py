"""Describers (``(N, P, P) uint8 -> (N, D) float32``) and descriptor computation.

Baselines (:func:`get_baseline`):

* ``raw``: the patch resized to 32x32 (area interpolation), flattened, minus its mean, divided by its
  standard deviation (constant patches give zeros);
* ``sift``: OpenCV SIFT descriptor of the whole patch as one keypoint at the patch centre ``(P/2, P/2)`` with
  size ``P / 5.303``, built exactly as the official ``extract_opencv_sift.py`` builds it: ``cv2.KeyPoint()``
  with ``pt`` and ``size`` set and OpenCV's default angle (-1, which OpenCV's descriptor code reads as a
  rotation of 361 degrees, so the rows differ from an angle-0 keypoint by up to 3 units); values as OpenCV
  returns them (0..255 scale);
* ``rootsift``: SIFT, L1-normalised, square-rooted (Arandjelovic & Zisserman 2012).

The CSV folder functions live in :mod:`.descriptor_csv` and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Sequence as Seq

import numpy as np

from ..data.cache import release_pages
from ..data.errors import DataError
from ..data.hpatches import TYPES, resize_patches
from ..registry import Registry
from .descriptor_csv import _read_desc_csv, read_descriptor_dir, read_descriptor_set, write_descriptor_dir  # noqa: F401  (re-exported)

Describer = Callable[[np.ndarray], np.ndarray]
RAW_SIZE = 32
#: patches per forward pass of a Keras describer. L2-Net at 32x32 on the 2-core AVX512-BF16 machine, bf16: 3,467
#: patches/s at 256 vs 3,082 at 1,024 and 3,370 at 128, peak RSS 0.92 GB vs 1.13 GB at 1,024 (the activations of a
#: smaller batch stay in cache; ``benchmarks/scale.py --parts eval`` prints the sweep, 2026-12-07)
DESCRIBE_BATCH = 256

__all__ = [
    "BASELINES",
    "get_baseline",
    "raw_describer",
    "sift_describer",
    "rootsift_describer",
    "keras_describer",
    "compute_descriptors",
    "read_descriptor_dir",
    "read_descriptor_set",
    "write_descriptor_dir",
]


def _check_patches(patches) -> np.ndarray:
    p = np.asarray(patches)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"expected (N, P, P) patches, got shape {p.shape}")
    return p


def raw_describer(size: int = RAW_SIZE) -> Describer:
    def describe(patches):
        p = _check_patches(patches)
        if p.dtype != np.uint8:
            p = np.clip(p, 0, 255).astype(np.uint8)
        x = resize_patches(p, size).reshape(p.shape[0], -1).astype(np.float64)
        x -= x.mean(axis=1, keepdims=True)
        sd = x.std(axis=1, keepdims=True)
        return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0).astype(np.float32)

    describe.name = "raw"
    return describe


def official_sift_keypoint(patch_size: int):
    """The centre keypoint of the official ``extract_opencv_sift.py``: a default ``cv2.KeyPoint()`` (angle -1)
    with ``pt = (P/2, P/2)`` and ``size = 2 (P/2) / 5.303``."""
    import cv2

    c = patch_size / 2.0
    kp = cv2.KeyPoint()
    kp.pt = (c, c)
    kp.size = 2 * c / 5.303
    return kp


def sift_describer(root: bool = False) -> Describer:
    import cv2

    sift = cv2.SIFT_create()

    def describe(patches):
        p = _check_patches(patches)
        if p.dtype != np.uint8:
            p = np.clip(p, 0, 255).astype(np.uint8)
        n, s = p.shape[0], p.shape[1]
        kp = [official_sift_keypoint(s)]
        out = np.empty((n, 128), np.float32)
        for i in range(n):
            _, d = sift.compute(np.ascontiguousarray(p[i]), kp)
            if d is None or d.shape != (1, 128):
                raise RuntimeError(f"OpenCV SIFT returned no descriptor for patch {i}")
            out[i] = d[0]
        if root:
            l1 = out.sum(axis=1, keepdims=True)
            out = np.sqrt(np.divide(out, l1, out=np.zeros_like(out), where=l1 > 0))
        return out

    describe.name = "rootsift" if root else "sift"
    return describe


def rootsift_describer() -> Describer:
    return sift_describer(root=True)


def _baseline(name: str, factory) -> Callable[[], Describer]:
    if not callable(factory):
        raise TypeError(f"baseline {name!r}: the describer factory must be callable, got {factory!r}")
    return factory


#: the baseline describers by name (``--baseline``): ``factory() -> Describer``; a :class:`~hpatches_kit.registry.
#: Registry` like every other list of names (``BASELINES.register("orb", orb_describer)`` adds one)
BASELINES = Registry(
    "baseline",
    builtin={"sift": sift_describer, "rootsift": rootsift_describer, "raw": raw_describer},
    group="hpatches_kit.baselines",
    make=_baseline,
    canon=str.lower,
)


def get_baseline(name: str) -> Describer:
    """The describer of the baseline ``name`` (:data:`BASELINES`; case is ignored).

    Raises:
        ValueError: an unknown name (the registered ones are listed).
    """
    return BASELINES.get(name)()


def _resize_float(x: np.ndarray, size: int) -> np.ndarray:
    import cv2

    n, h = x.shape[0], x.shape[1]
    if h == size:
        return x
    interp = cv2.INTER_AREA if size < h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(x[i], (size, size), interpolation=interp) for i in range(n)])


def load_model_file(model_or_path, what: str | None = None, imports=None):
    """Moved: :func:`hpatches_kit.models.io.load_model` (this name is kept for old callers)."""
    from ..models.io import load_model

    return load_model(model_or_path, what, imports)


def _input_size(model, what: str, where=None) -> int:
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError) as e:  # several inputs, or none
        raise DataError(where, f"{what} must take one input of (H, W, 1) square patches ({e})") from None
    if len(shape) != 4 or shape[-1] != 1 or shape[1] != shape[2] or shape[1] is None:
        raise DataError(where, f"{what} must take (H, W, 1) square grey patches, its input shape is {shape[1:]}")
    return int(shape[1])


def check_descriptor_output(model, where=None, what: str = "descriptor model") -> int:
    """The descriptor dimension ``D`` of a model with one output of shape ``(B, D)``: a vector per patch (a
    U-Net's image, a feature map, or several outputs are refused, not flattened and scored).

    Raises:
        DataError: naming ``where`` and the output shape found.
    """
    outputs = getattr(model, "outputs", None)
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        raise DataError(where, f"{what} must have one output (a (D,) descriptor per patch); it has {len(outputs)}")
    try:
        shape = tuple(model.output_shape)
    except (AttributeError, ValueError) as e:
        raise DataError(where, f"{what} must have one output (a (D,) descriptor per patch) ({e})") from None
    if shape and isinstance(shape[0], (tuple, list)):  # a list of output shapes
        raise DataError(where, f"{what} must have one output (a (D,) descriptor per patch); it has {len(shape)}")
    if len(shape) < 2 or shape[-1] is None or any(d != 1 for d in shape[1:-1]):  # (B, D), or (B, 1, 1, D)
        raise DataError(
            where,
            f"{what} must output one (D,) descriptor vector per patch; its output shape is {shape[1:]} "
            "(an image or feature map, e.g. a denoiser or U-Net, is not a descriptor)",
        )
    return int(shape[-1])


def check_denoiser(den, where=None) -> int:
    """The patch size of a denoiser that maps ``(P, P, 1)`` grey patches to patches of the same shape.

    Args:
        den: the Keras denoiser.
        where: its file (named in the error).

    Returns:
        ``P``.

    Raises:
        DataError: naming ``where`` when the input is not square grey patches or the output shape differs.
    """
    size = _input_size(den, "denoiser", where)
    try:
        out = tuple(den.output_shape[1:])
    except (AttributeError, ValueError) as e:
        raise DataError(where, f"denoiser must have one output ({e})") from None
    if out not in ((size, size, 1), (size, size)):
        raise DataError(
            where, f"denoiser must output patches of its input shape ({size}, {size}, 1); its output shape is {out}"
        )
    return size


def resolve_describe_precision(precision: str = "auto") -> str:
    """The dtype policy a describer runs in: ``"auto"`` is the device's fastest for inference
    (:func:`hpatches_kit.models.precision.inference_precision`: ``mixed_bfloat16`` on CPUs with AMX or
    AVX512-BF16, Ampere+ GPUs and TPUs, ``mixed_float16`` on older GPUs, else ``float32``)."""
    from ..models.precision import check_precision, inference_precision

    if check_precision(precision) != "auto":
        return precision
    return inference_precision()


def with_precision(model, policy: str):
    """``model`` rebuilt to compute in dtype policy ``policy`` with the same (float32) weights; its last layer
    keeps its own dtype (our descriptors end in a float32 ``L2Normalize``, as under mixed-precision training).
    A model saved from a mixed-precision run carries its policy: ``policy="float32"`` rebuilds it in float32.

    Args:
        model: a Keras functional or sequential model.
        policy: ``float32``, ``mixed_bfloat16`` or ``mixed_float16``; ``model`` itself when every layer but the
            last already has it.

    Returns:
        A Keras model: the same function at that compute precision.

    Example:
        >>> fast = with_precision(keras.models.load_model("model.keras"), "mixed_bfloat16")  # doctest: +SKIP
    """
    import keras

    last = model.layers[-1]
    inner = [la for la in model.layers if la is not last and not isinstance(la, keras.layers.InputLayer)]
    if all(la.dtype_policy.name == policy for la in inner):  # already so (e.g. saved from a bf16 run)
        return model

    def clone(layer):
        if layer is last or isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    new = keras.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    return new


def _saved_policy(model) -> str | None:
    """The dtype policy a saved model's layers compute in (``None`` when it has no such layer)."""
    import keras

    for layer in getattr(model, "layers", []):
        if not isinstance(layer, keras.layers.InputLayer):
            return layer.dtype_policy.name
    return None


def keras_describer(
    model_or_path, denoiser=None, batch_size: int = DESCRIBE_BATCH, precision: str = "auto"
) -> Describer:
    """A describer from a Keras model taking float patches in [0, 255] of shape ``(H, W, 1)`` (the model
    standardises itself); patches are resized to ``H``. ``denoiser`` (model or path, same input
    convention, output in [0, 255]) is applied first, at its own input size; its output is rounded to 8-bit
    grey levels, exactly what the descriptor trainer feeds a model trained on denoised patches.

    Args:
        model_or_path: a ``keras.Model`` or the path of a ``.keras`` file.
        denoiser: an optional denoiser (model or path) applied first.
        batch_size: patches per forward pass. Every pass has one fixed shape (the last batch is padded), so the
            model is traced once; the batch is capped at the first call's patch count (no padding a small
            dataset up to a large batch).
        precision: ``"auto"`` (default): a model saved in mixed precision runs as saved, any other in the
            device's fastest precision for inference (:func:`resolve_describe_precision`; bf16 on AMX and AVX512-BF16
            CPUs); ``"float32"`` forces full precision.

    Returns:
        ``describe(patches) -> (N, D) float32``, with ``describe.name`` the model's name and
        ``describe.precision`` the dtype policy it runs in.

    Raises:
        DataError: a file that is missing or not a Keras model, or a model that does not take square grey
            patches, or a model producing NaN/Inf (the message names the file).

    Shape:
        - patches: :math:`(N, P, P)` uint8 (any ``P``; resized to the model's input size)
        - output: :math:`(N, D)` float32

    Examples:
        >>> import numpy as np
        >>> from hpatches_kit.models.l2net import l2net
        >>> describe = keras_describer(l2net(input_size=16, dim=32), batch_size=8, precision="float32")
        >>> describe(np.zeros((3, 65, 65), np.uint8)).shape
        (3, 32)
    """
    from ..checks import check_options

    check_options(batch_size=batch_size)
    policy = resolve_describe_precision(precision)
    model = load_model_file(model_or_path)
    saved = _saved_policy(model)
    if precision == "auto" and saved not in (None, "float32"):
        policy = saved  # trained (and measured, e.g. in its model card) in mixed precision: described as saved
    den = load_model_file(denoiser, "the denoiser") if denoiser is not None else None
    where = model_or_path if isinstance(model_or_path, (str, os.PathLike)) else None
    size = _input_size(model, "descriptor model", where)
    check_descriptor_output(model, where)
    if den is not None and {"denoiser", "denoised", "descriptor"} <= {la.name for la in getattr(model, "layers", [])}:
        raise DataError(
            where,
            "is a joint denoiser + descriptor model (hpatches_kit.models.joint): it denoises "
            "itself and takes the raw (noisy) patches; use it without a separate denoiser",
        )
    dwhere = denoiser if isinstance(denoiser, (str, os.PathLike)) else None
    dsize = check_denoiser(den, dwhere) if den is not None else None
    try:
        model = with_precision(model, policy)
        den = with_precision(den, policy) if den is not None else None
    except (ValueError, TypeError, NotImplementedError) as e:  # a model Keras cannot clone: as it is
        import logging

        logging.getLogger(__name__).warning(
            "describing in the model's saved precision: cannot rebuild %s in %s (%s)",
            getattr(model, "name", "the model"),
            policy,
            e,
        )
        policy = model.dtype_policy.name
    import tensorflow as tf

    fixed, compiled = {}, {}

    def forward(m):
        # the inference graph of ``m`` taking the patches as they come (uint8, or the denoiser's float output):
        # the cast to float32 runs in the graph, so the host never makes a 4x larger float copy of a batch;
        # the model's own layers then compute in its dtype policy
        if id(m) not in compiled:
            compiled[id(m)] = tf.function(lambda b: m(tf.cast(b, "float32"), training=False))
        return compiled[id(m)]

    def run(m, x):
        # every call sees the same (batch, ...) shape: the last batch is padded, so the model is traced
        # once per input dtype and runs one compiled function at its full batch throughput (a new shape would
        # retrace it); the batch is capped at the first call's size, so a small dataset is not padded up to
        # batch_size
        bs = fixed.setdefault(id(m), max(1, min(int(batch_size), x.shape[0])))
        f = forward(m)
        outs = []
        for s in range(0, x.shape[0], bs):
            b = x[s : s + bs]
            k = b.shape[0]
            if k < bs:
                b = np.concatenate([b, np.zeros((bs - k,) + b.shape[1:], b.dtype)])
            outs.append(np.asarray(f(b), np.float32)[:k])
        return np.concatenate(outs) if outs else np.zeros((0,) + tuple(m.output_shape[1:]), np.float32)

    def describe(patches):
        p = _check_patches(patches)
        if den is not None:
            x = resize_patches(p.astype(np.uint8, copy=False), dsize)[..., None]
            # quantised to 8 bits like the training input (``hpatches-train descriptor --denoiser``)
            x = np.clip(np.rint(run(den, x).reshape(p.shape[0], dsize, dsize)), 0, 255).astype(np.float32)
            x = _resize_float(x, size)
        else:
            x = resize_patches(p.astype(np.uint8, copy=False), size)  # a no-op at the model's size
        d = run(model, x[..., None]).reshape(p.shape[0], -1)
        if not np.isfinite(d).all():
            raise DataError(
                where or describe.name,
                f"the model produced NaN or Inf descriptors for "
                f"{int((~np.isfinite(d).all(axis=1)).sum())} of {len(d)} patches",
            )
        return d

    describe.name = getattr(model, "name", "keras")
    describe.precision = policy
    #: the patch size the describer takes without resizing (the denoiser's when there is one): a dataset read
    #: at this size (its packed cache at that size) is described as it is
    describe.input_size = dsize if den is not None else size
    return describe


def compute_descriptors(
    dataset,
    describer: Describer,
    noisy: bool = False,
    progress: bool = True,
    progress_patches: int = 1 << 14,
    sequences: Seq[str] | None = None,
):
    """The descriptors of every sequence of ``dataset`` (an :class:`HPatchesDataset`: decoded in memory, or
    memory-mapped from its packed cache by :func:`~hpatches_kit.data.load_dataset`), as a
    :class:`~hpatches_kit.evaluation.descriptor_set.DescriptorSet`: a mapping ``{seq: {type: (N, D)}}`` whose
    arrays are views of one float32 block, filled as the patches are described.

    The tracks of all sequences are read as one stream in the set's order, ``progress_patches`` patches (whole
    tracks, across sequence boundaries, so a Keras describer runs full batches) per describer call, copied
    from the (mapped) tracks in their storage order. Memory: the block (``16 N D`` floats in all) and one piece
    of patches and its descriptors, whatever the dataset's size; the pages of a memory-mapped sequence leave the
    process's resident set once it is described (:func:`~hpatches_kit.data.cache.release_pages`).

    Args:
        dataset: an :class:`~hpatches_kit.data.HPatchesDataset`.
        describer: ``describe(patches (M, P, P) uint8) -> (M, D)``: :func:`keras_describer`,
            :func:`get_baseline` or any function; each patch is described on its own (the describers of a
            batch do not depend on each other).
        noisy: describe the N-HPatches noisy twins (``*_noise.png``).
        progress: show a progress bar.
        progress_patches: patches per describer call, rounded down to whole tracks (the progress bar counts
            patches described; a multiple of the Keras describers' batch sizes).
        sequences: the sequences to describe, in this order (default: all, in the dataset's order); pass
            the evaluated split's order so :func:`~hpatches_kit.evaluation.evaluate` uses the set as it is.

    Returns:
        A :class:`~hpatches_kit.evaluation.descriptor_set.DescriptorSet` (read like ``{sequence: {type: (N, D)
        float32}}``) for the 16 image types, ready for :func:`~hpatches_kit.evaluation.evaluate`.

    Raises:
        DataError: a sequence without noisy images (``noisy=True``) or without patches, or NaN / Inf
            descriptors.
        ValueError: a describer that returns the wrong number of rows.

    Shape:
        - ``output[seq][type]``: :math:`(N_{seq}, D)`

    Examples:
        >>> import numpy as np
        >>> from hpatches_kit.data import HPatchesDataset
        >>> from hpatches_kit.data.sequences import Sequence
        >>> seq = Sequence("i_demo", np.arange(5 * 16 * 8 * 8, dtype=np.uint32).reshape(5, 16, 8, 8).astype(np.uint8))
        >>> mean_and_max = lambda p: np.stack([p.mean((1, 2)), p.max((1, 2))], 1)
        >>> d = compute_descriptors(HPatchesDataset([seq]), mean_and_max, progress=False)
        >>> sorted(d["i_demo"])[:3], d["i_demo"]["ref"].shape
        (['e1', 'e2', 'e3'], (5, 2))
    """
    from tqdm.auto import tqdm

    from .descriptor_set import DescriptorSet

    nt = len(TYPES)
    seqs = list(dataset) if sequences is None else [dataset[s] for s in sequences]
    sources = []
    for seq in seqs:
        src = seq.noisy if noisy else seq.tracks
        if src is None:
            raise DataError(seq.path or seq.name, "sequence has no noisy (*_noise.png) images")
        if src.shape[0] == 0:
            raise DataError(seq.path or seq.name, "sequence has no patches to describe")
        sources.append((seq.name, src))
    if not sources:
        raise DataError(getattr(dataset, "root", None), "no sequences to describe")
    counts = {name: int(src.shape[0]) for name, src in sources}
    starts = np.concatenate([[0], np.cumsum(list(counts.values()))])  # each sequence's first track in the set
    total = int(starts[-1])
    step = max(1, int(progress_patches) // nt)  # tracks per describer call
    bar = tqdm(total=nt * total, desc="describing", unit="patch", unit_scale=True, disable=not progress, leave=False)
    out = None  # the set, allocated once the first call tells the dimension
    k = 0  # the sequence holding track g0
    for g0 in range(0, total, step):
        g1 = min(total, g0 + step)
        parts, names, k1 = [], [], k
        while k1 < len(sources) and starts[k1] < g1:  # the sequences overlapping tracks [g0, g1)
            name, src = sources[k1]
            a, b = max(g0, starts[k1]) - starts[k1], min(g1, starts[k1 + 1]) - starts[k1]
            parts.append(np.asarray(src[a:b]))  # whole tracks, contiguous in a cache: one copy
            names.append(name)
            k1 += 1
        tracks = parts[0] if len(parts) == 1 else np.concatenate(parts)
        del parts
        patches = tracks.reshape((g1 - g0) * nt, tracks.shape[2], tracks.shape[3])
        d = np.asarray(describer(patches))
        if d.ndim != 2 or d.shape[0] != patches.shape[0]:
            raise ValueError(f"{names[0]}: describer returned shape {d.shape} for {patches.shape[0]} patches")
        del tracks, patches
        if out is None:
            out = DescriptorSet.empty(counts, d.shape[1])
        elif d.shape[1] != out.dim:
            raise ValueError(f"{names[0]}: describer returned {d.shape[1]} dimensions, {out.dim} before")
        bad = ~np.isfinite(d).all(axis=1)
        if bad.any():
            g = g0 + int(np.nonzero(bad)[0][0]) // nt
            raise DataError(
                sources[int(np.searchsorted(starts, g, side="right")) - 1][0],
                "describer produced NaN or Inf descriptors",
            )
        # patch (track t, type j) of the piece -> row t of type j's block
        out.flat[:, g0:g1] = d.reshape(g1 - g0, nt, -1).transpose(1, 0, 2)
        bar.update(d.shape[0])
        while k < len(sources) and starts[k + 1] <= g1:  # sequences done: a mapped cache's pages leave the RSS
            release_pages(sources[k][1])
            k += 1
    bar.close()
    return out
