"""Real-HPatches scale in one sitting (issues 26, 37): the packed cache, streaming training and model evaluation,
each number next to its target with PASS/FAIL.

    nice -n 10 python benchmarks/scale.py [--parts train,eval] [--fraction 0.05] [--eval-fraction 1.0] [--data D]

Without ``--data`` it synthesises HPatches-layout datasets (116 sequences, smooth random textures with per-view
noise, so PNG decoding costs what real patches cost): ``--fraction`` of the official size (150k tracks of 65x65)
for training, ``--eval-fraction`` (default 1.0: **full size**, ~6.4 GB of PNGs) for evaluation. Every
measurement runs in its own process; memory is sampled from ``/proc/<pid>/status`` every 0.2 s (peak RSS =
``VmHWM``; anonymous = the largest ``RssAnon`` sampled: what the process holds that is not a mapped file).

``--parts train``:

1. **pack**: building the training cache (32x32 + row store) -- time and peak RSS;
2. **training start-up** of ``hpatches-train descriptor --split none`` in memory (``HPATCHES_KIT_CACHE=off``:
   decode every PNG) vs streamed from the cache that (1) built (the second run on the same data); peak RSS;
3. **fit patches/s**, both pipelines, from the second epoch's wall time (same steps, side by side).

``--parts eval`` (issue 37):

4. ``hpatches-eval --task all --model M`` on the evaluation data, **first run** (its packed cache at the model's
   input size is built in the run unless one exists: the line says which) and **second run** (the cache
   mapped): wall, peak RSS and peak anonymous memory against the 3 GB target, where the time goes;
5. describing patches/s (the describer of ``hpatches-eval``: device's fastest precision, default batch) vs the
   bare forward pass of the same model in the same precision (``predict_on_batch`` of float32 batches, best of
   batch 256 and 1024) vs PyTorch CPU inference of the same architecture (best of float32 and bf16 autocast,
   batch 256 and 1024), side by side; and the describe batch sweep (patches/s and resident memory).

The machine is shared: compare ratios measured side by side here, not absolute rates across runs.
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


def _status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "RssAnon"):
                    out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def run_child(code: str, env=None, args=()) -> tuple[dict, float, float]:
    """Run ``code`` in a fresh Python; returns (its last ``RESULT{json}`` line, wall seconds, its peak RSS in
    bytes). The child's ``/proc`` status is sampled every 0.2 s: the peak RSS is its ``VmHWM`` (else the
    ``ru_maxrss`` it reports), and ``res["peak_anon"]`` the largest ``RssAnon`` seen."""
    import threading

    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    peak = {"VmHWM": 0, "RssAnon": 0}

    def sample():
        while p.poll() is None:
            for k, v in _status(p.pid).items():
                peak[k] = max(peak[k], v)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = p.communicate()
    th.join()
    status = p.returncode
    wall = time.perf_counter() - t
    if status != 0:
        sys.stderr.write(err[-3000:])
        raise SystemExit(f"child failed ({status})")
    res = {}
    for line in out.splitlines():
        if line.startswith("RESULT"):
            res = json.loads(line[6:])
    res["peak_anon"] = peak["RssAnon"]
    return res, wall, float(max(peak["VmHWM"], res.get("maxrss", 0)))


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
d = keras_describer(m, precision="auto")  # as hpatches-eval --model builds it: default batch, fastest precision
size = int(m.input_shape[1])
x = np.random.default_rng(0).integers(0, 255, (int(sys.argv[2]), size, size), np.uint8)
t = time.perf_counter(); d(x[:1024]); t_first = time.perf_counter() - t
bare = with_precision(m, policy)
bare_pps = {}
for bs in (256, 1024):  # the bare forward pass at its best batch
    bare.predict_on_batch(x[:bs, :, :, None].astype(np.float32))
    n_bare = (len(x) // bs) * bs
    t = time.perf_counter()
    for s in range(0, n_bare, bs):
        bare.predict_on_batch(x[s:s + bs, :, :, None].astype(np.float32))
    bare_pps[bs] = n_bare / (time.perf_counter() - t)
t = time.perf_counter(); d(x); t_desc = time.perf_counter() - t  # after the bare runs: no warm-up advantage
print("RESULT" + json.dumps({"import_s": t_import, "model_load_s": t_load, "first_call_s": t_first,
                             "describe_pps": len(x) / t_desc, "bare_pps": max(bare_pps.values()),
                             "bare_by_batch": bare_pps, "policy": policy, "maxrss": _rss()}))
"""
)

DESCRIBE_BATCH = (
    RSS
    + r"""
import json, sys, time
import numpy as np
from hpatches_kit.evaluation.describers import keras_describer
d = keras_describer(sys.argv[1], batch_size=int(sys.argv[3]))
x = np.random.default_rng(0).integers(0, 255, (int(sys.argv[2]), 32, 32), np.uint8)
d(x[:2048])
t = time.perf_counter(); d(x); pps = len(x) / (time.perf_counter() - t)
print("RESULT" + json.dumps({"pps": pps, "maxrss": _rss(), "policy": d.precision}))
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
n = int(sys.argv[1])
out = {}
for name, ac in (("float32", False), ("bf16 autocast", True)):
    for bs in (256, 1024):
        x = torch.rand(bs, 1, 32, 32) * 255
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
            net(x)
            t = time.perf_counter()
            for _ in range(n // bs):
                net(x)
            out[f"{name}, batch {bs}"] = (n // bs) * bs / (time.perf_counter() - t)
print("RESULT" + json.dumps({"pps": out, "threads": torch.get_num_threads()}))
"""

EVAL_CMD = (
    RSS
    + r"""
import json, sys, time, io, contextlib
T0 = time.perf_counter()
from hpatches_kit.cli.eval import main
import hpatches_kit.evaluation as E
marks = {}
real = E.compute_descriptors
def timed(*a, **k):  # the process start to the first patch described: imports, model, data (cache), tracing
    marks["start_s"] = time.perf_counter() - T0
    return real(*a, **k)
E.compute_descriptors = timed
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["--task", "all", "--model", sys.argv[1], "--data", sys.argv[2], "--no-progress", "--json", sys.argv[3]])
meta = json.load(open(sys.argv[3]))["meta"]
print("RESULT" + json.dumps({"rc": rc, "wall_s": time.perf_counter() - T0, "seconds": meta["seconds"],
                             "maxrss": _rss(), **marks}))
"""
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _count_tracks(data: Path) -> int:
    from hpatches_kit.data import index_dataset

    ix = index_dataset(data, progress=False)
    return sum(ix.num_patches(n) for n in ix.names)


def _eval_cache_exists(data: Path, size: int) -> bool:
    """Whether the packed cache ``hpatches-eval --model`` reads (at ``size``) exists already."""
    from hpatches_kit.data.cache import cache_key, cache_parent
    from hpatches_kit.data.hpatches import find_sequence_dirs
    from hpatches_kit.data.packed import MANIFEST, source_fingerprint

    dirs = find_sequence_dirs(data)
    return any(
        (cache_parent(data) / cache_key(source_fingerprint(dirs), size, noise) / MANIFEST).is_file()
        for noise in (False, True)
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="train,eval", help="train, eval or both (default train,eval)")
    ap.add_argument("--fraction", type=float, default=0.05, help="training dataset size, fraction of HPatches (0.05)")
    ap.add_argument("--eval-fraction", type=float, default=1.0, help="evaluation dataset fraction (1.0: full size)")
    ap.add_argument("--data", type=Path, default=None, help="use this dataset (both parts) instead of synthesising")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "l2net-synth-v2.keras")
    ap.add_argument("--steps", type=int, default=6, help="training steps per epoch (2 epochs)")
    ap.add_argument("--describe-patches", type=int, default=16384)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    parts = set(a.parts.split(","))
    if not parts <= {"train", "eval"}:
        ap.error(f"--parts takes train and/or eval, got {a.parts!r}")
    work = a.out or Path(tempfile.mkdtemp(prefix="hpk-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []

    def row(name, value, target, ok):
        rows.append((name, value, target, verdict(ok) if ok is not None else "-"))
        print(f"{name:<52s} {value:<30s} {target:<30s} {rows[-1][3]}", flush=True)

    def header():
        print(f"{'measure':<52s} {'value':<30s} {'target':<30s} verdict")

    print(time.strftime("%Y-%m-%d %H:%M"), "cores:", os.cpu_count(), "| python", " ".join(sys.argv))
    if "train" in parts:
        data = a.data
        if data is None:
            data = work / "data"
            t = time.perf_counter()
            tracks = synthesise(data, a.fraction)
            print(f"synthesised {tracks} tracks ({a.fraction:.0%} of HPatches) in {time.perf_counter() - t:.0f} s")
        else:
            tracks = _count_tracks(data)
        header()
        train_part(data, tracks, work, a.steps, row)
    if "eval" in parts:
        if a.data is None:
            edata = work / "eval-data"
            t = time.perf_counter()
            et = synthesise(edata, a.eval_fraction, seed=1)
            print(f"synthesised {et} tracks ({a.eval_fraction:.0%} of HPatches) in {time.perf_counter() - t:.0f} s")
        else:
            edata, et = a.data, _count_tracks(a.data)
        header()
        eval_part(edata, et, a.model, work, a.describe_patches, row)
    if a.json:
        a.json.write_text(
            json.dumps({"rows": rows, "fraction": a.fraction, "eval_fraction": a.eval_fraction}, indent=1)
        )
    print(f"(work folder {work}; compare ratios measured side by side, not absolute rates across runs)")
    return 0


def train_part(data: Path, tracks: int, work: Path, steps: int, row) -> None:
    # 1. pack
    pk, _, pk_rss = run_child(PACK, args=[data])
    row("pack (32x32 + row store): time", f"{pk['seconds']:.1f} s", "-", None)
    row("pack: peak RSS (measured)", f"{pk_rss / GB:.2f} GB", "-", None)

    # 2-3. training, in memory (decode) vs streamed (second run on the cache)
    mem, _, mem_rss = run_child(TRAIN, env={"HPATCHES_KIT_CACHE": "off"}, args=[data, work / "run-mem", steps])
    st, _, st_rss = run_child(TRAIN, args=[data, work / "run-stream", steps])
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
    # per track; the in-memory run holds two 16 KB copies of every 32x32 track at its peak
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


def eval_part(edata: Path, et: int, model: Path, work: Path, describe_patches: int, row) -> None:
    import keras

    from hpatches_kit.evaluation.describers import load_model_file

    size = int(load_model_file(model).input_shape[1])
    keras.backend.clear_session()
    full = et >= 0.95 * FULL_TRACKS
    where = "full size" if full else f"{et / FULL_TRACKS:.1%} of full size"
    existed = _eval_cache_exists(edata, size)
    patches = et * 16
    for k, run in enumerate(("first", "second")):
        ev, _, ev_rss = run_child(EVAL_CMD, args=[model, edata, work / f"eval{k}.json"])
        secs = ev["seconds"]
        note = ("cache existed" if existed else "cache built in this run") if k == 0 else "cache mapped"
        row(f"hpatches-eval --model, {run} run ({note})", f"{ev['wall_s']:.0f} s ({patches:,} patches)", "-", None)
        row(
            "  start: process start to the first patch described",
            f"{ev.get('start_s', float('nan')):.1f} s",
            "seconds (second run)" if k else "-",
            ev.get("start_s", 1e9) <= 15 if k else None,
        )
        row(
            "  descriptors (data + describe) / tasks",
            f"{secs.get('descriptors', 0):.0f} s / {sum(v for n, v in secs.items() if n != 'descriptors'):.1f} s",
            "-",
            None,
        )
        row(f"  peak RSS, {where}", f"{ev_rss / GB:.2f} GB", "<= 3 GB at full size", ev_rss <= 3 * GB if full else None)
        row(f"  peak anonymous memory (RssAnon), {where}", f"{ev['peak_anon'] / GB:.2f} GB", "-", None)
    parts, _, _ = run_child(EVAL_PARTS, args=[model, describe_patches])
    row(
        "imports / model load / first call (tracing)",
        f"{parts['import_s']:.1f} / {parts['model_load_s']:.2f} / {parts['first_call_s']:.2f} s",
        "-",
        None,
    )
    from hpatches_kit.models.precision import cpu_has_amx_bf16, cpu_has_bf16

    why = "AMX" if cpu_has_amx_bf16() else ("AVX512-BF16, no AMX" if cpu_has_bf16() else "no bf16 instructions")
    row(f"describe patches/s ({parts['policy']}: {why})", f"{parts['describe_pps']:.0f}", "-", None)
    row(
        "  vs bare predict_on_batch, same precision",
        f"{parts['describe_pps'] / parts['bare_pps']:.2f}x ({parts['bare_pps']:.0f}/s)",
        ">= 0.9x",
        parts["describe_pps"] >= 0.9 * parts["bare_pps"],
    )
    try:
        import torch  # noqa: F401

        tr, _, _ = run_child(TORCH_INFER, args=[describe_patches])
        best_name, best = max(tr["pps"].items(), key=lambda kv: kv[1])
        row(
            f"  vs PyTorch CPU inference (best: {best_name})",
            f"{parts['describe_pps'] / best:.2f}x ({best:.0f}/s)",
            ">= 2x",
            parts["describe_pps"] >= 2 * best,
        )
    except ImportError:
        row("  vs PyTorch", "torch not installed", ">= 2x", None)
    for bs in (128, 256, 1024):
        r, _, rss = run_child(DESCRIBE_BATCH, args=[model, describe_patches, bs])
        row(
            f"  describe batch {bs} ({r['policy']}): patches/s, peak RSS",
            f"{r['pps']:.0f}, {rss / GB:.2f} GB",
            "-",
            None,
        )


if __name__ == "__main__":
    sys.exit(main())
