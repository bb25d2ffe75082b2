"""Full-image matching on the real validation sequences: SIFT, RootSIFT and the committed model.

    python benchmarks/image_matching.py                                   # DoG, 2000 keypoints, RANSAC
    python benchmarks/image_matching.py --detector hessian --method usac --json im.json --plots plots/

Detects keypoints in every image of ``../shared/real-sequences`` (``boat``: zoom + rotation, Oxford layout;
``v_wormhole``: viewpoint, HPatches-sequences layout), cuts oriented 65x65 patches as the HPatches extractor
does, describes them with each descriptor, matches mutual nearest neighbours and reports mean matching
accuracy at 1/3/5/10 px (D2-Net protocol) and homography accuracy at 1/3/5 px (mean corner error), via
:func:`hpatches_kit.evaluation.image_matching.evaluate_sequences` (the library behind
``hpatches-eval --benchmark sequences``). Both scenes change viewpoint, so every pair counts as viewpoint.
These scenes are never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "real-sequences"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=SHARED, help="folder of homography sequences")
    ap.add_argument("--model", action="append", default=None,
                    help="a .keras descriptor (repeatable; default: models/l2net-embedded.keras)")
    ap.add_argument("--detector", default="dog", choices=("dog", "harris", "hessian"))
    ap.add_argument("--max-keypoints", type=int, default=2000)
    ap.add_argument("--method", default="ransac", choices=("ransac", "usac"))
    ap.add_argument("--cv-threads", type=int, default=1, help="OpenCV threads (default: 1)")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--plots", type=Path, help="write mma_vs_threshold.png here")
    a = ap.parse_args(argv)
    if not a.src.is_dir():
        print(f"{a.src}: sequences not found (see ../shared/real-sequences/README.md)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import cv2

    cv2.setNumThreads(a.cv_threads)  # OpenCV's thread pool next to TensorFlow's stalls on a busy 2-core machine
    from hpatches_kit.evaluation import get_baseline, keras_describer
    from hpatches_kit.evaluation.image_matching import evaluate_sequences, format_sequences, read_sequences

    seqs = read_sequences(a.src)
    describers = [("sift", get_baseline("sift")), ("rootsift", get_baseline("rootsift"))]
    for m in a.model or [str(REPO / "models" / "l2net-embedded.keras")]:
        describers.append((Path(m).stem, keras_describer(m)))
    t0 = time.time()
    results = evaluate_sequences(seqs, dict(describers), detector=a.detector, max_keypoints=a.max_keypoints,
                                 method=a.method, progress=False)  # same keypoints and patches for all
    seconds = round(time.time() - t0, 1)
    print(f"full-image matching on {a.src} ({', '.join(seqs[i][0] for i in range(len(seqs)))}; "
          f"{a.detector}, {a.max_keypoints} keypoints, mutual NN, {a.method})")
    print(format_sequences(results))
    print(f"({seconds} s)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if a.plots:
        from hpatches_kit.plots.benchmarks import plot_mma

        print(f"plot: {plot_mma(results, a.plots / 'mma_vs_threshold.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
