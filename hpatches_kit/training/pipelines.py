"""tf.data input pipelines for descriptor and denoiser training.

All pipelines are TPU-ready: static shapes (``drop_remainder=True``), pure TensorFlow ops (no
``py_function``), randomness from stateless ops keyed on ``(seed, batch index)`` so a pipeline is
deterministic under a seed, and they stream either from numpy arrays held in memory or from a packed cache's row store
(:class:`hpatches_kit.data.cache.StreamedTracks`).

**Descriptor batches** (:func:`descriptor_dataset`): ``S`` tracks x ``K`` views, track-major, so the labels
are ``repeat(arange(S), K)`` -- small per-batch ids, exact under Keras's float cast of ``y_true``. Tracks
are drawn without replacement within an epoch (one permutation per epoch, batched before repeating), so
a batch never holds the same track twice. The permutation is a stateless function of ``(seed, epoch)``: every
iterator of the dataset (Keras iterates once before training; a resumed run starts a fresh one) replays the
same stream. The ``K`` views are distinct and drawn at random from the
track's 16. Augmentation: per-view photometric jitter (random contrast gain and brightness offset, clipped
to [0, 255]) -- it changes nothing a descriptor should be sensitive to -- and, optionally, one random
flip/rot90 *per track*, applied identically to all its views (a new, still-consistent track); geometric
changes per view are *not* applied, since they would teach rotation invariance the benchmark does not want.

**Joint batches** (:func:`joint_dataset`): S x K batches of noisy patches with their clean twins and track
labels, for a denoiser and descriptor trained end to end. **Denoising pairs** (:func:`denoise_dataset`): ``(noisy, clean)`` patch pairs, the same random flip/rot90
applied to both. **Random triplets** (:func:`triplet_dataset`): the classic baseline generator,
``(anchor, positive, negative)`` with anchor/positive two distinct views of a track and the negative a
random view of another track.

**Sharding for several workers** (``num_shards=W, shard_index=w``): worker ``w`` holds
only its own share of the tracks (every ``W``-th track, ``tracks[w::W]``) and
yields *its part* of each global batch: ``S/W`` whole tracks x ``K`` views, labels
``repeat(arange(w*S/W, (w+1)*S/W), K)``. Concatenating the ``W`` shards' ``n``-th batches gives the global batch
``n`` -- distinct tracks (the shares are disjoint), labels unique across the global batch (what global-batch
mining needs), every track in exactly one share. ``W = 1`` is the unsharded stream, bit for bit.

Patches come out as ``float32`` in [0, 255], shape ``(..., P, P, 1)`` (what the models expect).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

NUM_VIEWS = 16


def _check_tracks(tracks, what="tracks"):
    if (
        isinstance(tracks, tuple)
        and len(tracks) == 2
        and np.ndim(tracks[0]) == 4
        and np.ndim(tracks[1]) == 1
        and len(tracks[0]) == len(tracks[1])
    ):
        tracks = tracks[0]  # HPatchesDataset.all_tracks() -> (tracks, sequence index per track)
    a = np.asarray(tracks) if not isinstance(tracks, np.ndarray) else tracks
    if a.ndim != 4 or a.shape[1] != NUM_VIEWS or a.shape[2] != a.shape[3] or a.dtype != np.uint8:
        raise ValueError(f"{what}: expected a (T, 16, P, P) uint8 array, got {a.shape} {a.dtype}")
    return a


def _seed_pair(seed, counter):
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(counter, tf.int64)])


def _rot_flip(x, code):
    """Apply one of 8 dihedral transforms to the last two axes of ``x`` (..., P, P); ``code`` (...,) in [0, 8)
    broadcast over the leading axes of ``x`` that it covers."""
    variants = []
    for flip in (False, True):
        y = tf.reverse(x, axis=[-1]) if flip else x
        for _ in range(4):
            variants.append(y)
            y = tf.reverse(tf.linalg.matrix_transpose(y), axis=[-2])  # rot90
    stack = tf.stack(variants, axis=0)  # (8, ...)
    code = tf.cast(code, tf.int32)
    onehot = tf.one_hot(code, 8, dtype=x.dtype)  # (..., 8)
    # move the variant axis last, weight and sum (exact: one-hot).
    perm = list(range(1, len(x.shape) + 1)) + [0]
    st = tf.transpose(stack, perm)
    oh = tf.reshape(onehot, tf.concat([tf.shape(code), tf.ones([len(x.shape) - len(code.shape)], tf.int32), [8]], 0))
    return tf.reduce_sum(st * oh, axis=-1)


def _photometric(x, seed, gain=0.2, offset=20.0, mean=None):
    """Per-patch contrast gain in [1-gain, 1+gain] around the patch mean (or ``mean``, (N, 1, 1)), brightness
    offset in [-offset, offset]; ``x`` (N, P, P) float32."""
    n = tf.shape(x)[0]
    s1 = tf.random.experimental.stateless_fold_in(seed, 1)
    s2 = tf.random.experimental.stateless_fold_in(seed, 2)
    g = tf.random.stateless_uniform([n, 1, 1], s1, 1.0 - gain, 1.0 + gain)
    o = tf.random.stateless_uniform([n, 1, 1], s2, -offset, offset)
    m = tf.reduce_mean(x, axis=[1, 2], keepdims=True) if mean is None else mean
    return tf.clip_by_value((x - m) * g + m + o, 0.0, 255.0)


def perturb_views(x, angle, scale):
    """Rotate each patch of ``x`` ``(N, P, P)`` float32 by ``angle`` radians (counter-clockwise on screen, i.e.
    the content turns as the detector's frame error would turn it) and magnify it by ``scale`` about its centre,
    bilinear, the missing border reflected; ``angle``, ``scale`` broadcast to ``(N,)``. Pure TensorFlow, static
    shapes (``ImageProjectiveTransformV3``, as ``keras.layers.RandomRotation``).

    The output pixel ``q`` samples the input at ``c + R(angle) (q - c) / scale`` (``c`` the patch centre)."""
    n, p = x.shape[0], x.shape[-1]
    angle = tf.reshape(tf.broadcast_to(tf.reshape(angle, [-1]), [n]), [n])
    scale = tf.reshape(tf.broadcast_to(tf.reshape(scale, [-1]), [n]), [n])
    c = (p - 1) / 2.0
    ca, sa = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = A @ (q - c) + c with A = R(angle) / scale; rows (a0 a1 a2), (b0 b1 b2)
    a2 = c - ca * c + sa * c
    b2 = c - sa * c - ca * c
    z = tf.zeros_like(ca)
    transforms = tf.stack([ca, -sa, a2, sa, ca, b2, z, z], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[..., None],
        transforms=transforms,
        output_shape=tf.constant([p, p], tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return tf.reshape(out, [n, p, p])


def make_sk_batch(
    batch_tracks,
    counter,
    seed,
    views: int,
    augment: bool = True,
    geometric: bool = False,
    gain: float = 0.2,
    offset: float = 20.0,
    paired=None,
    view_noise=None,
    track_ids=None,
):
    """Turn ``(S, 16, P, P) uint8`` tracks into an S x K batch: ``((S*K, P, P, 1) float32, (S*K,) int32)``.

    ``track_ids``: ``(S,)`` int dataset-wide ids of the tracks: the labels are then ``repeat(track_ids, K)``
    instead of ``repeat(arange(S), K)`` (what a cross-batch memory needs to know a track drawn again).

    ``view_noise``: a :class:`~hpatches_kit.data.view_noise.ViewNoise` (the error of a detector's orientation
    and scale); every view of a track but the first is rotated and rescaled about the patch centre by its own
    draw (:func:`perturb_views`), so with ``K = 2`` the two views differ by one draw of the measured error.

    ``paired``: an optional second ``(S, 16, P, P) uint8`` stack of the same tracks (the clean twins of noisy
    tracks); it gets the same views, the same flip/rot90 and the same photometric gain and offset, and the
    result is ``(x, labels, x_paired)``. The photometric mean is then the *paired* patch's, so that with
    ``x = clean + noise`` the output is ``T(clean) + gain * noise``: the jittered noisy patch stays the
    jittered clean patch plus (scaled) noise."""
    s = batch_tracks.shape[0]
    p = batch_tracks.shape[-1]
    key = _seed_pair(seed, counter)
    # K distinct views per track: the K smallest of 16 uniform keys.
    u = tf.random.stateless_uniform([s, NUM_VIEWS], tf.random.experimental.stateless_fold_in(key, 0))
    idx = tf.math.top_k(-u, k=views).indices  # (S, K)
    stacks = [batch_tracks] if paired is None else [batch_tracks, paired]
    xs = [tf.cast(tf.gather(t, idx, axis=1, batch_dims=1), tf.float32) for t in stacks]  # (S, K, P, P) each
    if augment and geometric:
        code = tf.random.stateless_uniform([s], tf.random.experimental.stateless_fold_in(key, 3), 0, 8, dtype=tf.int32)
        xs = [_rot_flip(x, code) for x in xs]
    if augment and view_noise is not None and view_noise.active:
        angle, scale = view_noise.sample_tf([s, views], tf.random.experimental.stateless_fold_in(key, 5))
        first = tf.one_hot(tf.zeros([s], tf.int32), views, on_value=0.0, off_value=1.0)  # (S, K): 0 for view 0
        # the frame is turned by the orientation error and grown by the scale error: content magnified by 1 / r
        angle, mag = angle * first, tf.pow(1.0 / scale, first)
        xs = [tf.reshape(perturb_views(tf.reshape(x, [s * views, p, p]), angle, mag), [s, views, p, p]) for x in xs]
    xs = [tf.reshape(x, [s * views, p, p]) for x in xs]
    if augment:
        pkey = tf.random.experimental.stateless_fold_in(key, 4)
        mean = None if paired is None else tf.reduce_mean(xs[1], axis=[1, 2], keepdims=True)
        xs = [_photometric(x, pkey, gain, offset, mean=mean) for x in xs]
    ids = tf.range(s, dtype=tf.int32) if track_ids is None else tf.cast(tf.reshape(track_ids, [s]), tf.int32)
    labels = tf.repeat(ids, views)
    xs = [tf.reshape(x, [s * views, p, p, 1]) for x in xs]
    return (xs[0], labels) if paired is None else (xs[0], labels, xs[1])


def _validate_sk(num_tracks, tracks_per_batch, views):
    if views < 2 or views > NUM_VIEWS:
        raise ValueError(f"views (K) must be in [2, 16], got {views}")
    if tracks_per_batch < 2:
        raise ValueError(f"tracks_per_batch (S) must be >= 2, got {tracks_per_batch}")
    if num_tracks is not None and num_tracks < tracks_per_batch:
        raise ValueError(f"only {num_tracks} tracks: fewer than one batch of S={tracks_per_batch} tracks")


def _check_shard(tracks_per_batch: int, num_shards: int, shard_index: int) -> int:
    """Tracks per shard batch ``S / W``; raises unless the global batch splits into whole tracks per shard."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} must be in [0, num_shards={num_shards})")
    if tracks_per_batch % num_shards:
        raise ValueError(
            f"tracks per batch S={tracks_per_batch} must be divisible by the {num_shards} workers so "
            "every worker gets whole tracks"
        )
    return tracks_per_batch // num_shards


def sharded_steps_per_epoch(num_tracks: int, tracks_per_batch: int, num_shards: int = 1) -> int:
    """Global batches in one pass over the tracks when ``num_shards`` workers each read their own share: the
    smallest share's ``len // (S / W)`` (``num_tracks // S`` for one worker)."""
    return (num_tracks // num_shards) // _check_shard(tracks_per_batch, num_shards, 0)


def _shard_seed(seed: int, shard_index: int) -> int:
    return int(seed) + 7919 * int(shard_index)  # shard 0 keeps the unsharded stream's seed


def descriptor_dataset(
    tracks,
    tracks_per_batch: int = 256,
    views: int = 2,
    seed: int = 0,
    augment: bool = True,
    geometric: bool = False,
    repeat: bool = True,
    prefetch: bool = True,
    gain: float = 0.2,
    offset: float = 20.0,
    num_shards: int = 1,
    shard_index: int = 0,
    view_noise=None,
    labels: str = "batch",
) -> tf.data.Dataset:
    """S x K descriptor batches from ``(T, 16, P, P) uint8`` tracks held in memory (see module docstring).

    Args:
        tracks: ``(T, 16, P, P) uint8`` (or the ``(tracks, seq_ids)`` pair of ``HPatchesDataset.all_tracks``).
        tracks_per_batch: ``S``, tracks per *global* batch. views: ``K``.
        gain, offset: photometric jitter ranges (contrast gain in ``1 +- gain``, brightness in ``+- offset``).
        num_shards, shard_index: this worker's share (module docstring): only ``tracks[shard_index::num_shards]``
            is held, and the batches are this worker's ``S / num_shards`` tracks of each global batch.
        view_noise: per-view rotation and scale noise (:func:`make_sk_batch`; ``None``: none), a
            :class:`~hpatches_kit.data.view_noise.ViewNoise` or a name for
            :func:`~hpatches_kit.data.view_noise.resolve_view_noise`.
        labels: ``"batch"`` (default): ``repeat(arange(o, o + S'), K)``, per-batch ids; ``"track"``: each
            track's dataset-wide index (its row in ``tracks``, the same under every sharding), so a track drawn
            again in a later batch carries the same label (cross-batch memory, ``--xbm``).

    Returns:
        A dataset of ``(x, labels)``: ``x`` (S'*K, P, P, 1) float32 in [0, 255], ``labels`` (S'*K,) int32 =
        ``repeat(arange(o, o + S'), K)`` with ``S' = S / num_shards`` and ``o = shard_index * S'``.
        ``repeat=False`` gives one epoch (``T' // S'`` batches of the share's ``T'`` tracks).
    """
    from ..data.cache import StreamedTracks
    from ..data.view_noise import resolve_view_noise

    view_noise = resolve_view_noise(view_noise) if view_noise is not None else None
    if labels not in ("batch", "track"):
        raise ValueError(f"labels must be 'batch' or 'track', got {labels!r}")
    global_ids = labels == "track"
    # one batch maker for both sources: (tracks of the batch, batch index, dataset-wide ids or None) -> batch
    make = functools.partial(
        _shard_batch,
        seed=seed,
        views=views,
        augment=augment,
        geometric=geometric,
        gain=gain,
        offset=offset,
        num_shards=num_shards,
        shard_index=shard_index,
        view_noise=view_noise,
    )
    if isinstance(tracks, StreamedTracks) and tracks.has_row_store:
        return _descriptor_stream(tracks, tracks_per_batch, views, seed, repeat, prefetch, make, global_ids)
    tracks = _check_tracks(tracks)
    s = _check_shard(tracks_per_batch, num_shards, shard_index)
    _validate_sk(tracks.shape[0], tracks_per_batch, views)
    if num_shards > 1:  # every share holds >= T // W >= S // W tracks
        tracks = tracks[shard_index::num_shards]
    t = tracks.shape[0]
    table = tf.constant(tracks)
    ds = _epoch_batches(t, s, _shard_seed(seed, shard_index), repeat).enumerate()
    ds = ds.map(
        lambda i, ids: make(tf.gather(table, ids), i, track_ids=ids * num_shards + shard_index if global_ids else None),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _descriptor_stream(tracks, tracks_per_batch, views, seed, repeat, prefetch, make, global_ids) -> tf.data.Dataset:
    """:func:`descriptor_dataset` streamed from a packed cache's row store: the same track-index batches
    (:func:`_epoch_batches` over this worker's share), each track read by ``tf.io.read_file`` instead of
    gathered from an in-memory table, then the same batch maker (:func:`_shard_batch`) -- bit-identical batches,
    no table held (memory: the prefetched batches)."""
    num_shards, shard_index = make.keywords["num_shards"], make.keywords["shard_index"]
    p = tracks.shape[-1]
    if tracks.shape[1:] != (NUM_VIEWS, p, p):
        raise ValueError(f"tracks: expected (T, 16, P, P), got {tracks.shape}")
    s = _check_shard(tracks_per_batch, num_shards, shard_index)
    _validate_sk(len(tracks), tracks_per_batch, views)
    rows = tracks.rows[shard_index::num_shards] if num_shards > 1 else tracks.rows
    t = len(rows)
    table = tf.constant(rows, tf.int64)  # cache row of each track of the share: 8 bytes a track
    ds = _epoch_batches(t, s, _shard_seed(seed, shard_index), repeat).unbatch()
    ds = (
        ds.map(
            lambda i: (tracks.tf_read(tf.gather(table, i)), i * num_shards + shard_index),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .batch(s, drop_remainder=True)
        .enumerate()
    )
    ds = ds.map(
        lambda i, b: make(b[0], i, track_ids=b[1] if global_ids else None),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _epoch_batches(t: int, s: int, seed: int, repeat: bool) -> tf.data.Dataset:
    """Track-index batches ``(s,) int64``: epoch ``e`` is a permutation of ``range(t)`` drawn statelessly from
    ``(seed, e)`` and cut into ``t // s`` batches. Stateless, so every iterator of the dataset replays the same
    stream -- however many times Keras (or a resume) iterates it -- and a batch never holds a track twice."""
    n = t // s

    def epoch(e):
        key = _seed_pair(seed, e + (1 << 40))  # counters apart from make_sk_batch's (seed, batch index)
        perm = tf.argsort(tf.random.stateless_uniform([t], key), stable=True)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(tf.cast(perm[: n * s], tf.int64), [n, s]))

    epochs = tf.data.Dataset.range(2**62 if repeat else 1)
    return epochs.flat_map(epoch)


def _shard_batch(
    batch_tracks,
    i,
    seed,
    views,
    augment,
    geometric,
    gain,
    offset,
    num_shards,
    shard_index,
    view_noise=None,
    track_ids=None,
):
    """:func:`make_sk_batch` for shard ``shard_index``: its own random stream (counter ``i * W + w``) and labels
    offset by ``w * S'`` so they are unique across the global batch (or, with ``track_ids``, the tracks'
    dataset-wide ids, unique already)."""
    x, y = make_sk_batch(
        batch_tracks,
        i * num_shards + shard_index,
        seed,
        views,
        augment,
        geometric,
        gain,
        offset,
        view_noise=view_noise,
        track_ids=track_ids,
    )
    return (x, y) if track_ids is not None else (x, y + shard_index * batch_tracks.shape[0])


def joint_dataset(
    noisy,
    clean,
    tracks_per_batch: int = 256,
    views: int = 2,
    seed: int = 0,
    augment: bool = True,
    geometric: bool = False,
    repeat: bool = True,
    prefetch: bool = True,
    gain: float = 0.2,
    offset: float = 20.0,
    outputs=("descriptor", "denoised"),
) -> tf.data.Dataset:
    """S x K batches of (noisy patch, clean patch, track label) for training a denoiser and a descriptor end to
    end (:func:`hpatches_kit.training.joint.train_joint`).

    Args:
        noisy, clean: ``(T, 16, P, P) uint8`` tracks, the noisy twins and their clean originals, the same tracks
            in the same order (``ds.all_tracks(noisy=True)[0]`` and ``ds.all_tracks()[0]``).
        tracks_per_batch, views: S and K, as in :func:`descriptor_dataset`.
        seed, augment, geometric, gain, offset: as in :func:`descriptor_dataset`; the clean patch gets exactly
            the noisy patch's view, flip/rot90 and photometric gain/offset (about the clean patch's mean).
        outputs: the names of the model's two outputs the targets are keyed by: descriptor, denoised patch.

    Returns:
        A dataset of ``(x, {outputs[0]: labels, outputs[1]: clean})``.

    Shape:
        ``x``, ``clean``: ``(S*K, P, P, 1)`` float32 in [0, 255]; ``labels``: ``(S*K,)`` int32 =
        ``repeat(arange(S), K)``. Static shapes (``drop_remainder``), no ``py_function``.

    The batches draw the same tracks and views as ``descriptor_dataset(noisy, ...)`` under the same seed, so
    an arm trained on the noisy tracks alone sees the same stream.

    Examples:
        >>> ds = joint_dataset(noisy, clean, tracks_per_batch=128, views=2)
        >>> x, y = next(iter(ds)); x.shape, y["descriptor"].shape, y["denoised"].shape
        (TensorShape([256, 32, 32, 1]), TensorShape([256]), TensorShape([256, 32, 32, 1]))
    """
    noisy, clean = _check_tracks(noisy, "noisy tracks"), _check_tracks(clean, "clean tracks")
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy tracks {noisy.shape} and clean tracks {clean.shape} differ in shape")
    t = noisy.shape[0]
    _validate_sk(t, tracks_per_batch, views)
    table_n, table_c = tf.constant(noisy), tf.constant(clean)
    d_name, c_name = outputs

    def make(i, ids):
        x, labels, c = make_sk_batch(
            tf.gather(table_n, ids), i, seed, views, augment, geometric, gain, offset, paired=tf.gather(table_c, ids)
        )
        return x, {d_name: labels, c_name: c}

    # the epoch stream of descriptor_dataset (one worker): the same tracks and views under the same seed
    ds = _epoch_batches(t, tracks_per_batch, _shard_seed(seed, 0), repeat).enumerate()
    ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


# -- denoising pairs -------------------------------------------------------------------------------------


def denoise_dataset(
    noisy, clean, batch_size: int = 128, seed: int = 0, augment: bool = True, repeat: bool = True, prefetch: bool = True
) -> tf.data.Dataset:
    """``(noisy, clean)`` batches of ``(B, P, P, 1)`` float32 in [0, 255] from two equal-shape uint8 arrays
    (``(T, 16, P, P)`` tracks or ``(N, P, P)`` patches). ``augment`` applies one random flip/rot90 per pair,
    the same to noisy and clean."""
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    if noisy.shape != clean.shape or noisy.dtype != np.uint8 or clean.dtype != np.uint8 or noisy.ndim not in (3, 4):
        raise ValueError(
            f"noisy/clean must be equal-shape uint8 (T,16,P,P) or (N,P,P) arrays, got {noisy.shape} "
            f"{noisy.dtype} and {clean.shape} {clean.dtype}"
        )
    p = noisy.shape[-1]
    pairs = np.stack([noisy.reshape(-1, p, p), clean.reshape(-1, p, p)], axis=1)  # (N, 2, P, P)
    n = pairs.shape[0]
    if n < batch_size:
        raise ValueError(f"only {n} patch pairs: fewer than one batch of {batch_size}")
    table = tf.constant(pairs)

    def make(i, ids):
        x = tf.cast(tf.gather(table, ids), tf.float32)  # (B, 2, P, P)
        if augment:
            code = tf.random.stateless_uniform([batch_size], _seed_pair(seed, i), 0, 8, dtype=tf.int32)
            x = _rot_flip(x, code)
        return tf.reshape(x[:, 0], [batch_size, p, p, 1]), tf.reshape(x[:, 1], [batch_size, p, p, 1])

    ds = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
    )
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate().map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


# -- random triplets (classic baseline) ------------------------------------------------------------------


def triplet_dataset(tracks, batch_size: int = 128, seed: int = 0, repeat: bool = True) -> tf.data.Dataset:
    """Random triplets like the classic HPatches baseline generator: yields ``((a, p, n), y)`` with ``a``,
    ``p`` two distinct views of one random track, ``n`` a random view of a different random track (each
    ``(B, P, P, 1)`` float32) and ``y`` a dummy ``(B,)`` zeros target."""
    tracks = _check_tracks(tracks)
    t, p = tracks.shape[0], tracks.shape[-1]
    if t < 2:
        raise ValueError("triplet_dataset needs at least 2 tracks")
    table = tf.constant(tracks)

    def make(i):
        key = _seed_pair(seed, i)
        f = lambda k: tf.random.experimental.stateless_fold_in(key, k)  # noqa: E731
        a_tr = tf.random.stateless_uniform([batch_size], f(0), 0, t, dtype=tf.int64)
        n_tr = (a_tr + tf.random.stateless_uniform([batch_size], f(1), 1, t, dtype=tf.int64)) % t  # != a_tr
        va = tf.random.stateless_uniform([batch_size], f(2), 0, NUM_VIEWS, dtype=tf.int64)
        vp = (va + tf.random.stateless_uniform([batch_size], f(3), 1, NUM_VIEWS, dtype=tf.int64)) % NUM_VIEWS
        vn = tf.random.stateless_uniform([batch_size], f(4), 0, NUM_VIEWS, dtype=tf.int64)

        def g(tr, v):
            return tf.reshape(tf.cast(tf.gather_nd(table, tf.stack([tr, v], 1)), tf.float32), [batch_size, p, p, 1])

        return (g(a_tr, va), g(a_tr, vp), g(n_tr, vn)), tf.zeros([batch_size], tf.float32)

    ds = tf.data.Dataset.range(2**62) if repeat else tf.data.Dataset.range(max(1, t // batch_size))
    return ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
