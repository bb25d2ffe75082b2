"""Packed cache: pack -> load_packed equals load_dataset (the reader is the reference); TFRecord shards parsed
with parse_track_example in tf.data equal the arrays; stale/corrupt caches are detected; writes are atomic."""

import json
import os

import numpy as np
import pytest
from conftest import make_tracks, write_dataset

from hpatches_kit.cli.data import main
from hpatches_kit.data import DataError, Sequence, load_dataset
from hpatches_kit.data.pack import MANIFEST, load_packed, pack_dataset, parse_track_example, track_example


@pytest.fixture
def noisy_dataset(tmp_path):
    rng = np.random.default_rng(3)
    seqs = {n: make_tracks(k, 32, rng) for n, k in [("i_one", 6), ("v_two", 5), ("v_three", 4)]}
    noisy = {
        n: np.clip(t.astype(int) + rng.integers(-30, 30, t.shape), 0, 255).astype(np.uint8) for n, t in seqs.items()
    }
    return write_dataset(tmp_path / "noisy-ds", seqs, noisy)


def test_pack_roundtrip_equals_loaded_dataset(tiny_dataset, tmp_path):
    out = pack_dataset(tiny_dataset, tmp_path / "cache", size=32, shards=3, progress=False)
    pk = load_packed(out, verify="full", source=tiny_dataset)
    ds = load_dataset(tiny_dataset, size=32, progress=False)
    ref, ref_ids = ds.all_tracks()
    assert isinstance(pk.tracks, np.memmap)
    np.testing.assert_array_equal(pk.tracks, ref)
    np.testing.assert_array_equal(pk.seq_ids, ref_ids)
    assert pk.seq_names == ds.names and pk.noisy is None and pk.patch_size == 32
    # track_idx: position of the track inside its sequence
    for k, s in enumerate(ds):
        np.testing.assert_array_equal(pk.track_idx[pk.seq_ids == k], np.arange(s.num_patches))
        np.testing.assert_array_equal(pk.to_dataset()[s.name].tracks, s.tracks)
    m = pk.manifest
    assert m["num_tracks"] == 38 and m["seq_counts"] == [12, 9, 7, 10] and len(m["shards"]) == 3
    assert sum(s["tracks"] for s in m["shards"]) == 38
    # in-RAM load gives the same arrays
    pk2 = load_packed(out, mmap=False)
    assert not isinstance(pk2.tracks, np.memmap)
    np.testing.assert_array_equal(pk2.tracks, ref)
    # no temp folders left next to the cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "hpatches-release"]


def test_pack_native_size_and_noisy(noisy_dataset, tmp_path):
    out = pack_dataset(noisy_dataset, tmp_path / "c", size=None, progress=False)
    pk = load_packed(out, verify="full")
    ds = load_dataset(noisy_dataset, progress=False)
    np.testing.assert_array_equal(pk.tracks, ds.all_tracks()[0])
    np.testing.assert_array_equal(pk.noisy, ds.all_tracks(noisy=True)[0])
    # from an in-memory dataset object too
    out2 = pack_dataset(ds, tmp_path / "c2", size=None, progress=False)
    pk2 = load_packed(out2)
    np.testing.assert_array_equal(pk2.noisy, pk.noisy)
    np.testing.assert_array_equal(pk2.tracks, pk.tracks)
    out3 = pack_dataset(noisy_dataset, tmp_path / "c3", size=None, noise=False, progress=False)
    assert load_packed(out3).noisy is None


def test_tfrecord_pipeline_equals_arrays(noisy_dataset, tmp_path):
    import tensorflow as tf

    pk = load_packed(pack_dataset(noisy_dataset, tmp_path / "c", size=None, shards=2, progress=False))
    # per-example parse in a tf.data pipeline
    got = list(pk.tf_dataset(noisy=True, num_parallel_reads=1).as_numpy_iterator())
    assert len(got) == pk.num_tracks
    order = np.array([g["track"] for g in got])
    np.testing.assert_array_equal(np.sort(order), np.arange(pk.num_tracks))
    for g in got:
        t = g["track"]
        assert g["patches"].dtype == np.uint8
        np.testing.assert_array_equal(g["patches"], pk.tracks[t])
        np.testing.assert_array_equal(g["noisy"], pk.noisy[t])
        assert g["seq"] == pk.seq_ids[t]
    # static shapes in the element spec, no py_function
    spec = pk.tf_dataset(noisy=True).element_spec
    assert spec["patches"].shape.as_list() == [16, 32, 32] and spec["noisy"].shape.as_list() == [16, 32, 32]
    # batched parse (rank-1 input) gives the same
    ds = tf.data.TFRecordDataset(pk.tfrecord_files).batch(4).map(lambda s: parse_track_example(s, 32))
    assert ds.element_spec["patches"].shape.as_list() == [None, 16, 32, 32]
    b = np.concatenate([x["patches"] for x in ds.as_numpy_iterator()])
    np.testing.assert_array_equal(b, pk.tracks)


def test_parse_wrong_patch_size_fails_loudly():
    import tensorflow as tf

    rec = track_example(np.zeros((16, 8, 8), np.uint8), 0, 0)
    with pytest.raises(tf.errors.InvalidArgumentError):
        parse_track_example(tf.constant(rec), 9)


def _cache(tiny_dataset, tmp_path):
    return pack_dataset(tiny_dataset, tmp_path / "cache", size=16, shards=2, progress=False)


def test_detects_truncated_array(tiny_dataset, tmp_path):
    out = _cache(tiny_dataset, tmp_path)
    with open(out / "tracks.npy", "r+b") as f:
        f.truncate(os.path.getsize(out / "tracks.npy") - 100)
    with pytest.raises(
        DataError, match=r"tracks\.npy: stale or corrupt packed cache: file is \d+ bytes, manifest says"
    ):
        load_packed(out)


def test_detects_flipped_byte_with_full_verify(tiny_dataset, tmp_path):
    out = _cache(tiny_dataset, tmp_path)
    f = out / "tracks.npy"
    with open(f, "r+b") as fh:
        fh.seek(os.path.getsize(f) // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    # issue 38: the quick check verifies the digests too, once per cache (remembered by size, time and inode;
    # the rewrite changed the time)
    for verify in ("quick", "full"):
        with pytest.raises(DataError, match=r"tracks\.npy: stale or corrupt packed cache: sha256 checksum mismatch"):
            load_packed(out, verify=verify)


def test_detects_missing_shard_and_bad_manifest(tiny_dataset, tmp_path):
    out = _cache(tiny_dataset, tmp_path)
    shard = out / json.loads((out / MANIFEST).read_text())["shards"][1]["file"]
    shard.unlink()
    with pytest.raises(
        DataError, match=r"tracks-00001-of-00002\.tfrecord: stale or corrupt packed cache: TFRecord shard is missing"
    ):
        load_packed(out)
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: stale or corrupt packed cache: manifest is not valid JSON"):
        load_packed(out)
    (out / MANIFEST).unlink()
    with pytest.raises(DataError, match=r"not a packed cache \(no manifest\.json\)"):
        load_packed(out)


def test_detects_old_format_and_inconsistent_counts(tiny_dataset, tmp_path):
    out = _cache(tiny_dataset, tmp_path)
    m = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps(dict(m, version=0)))
    with pytest.raises(DataError, match="written by format version 0"):
        load_packed(out)
    (out / MANIFEST).write_text(json.dumps(dict(m, seq_counts=[12, 9, 7, 11])))
    with pytest.raises(DataError, match="manifest counts disagree"):
        load_packed(out)


def test_detects_stale_source(tiny_dataset, tmp_path):
    out = _cache(tiny_dataset, tmp_path)
    load_packed(out, source=tiny_dataset)
    f = tiny_dataset / "v_gamma" / "e1.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="changed since it was packed"):
        load_packed(out, source=tiny_dataset)


def test_failed_pack_leaves_previous_cache_intact(tiny_dataset, tmp_path):
    out = _cache(tiny_dataset, tmp_path)
    before = (out / MANIFEST).read_text()
    (tiny_dataset / "v_delta" / "h3.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"v_delta/h3\.png: cannot decode image"):
        pack_dataset(tiny_dataset, out, size=16, progress=False)
    assert (out / MANIFEST).read_text() == before  # old cache untouched ...
    load_packed(out, verify="full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "hpatches-release"]  # ... and no temp folder left


def test_refuses_to_overwrite_non_cache_folder(tiny_dataset, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("important")
    with pytest.raises(DataError, match="not a packed cache; refusing to overwrite"):
        pack_dataset(tiny_dataset, tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "important"


def test_pack_split(tiny_dataset, tmp_path):
    out = pack_dataset(tiny_dataset, tmp_path / "c", size=16, split="view", tfrecords=False, progress=False)
    pk = load_packed(out)
    assert pk.seq_names == ["v_delta", "v_gamma"] and pk.num_tracks == 17 and pk.tfrecord_files == []


def test_cli_pack(tiny_dataset, tmp_path, capsys):
    rc = main(
        [
            "pack",
            "--data",
            str(tiny_dataset),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "24",
            "--shards",
            "2",
            "--split",
            "illum",
            "-q",
        ]
    )
    assert rc == 0
    assert "packed 2 sequences, 21 tracks (336 patches) at 24x24" in capsys.readouterr().out
    pk = load_packed(tmp_path / "c")
    ref = load_dataset(tiny_dataset, split="illum", size=24, progress=False).all_tracks()[0]
    np.testing.assert_array_equal(pk.tracks, ref)
    # bad input: clear error, exit status 2, no cache written
    rc = main(["pack", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "c2"), "-q"])
    assert rc == 2 and "dataset folder does not exist" in capsys.readouterr().err
    assert not (tmp_path / "c2").exists()


def test_pack_stream_checks_its_inputs(tmp_path):
    from hpatches_kit.data.pack import pack_stream

    rng = np.random.default_rng(9)
    a, b = make_tracks(3, 32, rng), make_tracks(2, 32, rng)
    out = pack_stream(
        iter([Sequence("i_a", a), Sequence("v_b", b)]),
        tmp_path / "c",
        ["i_a", "v_b"],
        [3, 2],
        patch_size=16,
        tfrecords=False,
        progress=False,
    )
    from hpatches_kit.data import resize_patches

    np.testing.assert_array_equal(load_packed(out, verify="full").tracks, resize_patches(np.concatenate([a, b]), 16))
    with pytest.raises(DataError, match=r"v_b: holds 2 patches, expected 4"):
        pack_stream(
            iter([Sequence("i_a", a), Sequence("v_b", b)]),
            tmp_path / "d",
            ["i_a", "v_b"],
            [3, 4],
            patch_size=16,
            tfrecords=False,
            progress=False,
        )
    with pytest.raises(DataError, match=r"sequence 1 is 'v_b', expected 'v_c'"):
        pack_stream(
            iter([Sequence("i_a", a), Sequence("v_b", b)]),
            tmp_path / "e",
            ["i_a", "v_c"],
            [3, 2],
            patch_size=16,
            tfrecords=False,
            progress=False,
        )
    with pytest.raises(DataError, match=r"supplied 3 tracks, expected 5"):
        pack_stream(
            iter([Sequence("i_a", a)]),
            tmp_path / "f",
            ["i_a", "v_b"],
            [3, 2],
            patch_size=16,
            tfrecords=False,
            progress=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
