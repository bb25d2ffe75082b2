"""hpatches_kit.training.schedules against hand-worked cosine values."""

import math

import keras
import pytest

from hpatches_kit.training.schedules import cosine_decay, make_optimizer, replan_schedule


def test_cosine_decay_values():
    s = cosine_decay(1e-3, 2, 5)  # 10 steps
    for step in (0, 5, 10):
        ref = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / 10))
        assert float(s(step)) == pytest.approx(ref, rel=1e-5, abs=1e-9)


def test_make_optimizer_constant_and_cosine():
    assert float(make_optimizer(0.01, "constant", 3, 4).learning_rate) == pytest.approx(0.01)
    opt = make_optimizer(0.01, "cosine", 3, 4)
    assert (
        isinstance(opt.learning_rate, keras.optimizers.schedules.CosineDecay)
        or opt.get_config()["learning_rate"]["class_name"] == "CosineDecay"
    )


def test_replan_only_when_the_plan_changes():
    opt = make_optimizer(0.01, "cosine", 3, 4)
    assert not replan_schedule(opt, 0.01, "cosine", 3, 4)
    assert not replan_schedule(opt, 0.01, "constant", 9, 4)
    assert replan_schedule(opt, 0.01, "cosine", 6, 4)
    assert opt.get_config()["learning_rate"]["config"]["decay_steps"] == 24
