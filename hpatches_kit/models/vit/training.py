"""Training pieces for ViT adapters: siamese pair wrapper, one-cycle LR schedule, pair batches."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from .layers import PKG


@keras.saving.register_keras_serializable(package=PKG)
class PairStack(keras.layers.Layer):
    """``[(B, D), (B, D)] -> (B, 2, D)`` (pair-stacked embeddings for the pair losses)."""

    def call(self, inputs):
        return ops.stack(list(inputs), axis=1)

    def compute_output_shape(self, input_shapes):
        s = input_shapes[0]
        return (s[0], 2, s[1])


def siamese(backbone: keras.Model) -> keras.Model:
    """Shared-weight two-tower model: ``(left, right)`` images -> ``(B, 2, D)``."""
    shape = backbone.input_shape[1:]
    left = keras.Input(shape, name="left")
    right = keras.Input(shape, name="right")
    out = PairStack(name="pair_stack")([backbone(left), backbone(right)])
    return keras.Model([left, right], out, name="siamese")


@keras.saving.register_keras_serializable(package=PKG)
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """PyTorch ``OneCycleLR`` (cosine annealing, ``three_phase=False``): from ``max_lr/div_factor`` up to
    ``max_lr`` over the first ``pct_start`` of ``total_steps``, then down to ``initial/final_div_factor``."""

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4):
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.pct_start, self.div_factor, self.final_div_factor = float(pct_start), float(div_factor), float(final_div_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        init = self.max_lr / self.div_factor
        low = init / self.final_div_factor
        end1 = float(self.pct_start * self.total_steps) - 1.0
        end2 = float(self.total_steps) - 1.0

        def anneal(start, end, pct):
            return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)

        p1 = ops.clip(step / max(end1, 1e-9), 0.0, 1.0)
        p2 = ops.clip((step - end1) / max(end2 - end1, 1e-9), 0.0, 1.0)
        return ops.where(step <= end1, anneal(init, self.max_lr, p1), anneal(self.max_lr, low, p2))

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div_factor": self.div_factor, "final_div_factor": self.final_div_factor}


class PairBatches(keras.utils.PyDataset):
    """Shuffled batches of ``((left, right), target)``. With ``groups`` the pairs of one source are kept
    together (sources in random order, pairs shuffled within), so in-batch negatives are hard ones. With ``negatives`` (cosine-embedding loss) every pair
    also appears once with a wrong right image (``target -1``); otherwise targets are all ``+1`` and the
    in-batch losses use the other pairs of the batch as negatives."""

    def __init__(self, left, right, batch_size=16, negatives=False, seed=0, augment=True, epoch=0, groups=None,
                 **kwargs):
        super().__init__(**kwargs)
        if len(left) < 2:
            raise ValueError("need at least 2 training pairs")
        self.left, self.right = left, right
        self.batch_size, self.negatives, self.augment = int(batch_size), bool(negatives), bool(augment)
        self.seed, self.epoch = int(seed), int(epoch)
        self.groups = None if groups is None else np.asarray(groups)
        self._make_epoch()

    def _make_epoch(self):
        # every epoch's order and augmentation depend only on (seed, epoch): a resumed run sees the same data
        self.rng = np.random.default_rng((self.seed, self.epoch))
        n = len(self.left)
        li, ri, y = np.arange(n), np.arange(n), np.ones(n, np.float32)
        if self.negatives:
            shift = self.rng.integers(1, n)
            li = np.r_[li, np.arange(n)]
            ri = np.r_[ri, (np.arange(n) + shift) % n]
            y = np.r_[y, -np.ones(n, np.float32)]
        order = self.rng.permutation(len(li))
        if self.groups is not None:  # hard negatives: keep pairs of one source (photo / sequence) together
            g = self.groups[li[order]]
            rank = {u: k for k, u in enumerate(self.rng.permutation(np.unique(g)))}
            order = order[np.argsort([rank[x] for x in g], kind="stable")]
        self.li, self.ri, self.y = li[order], ri[order], y[order]
        # drop a trailing batch of 1 (in-batch losses need >= 2 pairs)
        self._n = max(1, len(self.li) // self.batch_size + (len(self.li) % self.batch_size > 1))

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        l, r = self.left[self.li[sl]], self.right[self.ri[sl]]
        if self.augment:  # random horizontal flip of both views together keeps the pair consistent
            flip = np.random.default_rng((self.seed, self.epoch, i)).random(len(l)) < 0.5
            l = np.where(flip[:, None, None, None], l[:, :, ::-1], l)
            r = np.where(flip[:, None, None, None], r[:, :, ::-1], r)
        return (l, r), self.y[sl]

    def on_epoch_end(self):
        self.epoch += 1
        self._make_epoch()
