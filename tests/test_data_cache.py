"""The packed cache used by training and evaluation, and the data-format registry.

References: the in-memory pipeline (``descriptor_dataset`` on the decoded arrays) for the streamed batches; the
PNGs as written for what the cache holds; a real subprocess killed with SIGKILL for interrupted builds."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tracks, write_dataset

from hpatches_kit.data import DataError, load_dataset
from hpatches_kit.data.cache import StreamedTracks, ensure_packed
from hpatches_kit.data.packed import MANIFEST, load_packed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ds32(tmp_path):
    rng = np.random.default_rng(1)
    seqs = {n: make_tracks(k, 32, rng) for n, k in [("i_a", 40), ("i_b", 30), ("v_c", 35), ("v_d", 25)]}
    return write_dataset(tmp_path / "ds", seqs), seqs


def _batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_batches_identical_to_in_memory(ds32, workers):
    from hpatches_kit.training.pipelines import descriptor_dataset

    root, seqs = ds32
    pk = load_packed(ensure_packed(root, size=32, rows=True, progress=False))
    mem = np.concatenate([seqs[n] for n in sorted(seqs)])
    names = sorted(seqs)[1:]  # a subset of sequences, as a split's training side is
    rows = np.arange(len(seqs["i_a"]), len(mem))
    streamed = StreamedTracks(pk, rows)
    assert np.array_equal(np.asarray(streamed), np.concatenate([seqs[n] for n in names]))
    for w in range(workers):
        for aug in (True, False):
            a = descriptor_dataset(
                streamed, 16, 3, seed=5, augment=aug, geometric=aug, num_shards=workers, shard_index=w
            )
            b = descriptor_dataset(
                mem[rows], 16, 3, seed=5, augment=aug, geometric=aug, num_shards=workers, shard_index=w
            )
            assert a.element_spec == b.element_spec  # static shapes, the same
            for (xa, ya), (xb, yb) in zip(_batches(a, 12), _batches(b, 12)):  # > 1 epoch of the share
                assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        # dataset-wide track labels (--xbm) and per-view orientation noise stream identically too
        kw = dict(seed=5, num_shards=workers, shard_index=w, view_noise="dog", labels="track")
        a, b = descriptor_dataset(streamed, 16, 2, **kw), descriptor_dataset(mem[rows], 16, 2, **kw)
        for (xa, ya), (xb, yb) in zip(_batches(a, 6), _batches(b, 6)):
            assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_cache_content_and_reuse(ds32):
    root, seqs = ds32
    out = ensure_packed(root, size=32, progress=False)
    assert out.parent == root / ".hpatches-kit-cache"
    mtime = (out / MANIFEST).stat().st_mtime_ns
    assert ensure_packed(root, size=32, progress=False) == out  # reused, not rebuilt
    assert (out / MANIFEST).stat().st_mtime_ns == mtime
    ds = load_dataset(root, cache="auto")
    for n, t in seqs.items():
        assert np.array_equal(ds[n].tracks, t)
    assert isinstance(ds["i_a"].tracks, np.memmap)  # evaluation maps the cache, decodes nothing


def test_changed_source_is_rebuilt(ds32):
    from hpatches_kit.data import write_patch_image

    root, seqs = ds32
    old = ensure_packed(root, size=32, progress=False)
    new_e1 = 255 - seqs["v_c"][:, 1]
    time.sleep(0.01)
    write_patch_image(root / "v_c" / "e1.png", new_e1)
    new = ensure_packed(root, size=32, progress=False)
    assert new != old and not old.exists()  # the stale cache is gone, never read
    pk = load_packed(new, source=root)  # and the new one matches the source as it is now
    assert np.array_equal(pk.tracks[pk.sequence_slice("v_c")][:, 1], new_e1)


def test_half_written_cache_is_never_read(ds32):
    root, seqs = ds32
    out = ensure_packed(root, size=32, progress=False)
    # a cache whose manifest is there but whose array was cut short (e.g. a copy that stopped): rebuilt
    with open(out / "tracks.npy", "r+b") as f:
        f.truncate(1000)
    again = ensure_packed(root, size=32, progress=False)
    assert again == out and np.array_equal(load_packed(out).tracks[:40], seqs["i_a"])
    # a folder without its manifest (written last) is not a cache: rebuilt, not read
    import shutil

    shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "tracks.npy").write_bytes(b"\x93NUMPY garbage")
    again = ensure_packed(root, size=32, progress=False)
    assert np.array_equal(load_packed(again).tracks[:40], seqs["i_a"])


def test_kill_during_build_then_rerun(tmp_path):
    rng = np.random.default_rng(2)
    root = write_dataset(tmp_path / "big", {f"i_{k:02d}": make_tracks(60, 32, rng) for k in range(8)})
    marker = tmp_path / "building"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        import hpatches_kit.data.pack as pack
        real = pack._write_rows
        def slow(*a, **k):
            open({str(marker)!r}, "w").close()
            time.sleep(60)  # killed here: tracks.npy written, row store and manifest not yet
            return real(*a, **k)
        pack._write_rows = slow
        from hpatches_kit.data.cache import ensure_packed
        ensure_packed({str(root)!r}, size=32, rows=True, progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), "the build did not start"
        parent = root / ".hpatches-kit-cache"
        assert list(parent.glob(".*.tmp"))  # mid-build: only a temporary folder
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [p for p in parent.iterdir() if not p.name.startswith(".")]  # no cache to read
    out = ensure_packed(root, size=32, rows=True, progress=False)
    assert load_packed(out, verify="full").num_tracks == 480
    assert not list(parent.glob(".*"))  # the killed build's folder is gone


def test_external_format_trains_and_evaluates(tmp_path, monkeypatch, request):
    """A reader registered from a module outside the package: training and evaluation read through it."""
    rng = np.random.default_rng(4)
    data = tmp_path / "npzdata"
    data.mkdir()
    seqs = {n: make_tracks(k, 32, rng) for n, k in [("i_x", 70), ("v_y", 60), ("v_z", 30)]}
    np.savez(data / "tracks.npz", **seqs)
    mod = tmp_path / "plug"
    mod.mkdir()
    (mod / "npz_tracks_format.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        import numpy as np
        from hpatches_kit.data import formats
        from hpatches_kit.data.formats import ArraySource

        def detect(path):
            return path is not None and (Path(path) / "tracks.npz").is_file()

        @formats.register("npz-tracks", detect=detect)
        def open_npz(path, size=None, **options):
            z = np.load(Path(path) / "tracks.npz")
            return ArraySource(path, "npz-tracks", {n: z[n] for n in z.files}, size=size)
    """)
    )
    monkeypatch.syspath_prepend(str(mod))
    import npz_tracks_format  # noqa: F401

    from hpatches_kit.data import formats

    request.addfinalizer(lambda: formats.unregister("npz-tracks"))  # other tests see the built-in formats only
    from hpatches_kit.data.formats import detect_format
    from hpatches_kit.training.tracks import load_track_split

    assert "npz-tracks" in formats.names() and detect_format(data) == "npz-tracks"
    split = load_track_split(data, "auto", split="none", size=32)
    assert np.array_equal(split.train, np.concatenate(list(seqs.values())))
    # evaluation: load_dataset opens it through the registry
    ds = load_dataset(data)
    assert ds.names == list(seqs) and np.array_equal(ds["v_z"].tracks, seqs["v_z"])
    from hpatches_kit.training.descriptor import DescriptorOptions, train_descriptor

    res = train_descriptor(
        DescriptorOptions(
            data=str(data),
            format="npz-tracks",
            split="none",
            epochs=1,
            steps_per_epoch=2,
            batch_size=64,
            evaluate=True,
            verbose=0,
            mixed_precision="float32",
            collapse="off",
            out=str(tmp_path / "run"),
        )
    )
    assert res["train_tracks"] == 160 and "evaluation" in res


def test_packed_cache_as_data(ds32, tmp_path):
    root, seqs = ds32
    out = ensure_packed(root, size=32, rows=True, progress=False)
    from hpatches_kit.training.tracks import load_track_split

    split = load_track_split(str(out), "hpatches", split="none", size=32)
    assert isinstance(split.train, StreamedTracks) and len(split.train) == 130
    with pytest.raises(DataError, match="16x16 asked"):
        load_track_split(str(out), "hpatches", split="none", size=16)
    ds = load_dataset(out)
    assert np.array_equal(ds["v_d"].tracks, seqs["v_d"])


def test_streamed_tracks_index_like_the_array():
    """``StreamedTracks`` indexes as the in-memory array does, advanced indexing included (one view per track,
    as ``--pca-dim`` samples its patches)."""
    from types import SimpleNamespace

    from hpatches_kit.data.cache import StreamedTracks

    a = np.random.default_rng(0).integers(0, 255, (10, 16, 4, 4)).astype(np.uint8)
    s = StreamedTracks(SimpleNamespace(tracks=a, noisy=None, num_tracks=10, path="x"))
    idx, views = np.array([1, 3, 7]), np.array([0, 5, 15])
    np.testing.assert_array_equal(s[idx, views, :, :, None], a[idx, views, :, :, None])
    np.testing.assert_array_equal(s[idx, 0], a[idx, 0])
    np.testing.assert_array_equal(s[2:5, :, 1], a[2:5, :, 1])
    np.testing.assert_array_equal(np.asarray(s), a)


def test_a_build_published_concurrently_is_kept_not_an_error(tmp_path, monkeypatch):
    """Two processes building the same cache (the two workers of a multi-worker run): when the other one
    publishes its complete build between this one's check and its swap, ``keep_existing`` keeps that build and
    drops this one, instead of failing with "Directory not empty"."""
    import os

    from hpatches_kit.data import fsio

    real_replace = os.replace

    def racing(out):
        def replace(src, dst):
            if Path(dst) == out and not out.exists():  # the other process publishes first, just now
                out.mkdir()
                (out / "x").write_text("other")
                fsio.write_marker(out, "pack")
            return real_replace(src, dst)

        return replace

    out = tmp_path / "c"
    monkeypatch.setattr(os, "replace", racing(out))
    with fsio.build_then_swap(out, "pack", keep_existing=True) as tmp:
        (tmp / "x").write_text("mine")
    assert (out / "x").read_text() == "other"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c.")]  # no temporary left behind
    out = tmp_path / "d"
    monkeypatch.setattr(os, "replace", racing(out))
    with pytest.raises(OSError):  # without keep_existing the clash is still an error (nothing is lost)
        with fsio.build_then_swap(out, "pack") as tmp:
            (tmp / "x").write_text("mine")
