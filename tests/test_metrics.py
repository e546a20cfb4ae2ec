import math

import pytest
import torch

from amixup.metrics import (alignment, class_groups, groups_by_counts, groups_by_index,
                            neighborhood_uniformity, per_class_accuracy, split_accuracy, uniformity)


def test_alignment_eq1_by_hand():
    # class 0: two points 5 apart -> ordered pairs (0,1), (1,0) sum 10, over |F|^2 = 4 -> 2.5
    # class 1: a single point -> 0;  A = (2.5 + 0) / 2
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    assert alignment(f, y) == pytest.approx(1.25)


def test_alignment_uses_raw_features_not_normalised():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1])
    assert alignment(10 * f, y) == pytest.approx(12.5)


def _three_centres():
    # centres on the circle: (1, 0), (0, 1), (-1, 0), whatever the scale of the raw features
    f = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [-5.0, 0.0]])
    y = torch.tensor([0, 1, 2, 2])
    return f, y


def test_uniformity_eq2_by_hand():
    f, y = _three_centres()
    # distances sqrt2 (0-1), 2 (0-2), sqrt2 (1-2); each counted twice over C(C-1) = 6
    assert uniformity(f, y) == pytest.approx((2 * math.sqrt(2) + 2) / 3)


def test_neighborhood_uniformity_eq3_by_hand():
    f, y = _three_centres()
    assert neighborhood_uniformity(f, y, k=1) == pytest.approx(math.sqrt(2))
    assert neighborhood_uniformity(f, y, k=2) == pytest.approx((4 * math.sqrt(2) + 4) / 3)
    with pytest.raises(ValueError, match="k must lie in"):
        neighborhood_uniformity(f, y, k=3)


def test_count_threshold_splits_mini_cifar_lt_and_imagenet_lt():
    assert groups_by_counts([5000, 854, 146, 25], 1000, 200) == {"many": [0], "median": [1], "few": [2, 3]}
    assert groups_by_counts([101, 100, 20, 19], 100, 20) == {"many": [0], "median": [1, 2], "few": [3]}


def test_count_thresholds_that_would_put_a_class_in_two_groups_are_refused():
    # many: > many_threshold, few: < few_threshold; with many 5 and few 20, a class of 10 was both many and few
    for many, few in ((5, 20), (20, 20)):
        with pytest.raises(ValueError, match=f"few_threshold must be < many_threshold .*few_threshold={few}, "
                                             f"many_threshold={many}"):
            groups_by_counts([10, 500], many, few)
    with pytest.raises(ValueError, match="few_threshold must be < many_threshold"):
        class_groups("counts", [10, 500], 5, 20)
    assert groups_by_counts([10, 500, 20], 20, 19) == {"many": [1], "median": [2], "few": [0]}


def test_count_thresholds_leave_cifar10_lt_without_few_class():
    from amixup.data import longtail_counts
    counts = longtail_counts(5000, 10, 100)
    assert groups_by_counts(counts, 100, 20)["few"] == []  # why the index convention exists


def test_index_splits_of_mislas():
    assert groups_by_index(10) == {"many": [0, 1, 2], "median": [3, 4, 5, 6], "few": [7, 8, 9]}
    g = groups_by_index(100)
    assert (len(g["many"]), len(g["median"]), len(g["few"])) == (36, 35, 29)
    assert g["median"][0] == 36 and g["few"][0] == 71
    with pytest.raises(ValueError, match=r"split_convention='index' .*10 or 100 classes, but this one has 4; "
                                         r"use split_convention='counts'"):
        groups_by_index(4)
    with pytest.raises(ValueError, match="split_convention='index' .*has 2; use split_convention='counts'"):
        class_groups("index", [20, 20])
    with pytest.raises(ValueError, match="split_convention must be one of"):
        class_groups("median", [1, 2])


def test_split_accuracy_weights_by_test_samples():
    labels = torch.tensor([0, 0, 1, 2, 2, 3])
    preds = torch.tensor([0, 1, 1, 2, 0, 0])
    out = split_accuracy(preds, labels, {"many": [0], "median": [1], "few": [2, 3]})
    assert out == pytest.approx({"all": 50.0, "many": 50.0, "median": 100.0, "few": 100 / 3})
    assert split_accuracy(preds, labels, {"few": []})["few"] is None
    assert per_class_accuracy(preds, labels, 5) == [50.0, 100.0, 50.0, 0.0, None]


def test_uniformities_are_undefined_for_features_collapsed_at_the_origin():
    """A dead ReLU puts every 2-D feature at (0, 0): no class centre has a direction, so Eq. 2 and Eq. 3 are NaN
    (not 0 or inf); records written before hold inf for U1, which tables read as NaN."""
    from amixup import tables

    f, y = torch.zeros(8, 2), torch.arange(8) % 4
    assert math.isnan(uniformity(f, y)) and math.isnan(neighborhood_uniformity(f, y, k=1))
    assert math.isnan(tables._undefined_as_nan(math.inf)) and tables._undefined_as_nan(1.5) == 1.5
