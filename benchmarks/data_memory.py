"""Memory / reload benchmark for the data layer (issue target: the full HPatches dataset at 32x32, ~2.5 M
patches, loads in < 4 GB RAM and reloads fast from the packed cache).

1. Packs a full-size cache of synthetic tracks (116 sequences, ~2.5 M patches at 32x32) with
   ``pack_stream`` (one sequence in memory at a time) and measures build time and peak RSS.
2. In fresh subprocesses: ``load_packed`` memory-mapped (time, RSS, and a full scan), in RAM (``mmap=False``,
   time + peak RSS), ``verify="full"`` (sha256 of everything), and tf.data throughput from the TFRecords.
3. Writes a smaller on-disk PNG dataset (65x65 like hpatches-release), loads it with ``load_dataset(size=32)``
   in a fresh subprocess, and extrapolates time and memory per patch to the full dataset.

Usage: ``python benchmarks/data_memory.py [--work DIR] [--patches 2500000] [--png-tracks 4000] [--no-tfrecords]``.
Every phase runs in its own process so peak RSS (``ru_maxrss``) belongs to that phase alone. Timings on a
shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GB = 1 << 30
NSEQ = 116


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def cur_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_parts() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes: file-backed pages (memmaps) are reclaimable page cache."""
    vals = {}
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith(("RssAnon:", "RssFile:")):
                k, v = ln.split(":")
                vals[k] = int(v.split()[0]) * 1024
    return vals.get("RssAnon", 0), vals.get("RssFile", 0)


class AnonPeak:
    """Samples RssAnon every 20 ms in a thread: the peak of non-reclaimable memory."""

    def __init__(self):
        import threading

        self.peak = rss_parts()[0]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_parts()[0])

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_parts()[0])
        return self.peak


# -- phases (each runs in a subprocess, prints one JSON line) --------------------------------------------
def phase_pack(work: Path, patches: int, tfrecords: bool) -> dict:
    import numpy as np

    from hpatches_kit.data import Sequence
    from hpatches_kit.data.pack import pack_stream

    tracks_total = patches // 16
    counts = [tracks_total // NSEQ + (1 if i < tracks_total % NSEQ else 0) for i in range(NSEQ)]
    names = [f"{'i' if i < 57 else 'v'}_synth{i:03d}" for i in range(NSEQ)]
    rss0 = cur_rss()

    def gen():
        rng = np.random.default_rng(0)
        for n, c in zip(names, counts):
            base = rng.integers(0, 256, (c, 1, 32, 32), dtype=np.uint8)
            yield Sequence(n, np.repeat(base, 16, axis=1) ^ rng.integers(0, 16, (c, 16, 32, 32), dtype=np.uint8))

    t = time.perf_counter()
    pack_stream(gen(), work / "packed", names, counts, patch_size=32, tfrecords=tfrecords, progress=False)
    return {
        "pack_s": time.perf_counter() - t,
        "tracks": sum(counts),
        "patches": 16 * sum(counts),
        "peak_rss": peak_rss(),
        "rss_before": rss0,
        "disk_bytes": sum(f.stat().st_size for f in (work / "packed").iterdir()),
    }


def phase_reload(work: Path, mode: str) -> dict:
    import numpy as np

    from hpatches_kit.data.pack import load_packed

    rss0 = cur_rss()
    t = time.perf_counter()
    if mode == "mmap":
        pk = load_packed(work / "packed", mmap=True, verify="quick")
        t_load = time.perf_counter() - t
        rss_after_load = cur_rss()
        t = time.perf_counter()
        s = 0
        for a in range(0, pk.num_tracks, 8192):  # full scan, as an epoch would
            s += int(pk.tracks[a : a + 8192, 0, 0, 0].sum())
            _ = np.asarray(pk.tracks[a : a + 8192]).max()
        return {
            "load_s": t_load,
            "rss_before": rss0,
            "rss_after_load": rss_after_load,
            "scan_s": time.perf_counter() - t,
            "rss_after_scan": cur_rss(),
            "peak_rss": peak_rss(),
        }
    if mode == "ram":
        pk = load_packed(work / "packed", mmap=False, verify="quick")
        return {
            "load_s": time.perf_counter() - t,
            "rss_before": rss0,
            "peak_rss": peak_rss(),
            "nbytes": int(pk.tracks.nbytes),
        }
    if mode == "full":
        load_packed(work / "packed", mmap=True, verify="full")
        return {"load_s": time.perf_counter() - t, "peak_rss": peak_rss()}
    if mode == "tfdata":
        pk = load_packed(work / "packed")
        if not pk.tfrecord_files:
            return {"skipped": True}
        n = min(pk.num_tracks, 40000)
        ds = pk.tf_dataset().take(n).batch(1024).prefetch(2)
        t = time.perf_counter()
        got = 0
        for b in ds:
            got += int(b["patches"].shape[0])
        return {"tracks": got, "tfdata_s": time.perf_counter() - t, "peak_rss": peak_rss()}
    raise ValueError(mode)


def phase_png_write(work: Path, tracks: int) -> dict:
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_tracks, write_dataset

    nseq = 8
    rng = np.random.default_rng(0)
    per = tracks // nseq
    t = time.perf_counter()
    for i in range(nseq):
        write_dataset(work / "png", {f"{'iv'[i % 2]}_png{i}": make_tracks(per, 65, rng)})
    return {
        "write_s": time.perf_counter() - t,
        "tracks": per * nseq,
        "disk_bytes": sum(f.stat().st_size for f in (work / "png").rglob("*.png")),
    }


def phase_png_load(work: Path, nseq: int, workers: int) -> dict:
    from hpatches_kit.data import find_sequence_dirs, load_dataset

    names = [d.name for d in find_sequence_dirs(work / "png")][:nseq]
    rss0 = cur_rss()
    t = time.perf_counter()
    ds = load_dataset(work / "png", sequences=names, size=32, progress=False, workers=workers)
    dt = time.perf_counter() - t
    return {
        "load_s": dt,
        "tracks": ds.num_tracks,
        "patches": 16 * ds.num_tracks,
        "rss_before": rss0,
        "rss_after": cur_rss(),
        "peak_rss": peak_rss(),
    }


PHASES = {"pack": phase_pack, "reload": phase_reload, "png_write": phase_png_write, "png_load": phase_png_load}


def run_phase(name: str, *args) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, *map(str, args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        name, work, *rest = sys.argv[2:]
        conv = [int(x) if x.isdigit() else (x == "True" if x in ("True", "False") else x) for x in rest]
        anon0 = rss_parts()[0]
        sampler = AnonPeak()
        res = PHASES[name](Path(work), *conv)
        res["anon_peak"] = sampler.stop()
        res["anon_before"] = anon0
        print(json.dumps(res))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temp dir, deleted afterwards)")
    ap.add_argument("--patches", type=int, default=2_500_000, help="patches in the synthetic packed cache")
    ap.add_argument("--png-tracks", type=int, default=4000, help="tracks in the on-disk PNG dataset (x16 patches)")
    ap.add_argument("--workers", type=int, default=4, help="threads for the parallel PNG load")
    ap.add_argument("--no-tfrecords", action="store_true", help="skip the TFRecord shards (faster)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hpk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        full = args.patches
        print(f"# data_memory benchmark in {work} (timings on a shared, contended machine are noisy)")
        r = run_phase("pack", work, full, not args.no_tfrecords)
        print(
            f"pack (stream, {r['tracks']} tracks = {r['patches']} patches @32x32, tfrecords={not args.no_tfrecords}): "
            f"{r['pack_s']:.1f} s, peak RSS {r['peak_rss'] / GB:.2f} GB (anonymous {r['anon_peak'] / GB:.2f} GB), on disk {r['disk_bytes'] / GB:.2f} GB"
        )
        m = run_phase("reload", work, "mmap")
        print(
            f"reload load_packed(mmap=True):  {m['load_s'] * 1000:.1f} ms, RSS +{(m['rss_after_load'] - m['rss_before']) / 2**20:.1f} MB; "
            f"full scan {m['scan_s']:.2f} s, peak RSS {m['peak_rss'] / GB:.2f} GB of which anonymous {m['anon_peak'] / GB:.2f} GB "
            f"(the rest is file-backed page cache, reclaimable)"
        )
        ram = run_phase("reload", work, "ram")
        print(
            f"reload load_packed(mmap=False): {ram['load_s']:.2f} s, peak RSS {ram['peak_rss'] / GB:.2f} GB, anonymous {ram['anon_peak'] / GB:.2f} GB "
            f"(arrays {ram['nbytes'] / GB:.2f} GB) -> under 4 GB: {ram['peak_rss'] < 4 * GB}"
        )
        fv = run_phase("reload", work, "full")
        print(f"load_packed(verify='full') (sha256 of every file): {fv['load_s']:.2f} s")
        if not args.no_tfrecords:
            tfd = run_phase("reload", work, "tfdata")
            print(
                f"tf.data from TFRecords: {tfd['tracks']} tracks in {tfd['tfdata_s']:.2f} s = "
                f"{tfd['tracks'] / tfd['tfdata_s']:.0f} tracks/s ({16 * tfd['tracks'] / tfd['tfdata_s']:.0f} patches/s)"
            )
        shutil.rmtree(work / "packed", ignore_errors=True)

        w = run_phase("png_write", work, args.png_tracks)
        # two sizes (half / all of the 8 sequences): the slope is the marginal cost per patch, free of the
        # fixed overhead (lazy imports, allocator pools) that a single small load would smear over few patches
        half = run_phase("png_load", work, 4, 1)
        pl = run_phase("png_load", work, 8, 1)
        n = pl["patches"]
        dn = pl["patches"] - half["patches"]
        per_patch_s = (pl["load_s"] - half["load_s"]) / dn if pl["load_s"] > half["load_s"] else pl["load_s"] / n
        per_patch_b = ((pl["peak_rss"] - pl["rss_before"]) - (half["peak_rss"] - half["rss_before"])) / dn
        fixed_b = (pl["peak_rss"] - pl["rss_before"]) - per_patch_b * n
        print(
            f"PNG dataset (65x65, {pl['tracks']} tracks = {n} patches, {w['disk_bytes'] / 2**20:.0f} MB PNG): "
            f"load_dataset(size=32, workers=1) {pl['load_s']:.2f} s, peak RSS +{(pl['peak_rss'] - pl['rss_before']) / 2**20:.0f} MB "
            f"(anonymous +{(pl['anon_peak'] - pl['anon_before']) / 2**20:.0f} MB); "
            f"marginal {per_patch_b:.0f} B/patch (the 32x32 array itself is 1024 B/patch), fixed {fixed_b / 2**20:.0f} MB"
        )
        par = run_phase("png_load", work, 8, args.workers)
        print(
            f"  parallel load_dataset(workers={args.workers}): {par['load_s']:.2f} s "
            f"(speed-up {pl['load_s'] / par['load_s']:.2f}x on this shared 2-core box), peak RSS +{(par['peak_rss'] - par['rss_before']) / 2**20:.0f} MB"
        )
        est_s = min(per_patch_s, par["load_s"] / n) * full
        est_b = pl["rss_before"] + fixed_b + per_patch_b * full
        print(
            f"extrapolated to {full} patches: load_dataset(size=32) ~{est_s:.0f} s, peak RSS ~{est_b / GB:.2f} GB "
            f"-> under 4 GB: {est_b < 4 * GB}"
        )
        print(
            f"ratio: PNG load (extrapolated) / packed reload: mmap {est_s / max(m['load_s'], 1e-6):.0f}x, "
            f"in-RAM {est_s / ram['load_s']:.1f}x"
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
