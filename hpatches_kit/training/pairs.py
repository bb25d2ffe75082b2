"""Batches of image pairs for ``hpatches-train vit-adapter`` (a ``keras.utils.PyDataset``)."""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["PairBatches"]


class PairBatches(keras.utils.PyDataset):
    """Shuffled batches of ``((left, right), target)``. With ``groups`` the pairs of one source are kept
    together (sources in random order, pairs shuffled within), so in-batch negatives are hard ones. With ``negatives`` (cosine-embedding loss) every pair
    also appears once with a wrong right image (``target -1``); otherwise targets are all ``+1`` and the
    in-batch losses use the other pairs of the batch as negatives."""

    def __init__(
        self, left, right, batch_size=16, negatives=False, seed=0, augment=True, epoch=0, groups=None, **kwargs
    ):
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
