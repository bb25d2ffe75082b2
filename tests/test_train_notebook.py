"""docs/notebook.ipynb, executed top to bottom in a Jupyter kernel on CPU with small settings.

The parameters are overridden the way papermill does it: a cell injected right after the cell tagged
``parameters``. The notebook's own cells run unchanged; a last injected cell reports what the test checks."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "docs" / "notebook.ipynb"

SMALL = {
    "TRAIN_SEQUENCES": 6,
    "EVAL_SEQUENCES": 4,
    "TRACKS_PER_BATCH": 32,
    "VIEWS": 4,
    "EPOCHS": 3,
    "STEPS_PER_EPOCH": 4,
    "DIM": 32,
    "EXPORT_CSV": True,
}

REPORT = """import json
print("REPORT " + json.dumps({"loss": [float(v) for v in history.history["loss"]], "headline": headline,
                               "device": DEVICE, "precision": PRECISION, "global_batch": GLOBAL_BATCH,
                               "test_names": list(test_names), "out": str(out)}))"""


def _cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebook_structure():
    nb = nbformat.read(NB, as_version=4)
    nbformat.validate(nb)
    code = _cells(nb)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell is tagged 'parameters'"
    params = {}
    exec(compile(tagged[0].source, "parameters", "exec"), params)  # noqa: S102 - our own notebook
    assert set(SMALL) <= set(params), sorted(set(SMALL) - set(params))
    assert params["REAL_SEQUENCES"] == "../shared/real-sequences"
    assert params["DOWNLOAD_HPATCHES"] is False  # the 4 GB download is opt-in
    assert code[0] is not tagged[0] and "REPO_URL" in code[0].source and "pip" in code[0].source
    src = "\n".join(c.source for c in code)
    for needle in (
        "TPUStrategy",
        "mixed_bfloat16",
        "MirroredStrategy",
        "mixed_float16",
        "strategy.scope()",
        "%tensorboard",
        "AtomicCheckpoint",
        "CollapseDetector",
        "model.fit(",
        "evaluate(",
        "compare_on_real",
        "write_descriptor_dir",
        "!hpatches-data download",
    ):
        assert needle in src, needle
    # no test scaffolding in the user's path
    assert "pytest" not in src and "REPORT" not in src


def _execute(params, monkeypatch):
    """Run the notebook with ``params`` injected after its parameters cell; returns (stdout text, the
    report, every output)."""
    nb = nbformat.read(NB, as_version=4)
    i = next(k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    inject = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(inject, metadata={"tags": ["injected-parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    # the kernel imports this checkout (the install cell then skips the pip install) and keeps to the CPU
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    if os.environ.get("HPATCHES_KIT_KEEP_NOTEBOOK"):  # inspect the executed notebook
        nbformat.write(nb, os.environ["HPATCHES_KIT_KEEP_NOTEBOOK"])
    outputs = [o for c in _cells(nb) for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    line = next(l for l in text.splitlines() if l.startswith("REPORT "))
    return text, json.loads(line[len("REPORT ") :]), outputs


@pytest.mark.slow
def test_notebook_runs_and_trains(tmp_path, monkeypatch):
    text, rep, outputs = _execute(dict(SMALL, OUT=str(tmp_path / "run")), monkeypatch)
    out = Path(rep["out"])

    # the install cell found this checkout and installed nothing
    assert f"hpatches-kit from {ROOT / 'hpatches_kit'}" in text
    assert rep["device"] == "cpu" and rep["precision"] == "float32" and rep["global_batch"] == 32 * 4
    assert "patches/s in the last epoch" in text

    # training learned: the loss falls over the epochs
    loss = rep["loss"]
    assert len(loss) == 3 and all(math.isfinite(v) for v in loss)
    assert loss[-1] < loss[0], loss

    # the three headline numbers, and they are the official evaluation of the saved model on the held-out
    # sequences, recomputed here from model.keras
    head = rep["headline"]
    assert set(head) == {"verification", "matching", "retrieval"}
    assert all(0.0 <= v <= 100.0 for v in head.values()), head
    import keras

    import hpatches_kit.models  # noqa: F401 - registers the custom layers
    from hpatches_kit.data import ensure_default, load_dataset
    from hpatches_kit.evaluation import compute_descriptors, evaluate, keras_describer, read_descriptor_dir

    model = keras.models.load_model(out / "model.keras", compile=False)
    assert model.output_shape == (None, 32)
    test_ds = load_dataset(ensure_default(), sequences=rep["test_names"], progress=False)
    descs = compute_descriptors(test_ds, keras_describer(model), progress=False)
    ref = evaluate(descs, dataset=test_ds, split="full", progress=False)
    for task, v in head.items():
        assert v == pytest.approx(ref[task]["headline"]["value"], abs=1e-6), task

    # the exported CSVs (official layout) hold those descriptors, one row per patch
    csv = read_descriptor_dir(out / "descriptors", progress=False)
    assert sorted(csv) == sorted(rep["test_names"])
    for s in rep["test_names"]:
        for t, a in descs[s].items():
            np.testing.assert_allclose(np.asarray(csv[s][t]), a, rtol=1e-6, atol=1e-7)

    # plots written and shown inline; checkpoints and TensorBoard logs written
    for png in ("training_curves.png", "verification_curves.png", "retrieval_pool_sizes.png", "hpatches_bars.png"):
        p = out / png
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    assert (out / "checkpoints" / "last.keras").is_file()
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 3
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    # real validation: against SIFT/RootSIFT when the real sequences are there, skipped (saying so) otherwise
    if (ROOT.parent / "shared" / "real-sequences").is_dir():
        assert "beats SIFT and RootSIFT:" in text
        for regime in ("hpatches", "small"):
            assert f"{regime} regime" in text
        rows = [l.split() for l in text.splitlines() if l.strip().split(" ")[0] in ("notebook", "SIFT", "RootSIFT")]
        assert len(rows) == 6 and all(len(r) == 7 for r in rows), rows
    else:
        assert "real validation skipped" in text


@pytest.mark.slow
def test_notebook_optional_sections(tmp_path, monkeypatch):
    """Denoise first (N-HPatches flavour of the embedded data) and fine-tune the committed default."""
    params = dict(
        SMALL,
        OUT=str(tmp_path / "run"),
        DENOISE=True,
        DENOISER_MODEL="models/unet-shallow-embedded.keras",
        FINE_TUNE=True,
        FINE_TUNE_EPOCHS=1,
        EXPORT_CSV=False,
        REAL_SEQUENCES=None,
        EPOCHS=2,
        TRAIN_SEQUENCES=2,
        EVAL_SEQUENCES=2,
    )
    text, rep, _ = _execute(params, monkeypatch)
    out = Path(rep["out"])
    assert "/n-hpatches: 2 train sequences" in text
    # the descriptor trained on the committed denoiser's 8-bit output, whose MAE is below the noisy input's
    mae = float(text.split("MAE of the denoised training patches:")[1].split()[0])
    noisy_mae = float(text.split("MAE of the noisy training patches:")[1].split()[0])
    assert 0 < mae < noisy_mae, (mae, noisy_mae)
    assert len(rep["loss"]) == 2 and all(math.isfinite(v) for v in rep["loss"])
    assert all(0.0 <= v <= 100.0 for v in rep["headline"].values())
    # the fine-tuned committed model (128-d) was evaluated too: a second summary table
    assert text.count("HPatches evaluation: split full, 2 sequences") == 2
    assert "dim 128" in text and "dim 32" in text
    assert (out / "model.keras").is_file() and not (out / "descriptors").exists()
    assert "real validation skipped" in text
