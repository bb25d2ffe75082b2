"""Every list of names a command line offers is its registry's: ``--model``, ``--loss``, ``--format``, the
``hpatches-eval`` sub-commands, ``--baseline``, ``--task`` and the precisions equal the registries' names, also after
a plug-in registers one of each (so a plug-in is a choice everywhere, and no command keeps a list of its own)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from hpatches_kit import benchmarks
from hpatches_kit.cli import eval as eval_cli
from hpatches_kit.cli import train as train_cli
from hpatches_kit.data import formats
from hpatches_kit.evaluation import registry as tasks
from hpatches_kit.evaluation.describers import BASELINES
from hpatches_kit.losses import registry as losses
from hpatches_kit.models import registry as models
from hpatches_kit.models.precision import PRECISIONS


def _choices(parser: argparse.ArgumentParser) -> dict:
    """``{option or "COMMAND": list of choices}`` of the parser's actions that have choices."""
    out = {}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            out["COMMAND"] = list(a.choices)
        elif a.choices is not None and a.option_strings:
            out[a.option_strings[-1]] = list(a.choices)
    return out


def _train_choices(command: str) -> dict:
    sub = next(a for a in train_cli.build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return _choices(sub.choices[command])


def _expected_train() -> dict:
    return {
        "descriptor": {
            "--model": list(models.names("descriptor")),
            "--loss": list(losses.names("descriptor")),
            "--format": list(formats.names()),
            "--mixed-precision": list(PRECISIONS),
        },
        "denoise": {"--model": list(models.names("denoiser")), "--mixed-precision": list(PRECISIONS)},
        "vit-adapter": {"--loss": list(losses.names("pair"))},
    }


def _check_all():
    for command, expected in _expected_train().items():
        got = _train_choices(command)
        assert {k: got[k] for k in expected} == expected, command
    parser = eval_cli.build_parser()
    got = _choices(parser)
    assert got["COMMAND"] == list(benchmarks.names()) + list(eval_cli.TOOLS)
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("hpatches", "brown", "real"):
        assert _choices(subs[name])["--baseline"] == list(BASELINES.names()), name
    for name in ("hpatches", "brown"):
        assert _choices(subs[name])["--precision"] == list(PRECISIONS), name
    assert _choices(subs["hpatches"])["--task"] == list(tasks.names()) + ["all"]


class _PlugTask:
    name, files, headline_name, headline_definition, plot_label = "plug_task", (), "plug", "none", "plug"


@pytest.fixture
def plugins():
    """One plug-in of every kind, registered as a user's module would (and removed after the test)."""

    def build(input_size=32, dim=8):  # never built here
        raise AssertionError

    models.register("plug-net", build)
    losses.register("plug-loss", losses.function_loss(len))
    losses.register("plug-pair", losses.function_loss(len), kind="pair")
    formats.register("mytracks", lambda path, **o: None, detect=lambda path: False)
    benchmarks.register("plug-bench", lambda o: {})
    BASELINES.register("plug-base", lambda: None)
    tasks.register(_PlugTask())
    yield
    for reg, name in (
        (models, "plug-net"),
        (losses, "plug-loss"),
        (losses, "plug-pair"),
        (formats, "mytracks"),
        (benchmarks, "plug-bench"),
        (BASELINES, "plug-base"),
        (tasks, "plug_task"),
    ):
        reg.unregister(name)


def test_every_cli_choice_is_its_registrys():
    _check_all()
    # the built-ins are there (a registry that lost them would pass the equality above)
    assert "brown" in _train_choices("descriptor")["--format"] and "hardnet8" in _train_choices("descriptor")["--model"]


def test_a_plugin_is_a_choice_everywhere(plugins):
    _check_all()
    assert (
        "plug_net" in _train_choices("descriptor")["--model"] and "plug-loss" in _train_choices("descriptor")["--loss"]
    )
    assert "plug-pair" in _train_choices("vit-adapter")["--loss"] and "plug-base" in BASELINES.names()


def test_a_registered_reader_is_a_format(tmp_path):
    """``--format mytracks`` after a module registered the reader ``mytracks``: parsed, and the run's tracks are
    the reader's (the format is never detected: its detect says no)."""
    from hpatches_kit.training.tracks import load_track_split

    tracks = np.arange(3 * 16 * 8 * 8, dtype=np.uint8).reshape(3, 16, 8, 8)
    opened = []

    @formats.register("mytracks", detect=lambda path: False, unit="points")
    def open_mine(path, size=None, **options):
        opened.append((path, size))
        return formats.ArraySource(path, "mytracks", {"only": tracks})

    parser = train_cli.build_parser("descriptor")
    argv = ["descriptor", "--data", str(tmp_path), "--format", "mytracks", "--patch-size", "8"]
    try:
        args = parser.parse_args(argv)
        split = load_track_split(args.data, args.format, split="none", size=args.patch_size)
    finally:
        formats.unregister("mytracks")
    assert opened == [(str(tmp_path), 8)] and np.array_equal(np.asarray(split.train), tracks)
    with pytest.raises(SystemExit) as e:  # unregistered: refused by the parser, with the registered names
        parser.parse_args(argv)
    assert e.value.code == 2


def test_the_loss_registry_imports_no_tensorflow():
    code = (
        "import sys; from hpatches_kit.losses import registry; registry.names(); registry.entry('batch-hard'); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr
