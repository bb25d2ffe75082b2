"""Time the full embedded default build and print its summary and jitter-overlap medians.

    python benchmarks/build_embedded.py [--out DIR] [--seed 0]

Wall-clock and CPU times are printed: on a shared machine the wall time is inflated by other processes, the
process CPU time is the better measure of the build's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="build folder (default: a temporary folder, removed afterwards)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from hpatches_kit.data import load_dataset
    from hpatches_kit.data.synth import build_default_dataset

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="hpk-bench-")
        out = Path(tmp.name) / "embedded"
    else:
        out = Path(args.out)
    t0, c0 = time.perf_counter(), time.process_time()
    build_default_dataset(out, seed=args.seed, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    meta = json.loads((out / "hpatches" / "dataset.json").read_text())
    ds = load_dataset(out / "hpatches", progress=False)
    nh = load_dataset(out / "n-hpatches", noise=True, progress=False)
    s = ds.summary()
    print(
        f"build: wall {wall:.1f} s, process CPU {cpu:.1f} s (cores: {os.cpu_count()}, "
        f"load avg {os.getloadavg()[0]:.1f}; wall time is inflated when the machine is shared)"
    )
    print(f"max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(
        f"hpatches:   {s['sequences']} sequences ({s['illum_sequences']} i_, {s['view_sequences']} v_), "
        f"{s['tracks']} tracks, {s['patches']} patches, {s['patch_size']}x{s['patch_size']}"
    )
    print(
        f"n-hpatches: {len(nh)} sequences, {nh.num_tracks} tracks, {nh.patch_size}x{nh.patch_size}, noisy={nh.has_noise}"
    )
    med = meta["overlap_median"]
    targets = meta["parameters"]["jitter_target_overlap"]
    for v in "eht":
        per = " ".join(f"{v}{k}={med[f'{v}{k}']:.3f}" for k in range(1, 6))
        print(f"median overlap {v}: {med[v]:.3f} (target {targets[v]:.2f})  [{per}]")
    per_seq = meta["counts"]["per_sequence"]
    print(
        f"tracks per sequence: min {min(per_seq.values())} / median {sorted(per_seq.values())[len(per_seq) // 2]} / max {max(per_seq.values())}"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
