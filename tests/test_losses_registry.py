"""hpatches_kit.losses.get / names: every CLI loss name builds the same loss the classes build directly."""

import pytest
from conftest import assert_loss_round_trip

from hpatches_kit import losses
from hpatches_kit.cli import train_descriptor, train_vit
from hpatches_kit.training.mining import CurriculumTripletLoss

KW = dict(margin=0.7, distance_metric="squared-L2", views_per_track=3, temperature=0.1)
DIRECT = {
    "batch-hard": lambda: losses.BatchHardTripletLoss(margin=0.7, distance_metric="squared-L2"),
    "batch-all": lambda: losses.BatchAllTripletLoss(margin=0.7, distance_metric="squared-L2", views_per_track=3),
    "semi-hard": lambda: losses.TripletSemiHardLoss(margin=0.7, distance_metric="squared-L2", views_per_track=3),
    "soft-margin": lambda: losses.BatchHardTripletLoss(margin=0.7, soft=True, distance_metric="squared-L2",
                                                       name="soft_margin_triplet_loss"),
    "hardnet": lambda: losses.HardNetLoss(margin=0.7, distance_metric="squared-L2", views_per_track=3),
    "curriculum": lambda: CurriculumTripletLoss(margin=0.7, hard_weight=0.0, distance_metric="squared-L2",
                                                views_per_track=3),
    "random-triplet": lambda: losses.RandomTripletLoss(margin=0.7, distance_metric="squared-L2"),
    "contrastive": lambda: losses.SymmetricContrastiveLoss(margin=0.7),
    "cosine": lambda: losses.CosineEmbeddingLoss(margin=0.7),
    "infonce": lambda: losses.InfoNCELoss(temperature=0.1),
    "irt": lambda: losses.IRTLoss(),
}


def test_names_cover_both_clis():
    assert set(losses.names()) == set(DIRECT)
    assert losses.names("descriptor") == train_descriptor._loss_names()  # the CLI reads the registry
    assert set(losses.names("pair")) == set(train_vit.LOSSES)
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
