import json

import numpy as np
import pytest

from hpatches_kit.data import TYPES, DataError, load_dataset, load_sequence, read_patch_image, resize_patches, split_sequences, load_splits
from conftest import make_tracks, write_dataset


def test_round_trip_tracks(tmp_path):
    rng = np.random.default_rng(1)
    tracks = make_tracks(5, 65, rng)
    write_dataset(tmp_path, {"v_x": tracks})
    seq = load_sequence(tmp_path / "v_x")
    assert seq.tracks.shape == (5, 16, 65, 65)
    np.testing.assert_array_equal(seq.tracks, tracks)
    # patch i of type t is rows [65*i, 65*(i+1)) of t.png
    np.testing.assert_array_equal(seq.patches("h3")[2], tracks[2, TYPES.index("h3")])
    assert seq.kind == "view"


def test_dataset_split_and_summary(tiny_dataset):
    ds = load_dataset(tiny_dataset, progress=False)
    assert ds.names == ["i_alpha", "i_beta", "v_delta", "v_gamma"]
    assert ds.num_tracks == 38
    assert ds.split("illum").names == ["i_alpha", "i_beta"]
    assert ds.split("view").names == ["v_delta", "v_gamma"]
    s = ds.summary()
    assert (s["sequences"], s["illum_sequences"], s["view_sequences"], s["patches"]) == (4, 2, 2, 38 * 16)


def test_resize_matches_opencv_per_patch():
    import cv2

    rng = np.random.default_rng(2)
    p = rng.integers(0, 256, size=(7, 65, 65), dtype=np.uint8)
    out = resize_patches(p, 32)
    ref = np.stack([cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA) for x in p])
    # stacking vertically lets rows of neighbouring patches mix only at the boundary row for INTER_AREA
    # with a non-integer ratio; interior rows must match exactly.
    np.testing.assert_array_equal(out[:, 1:-1], ref[:, 1:-1])


def test_bad_patch_width(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((130, 64), np.uint8))
    with pytest.raises(DataError, match=r"x\.png: patch width is 64 px, expected 65"):
        read_patch_image(tmp_path / "x.png", 65)


def test_official_splits_parse(shared_benchmark):
    sp = load_splits(shared_benchmark / "splits.json")
    assert set(sp) == {"a", "b", "c", "illum", "view", "full"}
    for k in "abc":
        assert len(sp[k]["train"]) == 76 and len(sp[k]["test"]) == 40
    assert len(sp["full"]["test"]) == 116
    assert len(sp["illum"]["test"]) == 57 and len(sp["view"]["test"]) == 59
    names = sp["full"]["test"]
    # the name rule gives the official illum/view lists
    assert sorted(split_sequences("illum", names)) == sorted(sp["illum"]["test"])
    assert sorted(split_sequences("view", names)) == sorted(sp["view"]["test"])
    assert split_sequences("a", names, splits_file=shared_benchmark / "splits.json") == sp["a"]["test"]
    with pytest.raises(DataError, match="not in the dataset"):
        split_sequences("a", names[:10], splits_file=shared_benchmark / "splits.json")


def test_atomic_write_permissions_follow_umask(tmp_path):
    import os
    import stat

    from hpatches_kit.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary left behind
