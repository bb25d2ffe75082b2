"""Test instrumentation for tests/test_train_multiworker.py, loaded by Python at start-up in the worker processes
(this folder is put first on their PYTHONPATH). It changes nothing unless ``HPATCHES_KIT_TEST_DUMP`` is set;
then, after ``keras.Model.fit`` returns, it writes what the test compares (every worker's weights, optimizer step
count and fit history) to ``$HPATCHES_KIT_TEST_DUMP/worker-<index>.{npz,json}``, outside the run folder; the chief
also writes the weights before training (``init.npz``). ``HPATCHES_KIT_TEST_HANG_AFTER_EPOCH=N`` makes the worker
sleep after epoch N's callbacks (the checkpoint included), so the test can kill it there.
"""

import os

if os.environ.get("HPATCHES_KIT_TEST_DUMP"):
    import json
    import time
    from pathlib import Path

    import keras
    import numpy as np

    _dump = Path(os.environ["HPATCHES_KIT_TEST_DUMP"])
    _index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
    _hang = int(os.environ.get("HPATCHES_KIT_TEST_HANG_AFTER_EPOCH", "0"))
    _fit = keras.Model.fit

    class _Hang(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == _hang:
                (_dump / f"hanging-{_index}").write_text(str(epoch + 1))
                while True:
                    time.sleep(1)

    def fit(self, *args, **kwargs):
        _dump.mkdir(parents=True, exist_ok=True)
        if _index == 0 and not (_dump / "init.npz").exists():
            np.savez(_dump / "init.npz", *self.get_weights())
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [_Hang()]
        h = _fit(self, *args, **kwargs)
        np.savez(_dump / f"worker-{_index}.npz", *self.get_weights())
        (_dump / f"worker-{_index}.json").write_text(
            json.dumps(
                {
                    "iterations": int(self.optimizer.iterations.numpy()),
                    "history": {k: [float(x) for x in v] for k, v in h.history.items()},
                }
            )
        )
        return h

    keras.Model.fit = fit
