"""Real validation: every committed descriptor against SIFT and RootSIFT on real photographs.

    python benchmarks/real_validation.py                       # all models/l2net-*.keras, both noise regimes
    python benchmarks/real_validation.py --model runs/desc/model.keras --bar sift   # a 15-minute default run
    python benchmarks/real_validation.py --json real.json --per-sequence

Patches are cut from ``../shared/real-sequences`` (``boat``: zoom + rotation, Oxford layout; ``v_wormhole``:
viewpoint, HPatches-sequences layout) with ``hpatches-data extract`` at HPatches' geometric noise and at a
third of it (``--jitter-scale 0.333``), then evaluated with the official protocol (all sequences, task files
generated with seed 42, L2). These scenes are never trained on. The PASS/FAIL line checks the README's model
(``models/l2net-embedded.keras`` unless ``--model`` is given) against the better of SIFT and RootSIFT on all
three tasks in both regimes (``--bar sift``: against SIFT alone).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "real-sequences"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SHARED, help="folder of real homography sequences")
    ap.add_argument(
        "--model",
        action="append",
        default=None,
        help="a .keras descriptor (repeatable; default: every committed models/l2net-*.keras)",
    )
    ap.add_argument(
        "--bar",
        choices=("both", "sift"),
        default="both",
        help="PASS needs the first model above max(SIFT, RootSIFT) (both) or above SIFT (sift)",
    )
    ap.add_argument("--margin", type=float, default=0.0, help="required lead in mAP points (default: 0)")
    ap.add_argument("--per-sequence", action="store_true", help="also print matching mAP per scene")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args(argv)
    if not a.src.is_dir():
        print(f"{a.src}: real sequences not found (see ../shared/real-sequences/README.md)", file=sys.stderr)
        return 2

    from hpatches_kit.evaluation.real import REGIMES, TASKS, beats_baselines, compare_on_real

    paths = a.model or [str(REPO / "models" / "l2net-embedded.keras")] + sorted(
        str(p) for p in (REPO / "models").glob("l2net-*.keras") if p.name != "l2net-embedded.keras"
    )
    models = {Path(p).stem if Path(p).name != "model.keras" else Path(p).parent.name: p for p in paths}
    t0 = time.time()
    res = compare_on_real(a.src, models, per_sequence=a.per_sequence, progress=True)
    print(f"real validation on {a.src} ({time.time() - t0:.0f} s; official protocol, mAP %, never trained on)")
    for regime, r in res.items():
        print(
            f"\n## {regime} geometric noise (jitter x {REGIMES[regime]:.3f}): {len(r['sequences'])} scenes, "
            f"{r['tracks']} tracks"
        )
        print(f"{'descriptor':<26}" + "".join(f"{t:>14}" for t in TASKS))
        for name, row in r["rows"].items():
            print(f"{name:<26}" + "".join(f"{row[t]:>14.2f}" for t in TASKS))
        if a.per_sequence:
            seqs = r["sequences"]
            print(f"\n{'matching per scene':<26}" + "".join(f"{s:>14}" for s in seqs))
            for name, row in r["rows"].items():
                print(f"{name:<26}" + "".join(f"{row['matching_per_sequence'][s]:>14.2f}" for s in seqs))
    first = next(iter(models))
    bar = ("SIFT",) if a.bar == "sift" else ("SIFT", "RootSIFT")
    verdict = beats_baselines(res, first, bar, a.margin)
    ok = all(v[2] for per in verdict.values() for v in per.values())
    print(f"\n{first} minus the better of {' and '.join(bar)} (points):")
    for regime, per in verdict.items():
        print(f"  {regime:<10}" + "".join(f"{t} {o - b:+.2f}   " for t, (o, b, _) in per.items()))
    print(
        f"{first} beats {' and '.join(bar)} on all three tasks at both noise levels"
        f"{f' by > {a.margin:g}' if a.margin else ''}: {'PASS' if ok else 'FAIL'}"
    )
    if a.json:
        from hpatches_kit.io import atomic_write_json

        atomic_write_json(a.json, {"results": res, "pass": ok, "bar": list(bar), "model": first})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
