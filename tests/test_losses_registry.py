"""hpatches_kit.losses.get / names: every CLI loss name builds the same loss the classes build directly."""

import pytest
from conftest import assert_loss_round_trip

from hpatches_kit import losses
from hpatches_kit.training.mining import CurriculumTripletLoss

KW = dict(margin=0.7, distance_metric="squared-L2", views_per_track=3, temperature=0.1)
DIRECT = {
    "batch-hard": lambda: losses.BatchHardTripletLoss(margin=0.7, distance_metric="squared-L2"),
    "batch-all": lambda: losses.BatchAllTripletLoss(margin=0.7, distance_metric="squared-L2", views_per_track=3),
    "semi-hard": lambda: losses.TripletSemiHardLoss(margin=0.7, distance_metric="squared-L2", views_per_track=3),
    "soft-margin": lambda: losses.BatchHardTripletLoss(
        margin=0.7, soft=True, distance_metric="squared-L2", name="soft_margin_triplet_loss"
    ),
    "hardnet": lambda: losses.HardNetLoss(margin=0.7, distance_metric="squared-L2", views_per_track=3),
    "curriculum": lambda: CurriculumTripletLoss(
        margin=0.7, hard_weight=0.0, distance_metric="squared-L2", views_per_track=3
    ),
    "random-triplet": lambda: losses.RandomTripletLoss(margin=0.7, distance_metric="squared-L2"),
    "contrastive": lambda: losses.SymmetricContrastiveLoss(margin=0.7),
    "cosine": lambda: losses.CosineEmbeddingLoss(margin=0.7),
    "infonce": lambda: losses.InfoNCELoss(temperature=0.1),
    "irt": lambda: losses.IRTLoss(),
    "sosr": lambda: losses.SOSNetLoss(margin=0.7, views_per_track=3),
    "hynet": lambda: losses.HyNetLoss(views_per_track=3),  # the paper's margin 1.2 whatever --margin says
}


def test_names_cover_both_clis():
    assert set(losses.names()) == set(DIRECT)
    # the CLIs read the registry: tests/test_cli_choices.py
    with pytest.raises(ValueError, match="unknown loss kind"):
        losses.names("other")


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_get_matches_direct_construction(name):
    got, ref = losses.get(name, **KW), DIRECT[name]()
    assert type(got) is type(ref)
    assert got.get_config() == ref.get_config()
    assert_loss_round_trip(got)


def test_unknown_name_is_value_error_listing_names():
    with pytest.raises(ValueError, match="unknown loss 'nope'.*batch-hard"):
        losses.get("nope")


def test_embedding_losses_keep_integer_labels_exact():
    """IRT with track ids 2**24 and 2**24 + 1 (equal once cast to float32) must match ids 0 / 1."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    big = np.array([2**24, 2**24 + 1] * 3, dtype="int64")
    small = np.array([0, 1] * 3, dtype="int64")
    loss = losses.IRTLoss()
    got, ref = float(loss(big, x)), float(loss(small, x))
    assert np.isfinite(ref) and got == pytest.approx(ref, rel=1e-6)
    merged = float(loss(np.zeros(6, "int64"), x))  # what a float32 cast would have computed
    assert abs(merged - ref) > 1e-3


def test_entries_carry_what_the_trainer_needs():
    import math

    from hpatches_kit.losses.curriculum import MiningCurriculum
    from hpatches_kit.training.descriptor import make_loss

    assert {n: losses.entry(n).batch for n in losses.names()} == {
        "batch-hard": "tracks",
        "batch-all": "tracks",
        "semi-hard": "tracks",
        "soft-margin": "tracks",
        "hardnet": "tracks",
        "curriculum": "tracks",
        "random-triplet": "triplets",
        "sosr": "tracks",
        "hynet": "tracks",
        "contrastive": "pairs",
        "cosine": "pairs",
        "infonce": "pairs",
        "irt": "pairs",
    } | {n: losses.entry(n).batch for n in losses.names() if n not in DIRECT}
    assert losses.entry("soft-margin").collapse_level(0.3) == pytest.approx(math.log(2))
    assert losses.entry("hardnet").collapse_level(0.3) == 0.3
    # the curriculum's callback, found through the wrappers the trainer may add
    wrapped = make_loss("curriculum", 1.0, "L2", 2, global_mining=True, koleo=0.1)
    (cb,) = losses.entry("curriculum").training_callbacks(wrapped, type("O", (), {"curriculum_warmup": 2})())
    assert isinstance(cb, MiningCurriculum) and cb.warmup == 2 and [cb.weight(e) for e in range(4)] == [0, 0, 1, 1]
    assert cb.loss.hard_weight is not None
    assert losses.entry("batch-hard").training_callbacks(losses.get("batch-hard")) == []
    # a plain factory registered (as a new module adds its loss) gets the default entry
    losses.register("plain-test", losses.function_loss(_plain_loss, uses=("margin",)))
    try:
        e = losses.entry("plain-test")
        assert (e.batch, e.composable, e.collapse_level(0.7)) == ("tracks", True, 0.7)
        assert "plain-test" in losses.names("descriptor") and "plain-test" not in losses.names("pair")
        assert make_loss("plain-test", 0.7, koleo=0.1).loss.margin == 0.7  # KoLeo wraps it
    finally:
        losses.unregister("plain-test")
    # a built-in names its function "module:function" (imported when the loss is built, not when it is listed)
    lazy = losses.function_loss("test_losses_registry:_plain_loss", uses=("margin",))(margin=0.3, temperature=2)
    assert lazy.fn is _plain_loss and lazy.fn_kwargs == {"margin": 0.3}
    with pytest.raises(ValueError, match="do not apply to --loss random-triplet"):
        make_loss("random-triplet", koleo=0.1)
    with pytest.raises(ValueError, match="a pair loss needs batch 'pairs'"):
        losses.register("x-test", losses.function_loss(_plain_loss), kind="pair", batch="tracks")


import keras  # noqa: E402


@keras.saving.register_keras_serializable(package="test_losses_registry")
def _plain_loss(y_true, y_pred, margin=1.0):
    return keras.ops.mean(keras.ops.square(y_pred)) * margin


def my_loss_fn(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """A user's loss function: (y_true, y_pred, **kw)."""
    return keras.ops.mean(keras.ops.sum(keras.ops.square(y_pred), axis=-1)) * margin


class MyLossClass(keras.losses.Loss):
    def __init__(self, margin=1.0, **kw):
        super().__init__(**kw)
        self.margin = margin

    def call(self, y_true, y_pred):
        return keras.ops.mean(y_pred) * self.margin


def my_factory(margin=1.0):
    return losses.BatchHardTripletLoss(margin=margin)


def not_a_loss_factory(margin=1.0):
    return 3


def test_module_function_losses():
    import numpy as np

    from hpatches_kit.losses.base import FunctionLoss

    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    y = np.repeat(np.arange(3), 2)
    fn = losses.get("test_losses_registry:my_loss_fn", margin=2.0, distance_metric="angular", temperature=3)
    assert isinstance(fn, FunctionLoss) and fn.fn_kwargs == {"margin": 2.0, "distance_metric": "angular"}
    assert float(fn(y, x)) == pytest.approx(2.0 * float((x**2).sum(axis=1).mean()), rel=1e-5)
    assert_loss_round_trip(fn, y, x)  # the function was registered for deserialisation under its module
    cls = losses.get("test_losses_registry:MyLossClass", margin=0.5, views_per_track=2)
    assert type(cls) is MyLossClass and cls.margin == 0.5
    fac = losses.get("test_losses_registry:my_factory", margin=0.25)
    assert isinstance(fac, losses.BatchHardTripletLoss) and fac.margin == 0.25
    assert losses.entry("test_losses_registry:my_loss_fn").batch == "tracks"
    with pytest.raises(ValueError, match="returned a int, not a keras.losses.Loss"):
        losses.get("test_losses_registry:not_a_loss_factory")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        losses.get("test_losses_registry:nope")


def top_k_loss(y_true, y_pred, margin=1.0, hard_ratio=0.5):
    """A user's loss with a setting of its own: the mean of the largest ``hard_ratio`` share of squared norms."""
    sq = keras.ops.sort(keras.ops.sum(keras.ops.square(y_pred), axis=-1))
    k = max(1, int(round(hard_ratio * int(y_pred.shape[0]))))
    return keras.ops.mean(sq[-k:]) * margin


def test_loss_settings_reach_the_loss_and_are_checked():
    """--loss-arg KEY=VALUE: parsed to int/float/bool/None/str, passed to the factory as keyword arguments,
    checked against the loss's parameters (a NumPy top-k mean is the reference)."""
    import numpy as np

    from hpatches_kit.losses.registry import parameters, parse_setting
    from hpatches_kit.training.descriptor import make_loss

    assert [parse_setting(s) for s in ("a=3", "b=0.25", "c=False", "d=none", "e=hi=x")] == [
        ("a", 3),
        ("b", 0.25),
        ("c", False),
        ("d", None),
        ("e", "hi=x"),
    ]
    for bad in ("noequals", "=3", "1x=2"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_setting(bad)
    ref = "test_losses_registry:top_k_loss"
    assert parameters(ref) == ("margin", "hard_ratio")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.repeat(np.arange(4), 2)
    loss = make_loss(ref, margin=2.0, settings=["hard_ratio=0.25"])
    sq = np.sort((x**2).sum(axis=1))
    assert float(loss(y, x)) == pytest.approx(2.0 * sq[-2:].mean(), rel=1e-5)
    assert loss.fn_kwargs == {"margin": 2.0, "hard_ratio": 0.25}
    with pytest.raises(
        ValueError,
        match=r"--loss-arg ratio: --loss test_losses_registry:top_k_loss takes no "
        r"setting 'ratio' \(its settings: margin, hard_ratio\)",
    ):
        make_loss(ref, settings=["ratio=0.1"])
    with pytest.raises(ValueError, match="--loss-arg margin: set it with --margin"):
        make_loss(ref, settings={"margin": 0.3})
    with pytest.raises(ValueError, match="takes no setting 'hard_ratio'"):
        make_loss("batch-hard", settings={"hard_ratio": 0.1})  # a built-in: its factory's named parameters
    assert parameters("test_losses_registry:MyLossClass") == ("margin",)  # its __init__'s named parameters
