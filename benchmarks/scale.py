"""Real-HPatches scale in one sitting (issue 26): the packed cache, streaming training and model evaluation,
each number next to its target with PASS/FAIL.

    nice -n 10 python benchmarks/scale.py [--fraction 0.05] [--eval-fraction 0.01] [--data D] [--out DIR]

Without ``--data`` it synthesises an HPatches-layout dataset of ``--fraction`` of the official size (116
sequences, 150k tracks of 65x65 in total; smooth random textures with per-view noise, so PNG decoding costs
what real patches cost). Every measurement runs in its own process (peak RSS from ``wait4``):

1. **pack**: building the training cache (32x32 + row store) -- time and peak RSS;
2. **training start-up** of ``hpatches-train descriptor --split none`` in memory (``HPATCHES_KIT_CACHE=off``:
   decode every PNG) vs streamed from the cache that (1) built (the second run on the same data): the time the
   run spends getting its data and the time from process start to the end of the first step; peak RSS;
3. **fit patches/s**, both pipelines, from the second epoch's wall time (same steps, side by side);
4. **evaluation**: ``hpatches-eval --task all --model M`` whole-command wall and peak RSS on
   ``--eval-fraction`` of the size, where its time goes (imports, model load, first call = tracing, data,
   describing, tasks), and describing patches/s vs the bare ``predict_on_batch`` of the same model at the
   device's best precision vs PyTorch CPU inference of the same architecture (best of float32 and bf16
   autocast).

Memory at full size is **extrapolated** linearly in the number of tracks from the measured fraction (the
streamed pipeline holds no table: its only per-track state is an 8-byte row index). The machine is shared and
loaded: compare ratios measured side by side here, not absolute rates across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL_TRACKS = 150_000  # hpatches-release: 116 sequences, ~150k tracks, 2.4 M patches
FULL_SEQS = 116
GB = 1 << 30


def synthesise(root: Path, fraction: float, seed: int = 0, patch: int = 65) -> int:
    """An HPatches-layout dataset of ``fraction`` of the official track count; returns the track count."""
    import cv2

    from hpatches_kit.data import TYPES, write_patch_image

    rng = np.random.default_rng(seed)
    per = max(2, int(round(FULL_TRACKS * fraction / FULL_SEQS)))
    for k in range(FULL_SEQS):
        name = f"{'iv'[k % 2]}_synth{k:03d}"
        base = rng.normal(128, 50, size=(per, patch, patch)).astype(np.float32)
        base = np.stack([cv2.GaussianBlur(b, (0, 0), 2.0) for b in base])
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for t in TYPES:
            v = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            write_patch_image(d / f"{t}.png", v)
    return per * FULL_SEQS


def run_child(code: str, env=None, args=()) -> tuple[dict, float, float]:
    """Run ``code`` in a fresh Python; returns (its last ``RESULT{json}`` line, wall seconds, its peak RSS in
    bytes as the child reports it: ``ru_maxrss`` of itself)."""
    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    out, err = p.communicate()
    status = p.returncode
    wall = time.perf_counter() - t
    if status != 0:
        sys.stderr.write(err[-3000:])
        raise SystemExit(f"child failed ({status})")
    res = {}
    for line in out.splitlines():
        if line.startswith("RESULT"):
            res = json.loads(line[6:])
    return res, wall, float(res.get("maxrss", 0))


RSS = "import resource; _rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"

PACK = (
    RSS
    + r"""
import json, sys, time
t = time.perf_counter()
from hpatches_kit.data.cache import ensure_packed
out = ensure_packed(sys.argv[1], size=32, rows=True, progress=False)
print("RESULT" + json.dumps({"seconds": time.perf_counter() - t, "maxrss": _rss(), "out": str(out)}))
"""
)

TRAIN = (
    RSS
    + r"""
import json, sys, time
T0 = time.perf_counter()
import keras
from hpatches_kit.training import descriptor as D
import hpatches_kit.training.tracks as TR
marks = {}
real = D.load_tracks
def timed_load(o):
    t = time.perf_counter(); r = real(o); marks["data_s"] = time.perf_counter() - t; return r
D.load_tracks = timed_load
class First(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        marks.setdefault("first_step_s", time.perf_counter() - T0)
fit = keras.Model.fit
def fit_with(self, *a, **k):
    k["callbacks"] = list(k.get("callbacks") or []) + [First()]
    return fit(self, *a, **k)
keras.Model.fit = fit_with
data, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
res = D.train_descriptor(D.DescriptorOptions(data=data, split="none", epochs=2, steps_per_epoch=steps, out=out,
                                             evaluate=False, verbose=0, collapse="off"))
walls = res["history"]["epoch_wall_s"]
print("RESULT" + json.dumps({**marks, "epoch2_s": walls[-1], "batch": 1024, "steps": steps, "maxrss": _rss()}))
"""
)

PIPE = r"""
import json, sys, time
import numpy as np
from hpatches_kit.training.tracks import load_track_split
from hpatches_kit.training.pipelines import descriptor_dataset
split = load_track_split(sys.argv[1], "auto", split="none", size=32)
n = int(sys.argv[2]); out = {}
for name, t in (("streamed", split.train), ("in memory", np.asarray(split.train))):
    it = iter(descriptor_dataset(t, 512, 2, seed=0))
    for _ in range(2):
        next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    out[name] = n * 1024 / (time.perf_counter() - t0)
print("RESULT" + json.dumps(out))
"""

EVAL_PARTS = (
    RSS
    + r"""
import json, sys, time
T0 = time.perf_counter()
import numpy as np
import tensorflow as tf, keras  # noqa
from hpatches_kit.evaluation.describers import keras_describer, load_model_file, with_precision, resolve_describe_precision
t_import = time.perf_counter() - T0
t = time.perf_counter(); m = load_model_file(sys.argv[1]); t_load = time.perf_counter() - t
policy = resolve_describe_precision("auto")
d = keras_describer(m, precision="auto")
x = np.random.default_rng(0).integers(0, 255, (int(sys.argv[2]), 32, 32), np.uint8)
t = time.perf_counter(); d(x[:1024]); t_first = time.perf_counter() - t
t = time.perf_counter(); d(x); t_desc = time.perf_counter() - t
bare = with_precision(m, policy)
xb = x[:1024, :, :, None].astype(np.float32)
bare.predict_on_batch(xb)
t = time.perf_counter()
for s in range(0, len(x) - 1023, 1024):
    bare.predict_on_batch(x[s:s + 1024, :, :, None].astype(np.float32))
t_bare = time.perf_counter() - t
n_bare = (len(x) // 1024) * 1024
print("RESULT" + json.dumps({"import_s": t_import, "model_load_s": t_load, "first_call_s": t_first,
                             "describe_pps": len(x) / t_desc, "bare_pps": n_bare / t_bare, "policy": policy,
                             "maxrss": _rss()}))
"""
)

TORCH_INFER = r"""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
def block(i, o, s=1):
    return [nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(o, affine=False), nn.ReLU()]
class HardNet(nn.Module):  # the architecture of hpatches_kit.models.l2net (as benchmarks/train_speed.py)
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*block(1, 32), *block(32, 32), *block(32, 64, 2), *block(64, 64),
                                      *block(64, 128, 2), *block(128, 128), nn.Dropout(0.3),
                                      nn.Conv2d(128, 128, 8, bias=False), nn.BatchNorm2d(128, affine=False))
    def forward(self, x):
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        s = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + 1e-7
        return F.normalize(self.features((x - m) / s).flatten(1), dim=1)
net = HardNet().eval()
n = int(sys.argv[1]); x = torch.rand(1024, 1, 32, 32) * 255
out = {}
for name, ac in (("float32", False), ("bf16 autocast", True)):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
        net(x)
        t = time.perf_counter()
        for _ in range(n // 1024):
            net(x)
        out[name] = (n // 1024) * 1024 / (time.perf_counter() - t)
print("RESULT" + json.dumps({"pps": out, "threads": torch.get_num_threads()}))
"""

EVAL_CMD = (
    RSS
    + r"""
import json, sys, time, io, contextlib
T0 = time.perf_counter()
from hpatches_kit.cli.eval import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["--task", "all", "--model", sys.argv[1], "--data", sys.argv[2], "--no-progress", "--json", sys.argv[3]])
meta = json.load(open(sys.argv[3]))["meta"]
print("RESULT" + json.dumps({"rc": rc, "wall_s": time.perf_counter() - T0, "seconds": meta["seconds"],
                             "maxrss": _rss()}))
"""
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fraction", type=float, default=0.05, help="dataset size as a fraction of HPatches (0.05)")
    ap.add_argument("--eval-fraction", type=float, default=0.01, help="evaluation dataset fraction (0.01)")
    ap.add_argument("--data", type=Path, default=None, help="use this dataset instead of synthesising one")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "l2net-synth-v2.keras")
    ap.add_argument("--steps", type=int, default=6, help="training steps per epoch (2 epochs)")
    ap.add_argument("--describe-patches", type=int, default=8192)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    work = a.out or Path(tempfile.mkdtemp(prefix="hpk-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    def row(name, value, target, ok):
        rows.append((name, value, target, verdict(ok) if ok is not None else "-"))
        print(f"{name:<52s} {value:<28s} {target:<30s} {rows[-1][3]}", flush=True)

    data = a.data
    if data is None:
        data = work / "data"
        t = time.perf_counter()
        tracks = synthesise(data, a.fraction)
        print(
            f"synthesised {tracks} tracks ({a.fraction:.0%} of HPatches) in {time.perf_counter() - t:.0f} s -> {data}"
        )
    else:
        from hpatches_kit.data import index_dataset

        ix = index_dataset(data, progress=False)
        tracks = sum(ix.num_patches(n) for n in ix.names)
    print(f"{'measure':<52s} {'value':<28s} {'target':<30s} verdict")

    # 1. pack
    pk, _, pk_rss = run_child(PACK, args=[data])
    row("pack (32x32 + row store): time", f"{pk['seconds']:.1f} s", "-", None)
    row("pack: peak RSS (measured)", f"{pk_rss / GB:.2f} GB", "-", None)

    # 2-3. training, in memory (decode) vs streamed (second run on the cache)
    mem, _, mem_rss = run_child(TRAIN, env={"HPATCHES_KIT_CACHE": "off"}, args=[data, work / "run-mem", a.steps])
    st, _, st_rss = run_child(TRAIN, args=[data, work / "run-stream", a.steps])
    row("start-up, data: in memory (decode PNGs)", f"{mem['data_s']:.2f} s", "-", None)
    row(
        "start-up, data: streamed, second run",
        f"{st['data_s']:.2f} s",
        ">= 10x sooner",
        st["data_s"] * 10 <= mem["data_s"],
    )
    row(
        "start-up to first step: in memory / streamed",
        f"{mem['first_step_s']:.1f} s / {st['first_step_s']:.1f} s",
        "(whole process; imports incl.)",
        None,
    )
    fit_mem = mem["batch"] * mem["steps"] / mem["epoch2_s"]
    fit_st = st["batch"] * st["steps"] / st["epoch2_s"]
    row("fit patches/s: in memory", f"{fit_mem:.0f}", "-", None)
    row(
        "fit patches/s: streamed (ratio)",
        f"{fit_st:.0f} ({fit_st / fit_mem:.2f}x)",
        ">= 0.95x in memory",
        fit_st >= 0.95 * fit_mem,
    )
    pipe, _, _ = run_child(PIPE, args=[data, 20])
    row("input pipeline alone, patches/s: in memory", f"{pipe['in memory']:.0f}", "-", None)
    row("input pipeline alone, patches/s: streamed", f"{pipe['streamed']:.0f}", "> the accelerator's step rate", None)
    # extrapolation (linear in the tracks): the streamed run holds no per-track table, only an 8-byte row index
    # per track; the in-memory run holds two 16 KB copies of every 32x32 track at its peak (the decoded
    # sequences and their concatenation, then the array and its tf.constant): a lower bound of its growth
    track_bytes = 16 * 32 * 32
    full_st = st_rss + 8 * (FULL_TRACKS - tracks)
    full_mem = mem_rss + 2 * track_bytes * (FULL_TRACKS - tracks)
    row(
        "train peak RSS in memory: measured / full (extrap.)",
        f"{mem_rss / GB:.2f} / {full_mem / GB:.1f} GB",
        "<= 3 GB at full size",
        full_mem <= 3 * GB,
    )
    row(
        "train peak RSS streamed: measured / full (extrap.)",
        f"{st_rss / GB:.2f} / {full_st / GB:.2f} GB",
        "<= 3 GB at full size",
        full_st <= 3 * GB,
    )

    # 4. evaluation
    edata = work / "eval-data"
    if a.data is None:
        et = synthesise(edata, a.eval_fraction, seed=1)
    else:
        edata, et = data, tracks
    ev, _, ev_rss = run_child(EVAL_CMD, args=[a.model, edata, work / "eval.json"])
    secs = ev["seconds"]
    row(f"hpatches-eval --model, whole command ({et * 16} patches)", f"{ev['wall_s']:.1f} s", "-", None)
    row(
        "  of which descriptors (data + describe) / tasks",
        f"{secs.get('descriptors', 0):.1f} s / {sum(v for k, v in secs.items() if k != 'descriptors'):.1f} s",
        "-",
        None,
    )
    ev2, _, _ = run_child(EVAL_CMD, args=[a.model, edata, work / "eval2.json"])
    row("hpatches-eval second run (cache mapped)", f"{ev2['wall_s']:.1f} s", "-", None)
    parts, _, _ = run_child(EVAL_PARTS, args=[a.model, a.describe_patches])
    row(
        "  imports / model load / first call (tracing)",
        f"{parts['import_s']:.1f} / {parts['model_load_s']:.2f} / {parts['first_call_s']:.2f} s",
        "-",
        None,
    )
    row(f"describe patches/s ({parts['policy']})", f"{parts['describe_pps']:.0f}", "-", None)
    row(
        "  vs bare predict_on_batch, same precision",
        f"{parts['describe_pps'] / parts['bare_pps']:.2f}x ({parts['bare_pps']:.0f}/s)",
        ">= 0.9x",
        parts["describe_pps"] >= 0.9 * parts["bare_pps"],
    )
    try:
        import torch  # noqa: F401

        tr, _, _ = run_child(TORCH_INFER, args=[a.describe_patches])
        best = max(tr["pps"].values())
        row(
            "  vs PyTorch CPU inference (best of f32/bf16)",
            f"{parts['describe_pps'] / best:.2f}x ({best:.0f}/s)",
            ">= 2x",
            parts["describe_pps"] >= 2 * best,
        )
    except ImportError:
        row("  vs PyTorch", "torch not installed", ">= 2x", None)
    # eval memory at full size, estimated: the patches are memory-mapped and released once described
    # (release_pages), describing holds one chunk; what grows with the data is the descriptors (128 float32 =
    # 512 B a patch) and, at the official task sizes, the pair tables (3 x 10^6 pairs x 6 int64 columns)
    full_ev = ev_rss + 512 * (FULL_TRACKS - et) * 16 + 3 * 6 * 8 * 1_000_000
    row(
        "eval peak RSS: measured / full (estimated)",
        f"{ev_rss / GB:.2f} / {full_ev / GB:.1f} GB",
        "<= 3 GB",
        full_ev <= 3 * GB,
    )
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "tracks": tracks, "fraction": a.fraction}, indent=1))
    print(f"(work folder {work}; machine shared and loaded: ratios are side by side, absolute rates are not)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
