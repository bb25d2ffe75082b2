"""Where a default `hpatches-train descriptor` epoch spends its time beyond the steps: each callback's hooks.

    python benchmarks/fit_overhead.py [--epochs 4] [--precision mixed_bfloat16]

Runs the default descriptor training (the library call `hpatches-train descriptor` makes, no final evaluation)
for a few epochs with every callback of the run (history + curves PNG, checkpoints, TensorBoard, collapse
probe) wrapped in a timer, and prints per callback and hook the mean and the per-call seconds, next to the
epochs' wall times and the time `fit` spent outside the epochs (tracing before the first step is inside
epoch 1). The README's per-callback costs come from this script.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HOOKS = ("on_train_begin", "on_epoch_end", "on_test_end", "on_train_end")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--precision", default="auto", help="--mixed-precision of the run (default: auto)")
    a = ap.parse_args(argv)

    import keras

    from hpatches_kit.training import run as runmod
    from hpatches_kit.training.descriptor import DescriptorOptions, train_descriptor

    times: dict[str, list[float]] = {}
    marks: dict[str, float] = {}
    original = runmod.TrainingRun.callbacks

    class Marks(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            marks["begin"] = time.perf_counter()

        def on_train_end(self, logs=None):
            marks["end"] = time.perf_counter()

    def timed(self, history, extra=None, **kw):
        cbs = original(self, history, extra, **kw)
        for cb in cbs:
            for hook in HOOKS:
                f = getattr(cb, hook)

                def wrapped(*args, _f=f, _name=f"{type(cb).__name__}.{hook}", **kwargs):
                    t = time.perf_counter()
                    r = _f(*args, **kwargs)
                    times.setdefault(_name, []).append(time.perf_counter() - t)
                    return r

                setattr(cb, hook, wrapped)
        return [Marks()] + cbs  # first: its on_train_end marks the start of the others'

    runmod.TrainingRun.callbacks = timed
    fit = keras.Model.fit

    def timed_fit(self, *args, **kwargs):
        marks["call"] = time.perf_counter()
        try:
            return fit(self, *args, **kwargs)
        finally:
            marks["return"] = time.perf_counter()

    keras.Model.fit = timed_fit
    with tempfile.TemporaryDirectory(prefix="fit-overhead-") as d:
        m = train_descriptor(
            DescriptorOptions(
                epochs=a.epochs,
                val_every=max(1, a.epochs // 2),
                evaluate=False,
                mixed_precision=a.precision,
                out=os.path.join(d, "run"),
                verbose=0,
            )
        )
    walls = m["history"]["epoch_wall_s"]
    print(
        f"\n{m['epochs']} epochs x {m['steps_per_epoch']} steps ({m['tracks_per_batch'] * m['views']} patches), "
        f"precision {m.get('precision', a.precision)}"
    )
    print(
        f"epoch walls (s): {', '.join(f'{w:.2f}' for w in walls)}; fit {m['train_seconds']:.2f} s, of which "
        f"{m['train_seconds'] - sum(walls):.2f} s outside the epochs: {marks['begin'] - marks['call']:.2f} s before "
        f"on_train_begin, {marks['return'] - marks['end']:.2f} s from on_train_end to the return of fit"
    )
    print(f"\n{'callback.hook':<36}{'calls':>6}{'mean s':>9}  per call")
    for name, v in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        print(f"{name:<36}{len(v):>6}{sum(v) / len(v):>9.3f}  {', '.join(f'{x:.2f}' for x in v)}")
    steady = sorted(walls[1:] or walls)[len(walls[1:] or walls) // 2]
    per_epoch = sum(sum(v) for k, v in times.items() if k.endswith("on_epoch_end")) / len(walls)
    print(
        f"\ncallbacks' on_epoch_end: {per_epoch:.3f} s per epoch = {100 * per_epoch / steady:.1f}% of the median "
        f"epoch after the first ({steady:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
