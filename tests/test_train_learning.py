"""The models actually learn through the pipelines: a few Adam steps lower the held-out loss."""

import keras
import numpy as np
from conftest import make_tracks

from hpatches_kit.losses import BatchHardTripletLoss
from hpatches_kit.models import shallow_unet
from hpatches_kit.models.l2net import l2net
from hpatches_kit.training import denoise_dataset, descriptor_dataset


def test_l2net_learns_to_match_heldout_tracks():
    rng = np.random.default_rng(0)
    tracks = make_tracks(96, 16, rng, noise=25.0)
    train, test = tracks[:64], tracks[64:]
    keras.utils.set_random_seed(0)
    m = l2net(input_size=16, dim=32, dropout=0.0)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss=BatchHardTripletLoss(1.0))

    def heldout():
        # batch statistics (training=True, no dropout): a few steps are too few for BN's moving averages
        r = m(test[:, 0, :, :, None].astype("float32"), training=True).numpy()
        t = m(test[:, 9, :, :, None].astype("float32"), training=True).numpy()
        d = ((r[:, None] - t[None]) ** 2).sum(-1)
        return float((d.argmin(1) == np.arange(len(test))).mean()), float(np.diag(d).mean() / d.mean())

    acc0, ratio0 = heldout()
    m.fit(descriptor_dataset(train, 16, 4, seed=0), steps_per_epoch=20, epochs=1, verbose=0)
    acc1, ratio1 = heldout()
    # chance is 1/32; matching pairs move from "as far as any pair" to much closer than average
    assert acc1 >= 0.3 and acc1 > acc0 + 0.2, (acc0, acc1)
    assert ratio0 > 0.9 and ratio1 < 0.6, (ratio0, ratio1)


def test_shallow_unet_mae_drops_on_heldout_pairs():
    rng = np.random.default_rng(1)
    clean = make_tracks(12, 16, rng, noise=2.0)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    keras.utils.set_random_seed(0)
    m = shallow_unet(16)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mae")
    held = denoise_dataset(noisy[8:], clean[8:], batch_size=64, augment=False, repeat=False)
    before = m.evaluate(held, verbose=0)
    m.fit(denoise_dataset(noisy[:8], clean[:8], batch_size=32, seed=0), steps_per_epoch=40, epochs=1, verbose=0)
    after = m.evaluate(held, verbose=0)
    noisy_mae = float(np.abs(noisy[8:].astype(float) - clean[8:]).mean())
    assert after < 0.5 * before and after < noisy_mae, (before, after, noisy_mae)
