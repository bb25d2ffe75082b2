"""One worker of the two-process test (tests/test_train_multiworker.py): trains the L2-Net descriptor under
``MultiWorkerMirroredStrategy`` (TF_CONFIG from the environment) on S x K batches with batch-hard loss, each
worker reading its own share of the tracks, driving the library directly. The chief alone writes the run's
checkpoints and model.keras; every worker dumps its weights to ``--dump`` (test instrumentation).

    python tests/multiworker_worker.py --data DIR --out RUN --dump DIR [--global-mining] [--resume]
                                       [--hang-after-epoch N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--tracks-per-batch", type=int, default=8)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps-per-epoch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--global-mining", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--hang-after-epoch", type=int, default=0, help="sleep forever after this epoch's checkpoint")
    a = p.parse_args(argv)

    import keras
    import numpy as np

    from hpatches_kit.data import load_dataset
    from hpatches_kit.losses import BatchHardTripletLoss
    from hpatches_kit.models import l2net
    from hpatches_kit.training import (AtomicCheckpoint, GlobalBatchLoss, descriptor_dataset, distribute_sk_dataset,
                                       get_strategy, load_resume, worker_info)

    keras.utils.set_random_seed(a.seed)
    strategy = get_strategy("multiworker")
    info = worker_info(strategy)
    dump = Path(a.dump)
    dump.mkdir(parents=True, exist_ok=True)
    out = Path(a.out)
    tracks, _ = load_dataset(a.data, size=a.patch_size, progress=False).all_tracks()
    S, K = a.tracks_per_batch, a.views
    initial = 0
    model = None
    if a.resume:
        with strategy.scope():
            res = load_resume(out / "checkpoints")
        if res is not None:
            model, initial = res.model, res.initial_epoch
            print(f"[resume] {res.path}: {initial} epochs done, optimizer step "
                  f"{int(model.optimizer.iterations.numpy())}", file=sys.stderr)
    skip = initial * a.steps_per_epoch
    train = distribute_sk_dataset(
        strategy, lambda n, i: descriptor_dataset(tracks, S, K, seed=a.seed, num_shards=n, shard_index=i).skip(skip),
        S, K)
    with strategy.scope():
        loss = BatchHardTripletLoss(margin=0.5)
        loss = GlobalBatchLoss(loss) if a.global_mining else loss
        if model is None:
            model = l2net(input_size=a.patch_size, dim=a.dim, dropout=0.0)
            model.compile(optimizer=keras.optimizers.Adam(a.lr), loss=loss)
        else:
            model.compile(optimizer=model.optimizer, loss=loss)
    if info["chief"] and not a.resume:
        np.savez(dump / "init.npz", *model.get_weights())
    callbacks = [AtomicCheckpoint(out / "checkpoints")] if info["chief"] else []

    class Hang(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == a.hang_after_epoch:
                (dump / f"hanging-{info['index']}").write_text(str(epoch + 1))
                while True:
                    time.sleep(1)

    h = model.fit(train, steps_per_epoch=a.steps_per_epoch, epochs=a.epochs, initial_epoch=initial, verbose=0,
                  callbacks=callbacks + [Hang()])
    np.savez(dump / f"worker-{info['index']}.npz", *model.get_weights())
    (dump / f"worker-{info['index']}.json").write_text(json.dumps(
        {**info, "replicas": strategy.num_replicas_in_sync, "history": h.history,
         "iterations": int(model.optimizer.iterations.numpy())}))
    if info["chief"]:
        model.save(out / "model.keras")
    return 0


if __name__ == "__main__":
    sys.exit(main())
