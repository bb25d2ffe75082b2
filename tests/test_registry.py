"""The one registry shape (:class:`hpatches_kit.registry.Registry`) that models, losses, formats, tasks, benchmarks
and baselines share: lazy built-ins, the verbs, entry points, ``MODULE:FUNCTION`` and the CLI's live choices."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import pytest

import hpatches_kit.plugins as plugins
import hpatches_kit.registry as registry_module
from hpatches_kit.registry import Registry


@dataclass(frozen=True)
class Entry:
    name: str
    fn: object
    kind: str = "a"


def _make(name, fn, kind="a"):
    if not callable(fn):
        raise TypeError(f"{name}: not callable")
    return Entry(name, fn, kind)


def test_builtins_are_imported_on_first_use_and_come_first(tmp_path, monkeypatch):
    (tmp_path / "lazy_builtin_mod.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("thing", builtin={"lazy": "lazy_builtin_mod:f"}, make=_make, entry_type=Entry, kinds=("a", "b"))
    assert "lazy_builtin_mod" not in sys.modules
    reg.register("late", len, kind="b")
    assert "lazy_builtin_mod" in sys.modules
    assert reg.names() == ("lazy", "late") and reg.get("lazy").fn() == 1
    assert reg.names("b") == ("late",) and reg.entries("a") == (reg.get("lazy"),)
    with pytest.raises(ValueError, match="unknown thing kind 'c'; expected one of a, b"):
        reg.names("c")
    sys.modules.pop("lazy_builtin_mod")


def test_verbs():
    reg = Registry("thing", builtin={"one": Entry("one", abs)}, make=_make, entry_type=Entry, canon=str.lower)

    @reg.register("Deco")
    def deco():
        return 2

    assert deco() == 2 and reg.get("deco").fn is deco and reg.get("DECO").name == "deco"
    assert reg.register("first", min, first=True) is min and reg.names() == ("first", "one", "deco")
    assert reg.register(Entry("own", max)).name == "own" and reg.get("own").fn is max
    with pytest.raises(ValueError, match="'deco' is already registered"):
        reg.register("deco", len)
    reg.register("deco", len, replace=True)
    assert reg.get("deco").fn is len and reg.names()[-2:] == ("own", "deco")
    with pytest.raises(ValueError, match="'one' is already registered"):
        reg.register("one", len, replace=True)  # a built-in is never replaced ...
    with pytest.raises(ValueError, match="built-in thing"):
        reg.unregister("one")  # ... nor removed
    with pytest.raises(TypeError, match="not callable"):
        reg.register("bad", 3)
    assert "bad" not in reg
    for name in ("deco", "first", "own"):
        reg.unregister(name)
    assert reg.names() == ("one",) and reg.builtin_names() == ("one",)
    with pytest.raises(ValueError, match="unknown thing 'zz'; expected one of one$"):
        reg.get("zz")


def test_entry_points_join_without_shadowing(monkeypatch):
    warned = []
    monkeypatch.setattr(registry_module.log, "warning", lambda msg, *args: warned.append(msg % args))
    monkeypatch.setattr(
        plugins,
        "entry_point_objects",
        lambda group: {"ep": len, "one": max, "broken": 3, "ready": Entry("other-name", min)} if group == "g" else {},
    )
    reg = Registry("thing", builtin={"one": Entry("one", abs)}, group="g", make=_make, entry_type=Entry)
    assert reg.names() == ("one", "ep", "ready")
    assert reg.get("one").fn is abs and reg.get("ep").fn is len
    assert reg.get("ready").name == "ready"  # an entry object is renamed to its entry-point name
    assert warned == ["entry point broken (group g) is not a thing: broken: not callable"]  # logged, left out


def test_references_resolve_once():
    made = []
    reg = Registry("thing", reference=lambda ref, obj: made.append(ref) or Entry(ref, obj), flag="--thing")
    assert reg.get("math:sqrt").fn is math.sqrt and reg.get("math:sqrt").fn is math.sqrt and made == ["math:sqrt"]
    assert "math:sqrt" not in reg.names()
    with pytest.raises(ValueError, match="--thing math:nope: module 'math' has no attribute 'nope'"):
        reg.get("math:nope")
    with pytest.raises(ValueError, match="unknown thing 'math:sqrt'; expected one of $"):
        Registry("thing").get("math:sqrt")  # no reference resolver: an unknown name


def test_choices_are_a_live_view():
    reg = Registry("thing", builtin={"one": Entry("one", abs)}, make=_make, entry_type=Entry, kinds=("a", "b"))
    a, b = reg.choices("a"), reg.choices("b")
    assert list(a) == ["one"] and list(b) == [] and "one" in a and "one" not in b and "mod:fn" not in a
    reg.register("two", len, kind="b")
    assert list(b) == ["two"] and "two" in b and len(reg.choices()) == 2
    ref = Registry("thing", reference=lambda ref, obj: obj).choices()
    assert "mod:fn" in ref and "plain" not in ref
