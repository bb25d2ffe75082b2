"""Multi-worker input sharding (issue 15): each worker reads its own share of the tracks and
yields its whole-track part of every global batch. Checked by brute force: every track's pixels hold its id, so
the source of each patch is read off the batch itself, and the global batch is rebuilt by concatenating the
workers' n-th batches."""

import numpy as np
import pytest

from hpatches_kit.training import descriptor_dataset, sharded_steps_per_epoch


def _id_tracks(t, p=4):
    """Track i: every pixel of every view = i (so a patch names its track)."""
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, 16, p, p)).copy()


def _ids(x, k):
    """Track id of every S x K row group, checking the K views of a group come from one track."""
    v = x.numpy()[..., 0]
    assert (v == v[:, :1, :1]).all()
    rows = v[:, 0, 0].astype(int).reshape(-1, k)
    assert (rows == rows[:, :1]).all(), rows
    return rows[:, 0]


def _epochs(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def test_global_batches_from_two_workers_have_unique_tracks_and_labels():
    t, S, K, W = 22, 6, 2, 2
    tracks = _id_tracks(t)
    steps = sharded_steps_per_epoch(t, S, W)
    assert steps == (t // W) // (S // W) == 3
    parts = [
        _epochs(descriptor_dataset(tracks, S, K, seed=5, augment=False, num_shards=W, shard_index=w), 2 * steps)
        for w in range(W)
    ]
    for n in range(2 * steps):
        xs, ys = zip(*(parts[w][n] for w in range(W)))
        for w, (x, y) in enumerate(zip(xs, ys)):
            assert x.shape == (S // W * K, 4, 4, 1)
            # worker w's labels are its slice of the global labels repeat(arange(S), K)
            np.testing.assert_array_equal(y.numpy(), np.repeat(np.arange(w * S // W, (w + 1) * S // W), K))
            assert set(_ids(x, K)) <= set(range(w, t, W))  # read from its own share, tracks[w::W], only
        ids = np.concatenate([_ids(x, K) for x in xs])
        labels = np.concatenate([y.numpy() for y in ys])
        assert len(set(ids)) == S  # no track twice in the global batch
        np.testing.assert_array_equal(labels, np.repeat(np.arange(S), K))
    for w in range(W):  # per worker, one epoch = a pass over its share without repeats
        for e in range(2):
            seen = np.concatenate([_ids(parts[w][n][0], K) for n in range(e * steps, (e + 1) * steps)])
            share = np.arange(w, t, W)  # tracks[w::W]
            assert len(set(seen)) == len(seen) and set(seen) <= set(share.tolist())
            assert len(share) - len(seen) < S // W  # at most the remainder of the share is left for next epoch


def test_one_shard_is_the_unsharded_stream_and_workers_draw_their_own_augmentation():
    rng = np.random.default_rng(0)
    tracks = rng.integers(0, 256, (12, 16, 4, 4), dtype=np.uint8)
    a = _epochs(descriptor_dataset(tracks, 4, 2, seed=3), 3)
    b = _epochs(descriptor_dataset(tracks, 4, 2, seed=3, num_shards=1, shard_index=0), 3)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    same = _id_tracks(12)  # identical content per share position: only the random streams can differ
    x0, _ = next(iter(descriptor_dataset(same * 0 + 100, 4, 2, seed=3, num_shards=2, shard_index=0)))
    x1, _ = next(iter(descriptor_dataset(same * 0 + 100, 4, 2, seed=3, num_shards=2, shard_index=1)))
    assert np.abs(x0.numpy() - x1.numpy()).max() > 1.0  # photometric jitter is not copied across workers


def test_bad_shard_arguments():
    tracks = _id_tracks(10)
    with pytest.raises(ValueError, match="divisible by the 4 workers"):
        descriptor_dataset(tracks, 6, 2, num_shards=4, shard_index=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        descriptor_dataset(tracks, 12, 2, num_shards=2, shard_index=1)
    with pytest.raises(ValueError, match="shard_index"):
        descriptor_dataset(tracks, 4, 2, num_shards=2, shard_index=2)
