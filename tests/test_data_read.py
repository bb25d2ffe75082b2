import numpy as np
import pytest
from conftest import make_tracks, write_dataset

from hpatches_kit.data import (
    TYPES,
    DataError,
    load_dataset,
    load_sequence,
    load_splits,
    read_patch_image,
    resize_patches,
    split_sequences,
)


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


def test_read_png_written_by_opencv_in_the_official_layout(tmp_path):
    """A PNG made without the package's writer: patch i is rows [65 i, 65 i + 65) of a 65-px-wide image."""
    import cv2

    rng = np.random.default_rng(4)
    n = 6
    img = rng.integers(0, 256, size=(65 * n, 65), dtype=np.uint8)
    img[65 * 2, :] = 255  # first row of patch 2 and last row of patch 1 mark the boundary
    img[65 * 2 - 1, :] = 0
    d = tmp_path / "v_cv"
    d.mkdir()
    for t in TYPES:
        assert cv2.imwrite(str(d / f"{t}.png"), np.roll(img, 65 * TYPES.index(t), axis=0))
    got = read_patch_image(d / "ref.png")
    assert got.shape == (n, 65, 65)
    for i in range(n):
        np.testing.assert_array_equal(got[i], img[65 * i : 65 * i + 65])
    assert (got[2, 0] == 255).all() and (got[1, -1] == 0).all()
    seq = load_sequence(d)
    for j, t in enumerate(TYPES):  # type t's file is the image rolled by j patches: track i holds patch i - j
        for i in range(n):
            np.testing.assert_array_equal(seq.tracks[i, j], img[65 * ((i - j) % n) : 65 * ((i - j) % n) + 65])


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
    # and so must the boundary rows, where bleed between stacked patches would show: every row, every size,
    # down (area) and up (linear), on many patches (large stacks once shifted rows mid-stack)
    p = rng.integers(0, 256, size=(600, 65, 65), dtype=np.uint8)
    for size in (64, 48, 32, 29, 16, 96, 130):
        interp = cv2.INTER_AREA if size < 65 else cv2.INTER_LINEAR
        ref = np.stack([cv2.resize(x, (size, size), interpolation=interp) for x in p])
        np.testing.assert_array_equal(resize_patches(p, size), ref, err_msg=f"size {size}")
    q = rng.integers(0, 256, size=(300, 32, 32), dtype=np.uint8)
    ref = np.stack([cv2.resize(x, (65, 65), interpolation=cv2.INTER_LINEAR) for x in q])
    np.testing.assert_array_equal(resize_patches(q, 65), ref)
    assert resize_patches(q[None, :3], 65).shape == (1, 3, 65, 65)  # leading dimensions kept


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
