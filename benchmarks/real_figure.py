"""The README's figure: the HPatches paper's three-panel comparison on the real validation scenes.

    python benchmarks/real_figure.py --out docs/figures          # docs/figures/real_comparison.png + .pdf

Cuts the patches of ``../shared/real-sequences`` at HPatches' geometric noise (as
``benchmarks/real_validation.py`` does, cached), describes them with ``models/l2net-synth-v2.keras``, SIFT and
RootSIFT, evaluates each with the official protocol (task files generated, seed 42, L2), writes the results
JSONs next to the figure and draws ``hpatches-eval compare``'s figure (``real_comparison.png``, ``.pdf``).
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
    ap.add_argument("--src", type=Path, default=SHARED, help="folder of real homography sequences")
    ap.add_argument("--model", default=str(REPO / "models" / "l2net-synth-v2.keras"), help="the learned descriptor")
    ap.add_argument("--out", type=Path, required=True, help="folder for real_comparison.png/.pdf and the JSONs")
    a = ap.parse_args(argv)
    if not a.src.is_dir():
        print(f"{a.src}: real sequences not found (see ../shared/real-sequences/README.md)", file=sys.stderr)
        return 2

    from hpatches_kit.data import load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, get_baseline, keras_describer
    from hpatches_kit.evaluation.compare import format_markdown, load_results
    from hpatches_kit.evaluation.real import build_real_patches
    from hpatches_kit.plots.eval import plot_hpatches_bars

    t0 = time.time()
    ds = load_dataset(build_real_patches(a.src, "hpatches", progress=True), progress=False)
    a.out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, describer in (
        (Path(a.model).stem, keras_describer(a.model)),
        ("SIFT", get_baseline("sift")),
        ("RootSIFT", get_baseline("rootsift")),
    ):
        res = evaluate(compute_descriptors(ds, describer, progress=False), ds, progress=False)
        res["meta"]["descriptor"] = name
        f = a.out / f"real_{name}.json"
        f.write_text(json.dumps(res, default=lambda o: o.tolist()))
        files.append(f)
    entries = load_results(files)
    print(format_markdown(entries))
    for p in plot_hpatches_bars([(n, r) for n, r, _ in entries], a.out / "real_comparison.png"):
        print(f"written: {p}")
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
