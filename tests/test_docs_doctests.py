"""The Examples of the central modules' docstrings run as doctests (kornia-style executable docs).

Each module below is collected with :mod:`doctest`; an example that no longer matches the code fails here,
naming the module and the example. Examples that need data or a download are marked ``# doctest: +SKIP`` in
their docstring; the others use tiny arrays and run in seconds."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: the modules whose docstring examples are part of the test suite
MODULES = [
    "hpatches_kit.registry",
    "hpatches_kit.models.registry",
    "hpatches_kit.data.formats",
    "hpatches_kit.evaluation.registry",
    "hpatches_kit.benchmarks.registry",
    "hpatches_kit.evaluation.api",
    "hpatches_kit.evaluation.describers",
    "hpatches_kit.evaluation.diagnostics",
    "hpatches_kit.losses.registry",
    "hpatches_kit.losses.base",
    "hpatches_kit.losses.triplet",
    "hpatches_kit.losses.hardnet",
    "hpatches_kit.models.l2net",
    "hpatches_kit.models.layers",
    "hpatches_kit.data.hpatches",
]
#: functions and classes that must carry a runnable example (not only skipped ones)
MUST_HAVE_EXAMPLES = [
    "hpatches_kit.registry",
    "hpatches_kit.evaluation.api.evaluate",
    "hpatches_kit.evaluation.describers.compute_descriptors",
    "hpatches_kit.evaluation.describers.keras_describer",
    "hpatches_kit.data.hpatches.load_dataset",
    "hpatches_kit.models.l2net.l2net",
    "hpatches_kit.losses.triplet.BatchHardTripletLoss",
    "hpatches_kit.losses.hardnet.HardNetLoss",
    "hpatches_kit.losses.base.FunctionLoss",
    "hpatches_kit.losses.registry",
    "hpatches_kit.evaluation.diagnostics.pca_energy",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_run(name):
    mod = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failures = []
    for test in finder.find(mod, name, globs=dict(vars(mod))):
        result = runner.run(test, out=lambda s: failures.append(s))
        assert result.failed == 0, f"{test.name}: " + "".join(failures)


@pytest.mark.parametrize("qualname", MUST_HAVE_EXAMPLES)
def test_central_api_has_a_running_example(qualname):
    parts = qualname.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for attr in parts[cut:]:
        obj = getattr(obj, attr)
    doc = obj.__doc__ or ""
    assert "Examples:" in doc or "Example:" in doc, f"{qualname}: no Examples section"
    tests = doctest.DocTestParser().get_examples(doc)
    running = [e for e in tests if not e.options.get(doctest.SKIP)]
    assert running, f"{qualname}: every example is skipped"
    if not hasattr(obj, "__path__") and callable(obj):  # functions and classes: Args and Returns too
        assert "Args:" in doc and "Returns:" in doc, f"{qualname}: Args/Returns missing"
