"""``hpatches-eval --model`` streams: its peak memory does not grow with the number of patches beyond the
descriptors themselves (issue 37).

Two datasets of the same sequences' size, one six times the other's sequence count, are evaluated end to end
by the command (packed cache built in the run, described, the three tasks). A run that held the patches (the
old in-memory decode, or a mapped cache whose pages are never released) would grow by the patches' bytes,
about 200 MB here; a streamed run grows by its descriptors and the task tables, a few MB.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import CLI_ENV

from hpatches_kit.data import write_patch_image
from hpatches_kit.layout import TYPES

TRACKS = 300  # per sequence
PATCH = 65
DIM = 8


def _dataset(root, n_seq: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    for k in range(n_seq):
        d = root / f"{'iv'[k % 2]}_mem{k:02d}"
        d.mkdir(parents=True)
        base = rng.integers(0, 256, (TRACKS, PATCH, PATCH), dtype=np.uint8)
        for t in TYPES:
            write_patch_image(d / f"{t}.png", base)
    return n_seq * TRACKS * len(TYPES)


def _model(path):
    import keras

    from hpatches_kit.models.l2net import L2Normalize

    x = keras.Input((PATCH, PATCH, 1))
    y = keras.layers.AveragePooling2D(13)(x)
    y = keras.layers.Flatten()(y)
    y = keras.layers.Dense(DIM)(y)
    keras.Model(x, L2Normalize()(y)).save(path)


def _peak_rss(data, model, out) -> int:
    """Peak RSS in bytes of one ``hpatches-eval --task all --model`` process (``wait4``'s ``ru_maxrss``)."""
    code = "import sys; from hpatches_kit.cli.eval import main; sys.exit(main(sys.argv[1:]))"
    args = ["--task", "all", "--data", str(data), "--model", str(model), "--json", str(out), "--no-progress"]
    env = {**CLI_ENV, "HPATCHES_KIT_HOME": str(out.parent / "home")}
    p = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace")
    p.stdout.close()
    p.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, err[-2000:]
    return usage.ru_maxrss * 1024


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KB and /proc: Linux")
def test_eval_peak_memory_grows_only_by_the_descriptors(tmp_path):

    model = tmp_path / "m.keras"
    _model(model)
    small, large = tmp_path / "small", tmp_path / "large"
    n_small = _dataset(small, 2, seed=0)
    n_large = _dataset(large, 12, seed=1)
    rss_small = _peak_rss(small, model, tmp_path / "s.json")
    rss_large = _peak_rss(large, model, tmp_path / "l.json")
    extra_patches = n_large - n_small
    patch_bytes = extra_patches * PATCH * PATCH  # what holding the patches would add: 203 MB
    desc_bytes = extra_patches * DIM * 4  # what the descriptors add: 0.4 MB
    slack = 48 << 20  # the task tables (scaled with the dataset), allocator and interpreter noise
    grew = rss_large - rss_small
    assert grew <= desc_bytes + slack, (
        f"peak RSS grew by {grew / 2**20:.0f} MB for {extra_patches} more patches: more than their descriptors "
        f"({desc_bytes / 2**20:.1f} MB) + {slack >> 20} MB; holding the patches would add {patch_bytes / 2**20:.0f} MB"
    )
    assert patch_bytes > 3 * (desc_bytes + slack)  # the test can tell the two apart
