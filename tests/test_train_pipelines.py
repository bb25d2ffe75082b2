"""tf.data pipelines checked against brute-force NumPy look-ups of where every output patch came from."""

import numpy as np
import pytest
import tensorflow as tf

from hpatches_kit.training import (
    denoise_dataset,
    descriptor_dataset,
    make_sk_batch,
    triplet_dataset,
)


def _tracks(t=24, p=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, 16, p, p), dtype=np.uint8)


def _locate(patch, tracks):
    """(track, view) of the source patch equal to ``patch`` (brute force)."""
    hits = np.argwhere((tracks == patch[None, None]).all(axis=(2, 3)))
    assert len(hits) == 1, f"patch found {len(hits)} times"
    return tuple(hits[0])


def test_sk_batches_are_track_major_distinct_views_and_static():
    tracks = _tracks()
    S, K = 5, 3
    ds = descriptor_dataset(tracks, S, K, seed=3, augment=False, repeat=False)
    assert ds.element_spec[0].shape == (S * K, 8, 8, 1) and ds.element_spec[1].shape == (S * K,)
    seen = []
    batches = list(ds)
    assert len(batches) == len(tracks) // S  # drop_remainder
    for x, y in batches:
        np.testing.assert_array_equal(y.numpy(), np.repeat(np.arange(S), K))
        src = [_locate(p, tracks) for p in x.numpy()[..., 0].astype(np.uint8)]
        for s in range(S):
            group = src[s * K : (s + 1) * K]
            assert len({t for t, _ in group}) == 1  # one track per label
            assert len({v for _, v in group}) == K  # K distinct views
        seen += [src[s * K][0] for s in range(S)]
    assert len(seen) == len(set(seen))  # no track twice within an epoch


def test_views_cover_all_16_and_seed_determinism():
    tracks = _tracks(t=10)
    a = [b[0].numpy() for b in descriptor_dataset(tracks, 5, 2, seed=7).take(30)]
    b = [b[0].numpy() for b in descriptor_dataset(tracks, 5, 2, seed=7).take(30)]
    c = [b[0].numpy() for b in descriptor_dataset(tracks, 5, 2, seed=8).take(30)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))
    views = {
        _locate(p, tracks)[1]
        for x in descriptor_dataset(tracks, 5, 2, seed=1, augment=False).take(40)
        for p in x[0].numpy()[..., 0].astype(np.uint8)
    }
    assert views == set(range(16))


def test_photometric_jitter_is_per_view_affine():
    tracks = np.full((6, 16, 8, 8), 100, np.uint8)
    tracks[..., :4] = 60  # two grey levels: mean 80, contrast 40
    x, _ = next(iter(descriptor_dataset(tracks, 3, 4, seed=0, gain=0.2, offset=20.0)))
    x = x.numpy()[..., 0]
    lo, hi = x[:, 0, 0], x[:, 0, 7]
    contrast = (hi - lo) / 40.0
    mean = (hi + lo) / 2 - 80.0
    assert np.all((contrast >= 0.8 - 1e-4) & (contrast <= 1.2 + 1e-4))
    assert np.all(np.abs(mean) <= 20.0 + 1e-4)
    assert len(np.unique(np.round(contrast, 5))) == len(contrast)  # independent per view
    np.testing.assert_allclose(x[:, :, :4], lo[:, None, None] + 0 * x[:, :, :4])  # still an affine map


def _dihedral(p):
    out = []
    for f in (p, p[:, ::-1]):
        for k in range(4):
            out.append(np.rot90(f, k))
    return out


def test_geometric_augmentation_is_one_transform_per_track():
    tracks = _tracks(t=8, p=6, seed=2)
    x, y = make_sk_batch(tf.constant(tracks[:8]), 5, 11, views=4, augment=True, geometric=True, gain=0.0, offset=0.0)
    x = x.numpy()[..., 0]
    codes = set()
    for s in range(8):
        per_track = []
        for k in range(4):
            cands = [
                (v, j)
                for v in range(16)
                for j, d in enumerate(_dihedral(tracks[s, v].astype(np.float32)))
                if np.array_equal(d, x[s * 4 + k])
            ]
            assert cands, "augmented patch is not a dihedral transform of a view of its track"
            per_track.append({j for _, j in cands})
        common = set.intersection(*per_track)
        assert common  # the same transform for all K views
        codes |= common
    assert len(codes) > 1


def test_denoise_pairs_stay_aligned_under_augmentation():
    clean = _tracks(t=4, p=8, seed=5)
    noisy = 255 - clean  # a known per-pixel relation that any misalignment would break
    n = 0
    for nx, cx in denoise_dataset(noisy, clean, batch_size=16, seed=1, repeat=False):
        np.testing.assert_array_equal(nx.numpy(), 255.0 - cx.numpy())
        n += 1
    assert n == 4 * 16 // 16
    with pytest.raises(ValueError, match="equal-shape"):
        denoise_dataset(noisy[:2], clean, 4)


def test_random_triplets_follow_the_baseline_rule():
    t = 16
    tracks = (np.arange(t)[:, None] * 16 + np.arange(16)[None, :]).astype(np.uint8)[:, :, None, None] * np.ones(
        (1, 1, 4, 4), np.uint8
    )
    (a, p, n), y = next(iter(triplet_dataset(tracks, batch_size=64, seed=3)))
    code = lambda z: z.numpy()[:, 0, 0, 0].astype(int)  # noqa: E731
    a, p, n = code(a), code(p), code(n)
    assert np.all(a // 16 == p // 16) and np.all(a % 16 != p % 16)
    assert np.all(n // 16 != a // 16)
    assert y.shape == (64,)


def test_documented_usage_with_all_tracks(tiny_dataset):
    """``descriptor_dataset(ds.all_tracks(), S, K)`` (the (tracks, seq_ids) pair) gives the batches of the
    tracks array itself; every patch is found in the dataset's tracks (brute force)."""
    from hpatches_kit.data import load_dataset

    ds = load_dataset(tiny_dataset, size=16, progress=False)
    pair = ds.all_tracks()
    a = next(iter(descriptor_dataset(pair, 4, 2, seed=3, augment=False)))
    b = next(iter(descriptor_dataset(pair[0], 4, 2, seed=3, augment=False)))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    for x in a[0].numpy()[..., 0]:
        _locate(x.astype(np.uint8), pair[0])


@pytest.mark.parametrize("workers", [1, 2])
def test_track_labels_are_dataset_wide_ids_under_sharding(workers):
    # every view of track t is the constant t: a label must equal its patch's value, in every shard and across
    # epochs (a track drawn again keeps its id), and the shards of one global batch hold distinct tracks
    from hpatches_kit.training.pipelines import descriptor_dataset

    T, S = 40, 8
    tracks = np.broadcast_to(np.arange(T, dtype=np.uint8)[:, None, None, None], (T, 16, 8, 8)).copy()
    per_shard = []
    for w in range(workers):
        ds = descriptor_dataset(tracks, S, 2, seed=1, augment=False, labels="track", num_shards=workers, shard_index=w)
        got = [(x.numpy(), y.numpy()) for x, y in ds.take(12)]  # > 2 epochs of a share
        for x, y in got:
            np.testing.assert_array_equal(x[:, 0, 0, 0], y.astype(np.float32))
            assert len(set(y.tolist())) == S // workers and np.all(y % workers == w)  # this worker's share
        per_shard.append(np.concatenate([y for _, y in got]))
    seen = np.concatenate(per_shard)
    assert set(seen.tolist()) <= set(range(T)) and len(set(seen.tolist())) > S  # ids, not 0..S-1 per batch
    with pytest.raises(ValueError, match="labels"):
        descriptor_dataset(tracks, S, 2, labels="global")
