import math

import pytest

from amixup.schedule import AMScheduler, lambda_am


def test_lambda_am_matches_eq6_by_hand():
    assert lambda_am(0.0, 0.34) == 1.0
    assert lambda_am(0.5, 0.34) == pytest.approx(0.8436648165963837, abs=1e-15)
    # beta = 0.67 takes lambda from 1 to about 0.5 at 100 % training accuracy (Section 3.2)
    assert lambda_am(1.0, 0.67) == pytest.approx(0.511708577, abs=1e-9)
    assert lambda_am(0.9, 0.0) == 1.0


@pytest.mark.parametrize("acc", [-0.01, 1.01, 85.0, float("nan")])
def test_lambda_am_rejects_accuracy_outside_unit_interval(acc):
    with pytest.raises(ValueError, match="train_acc"):
        lambda_am(acc, 0.34)


def test_lambda_am_rejects_negative_beta():
    with pytest.raises(ValueError, match="beta must be >= 0"):
        lambda_am(0.5, -0.1)
    with pytest.raises(ValueError, match="beta"):
        AMScheduler(beta=-1)


def test_scheduler_starts_at_one_and_updates_once_per_epoch():
    s = AMScheduler(beta=0.34)
    assert s.value == 1.0
    s.step(0.5)
    s.step(0.9)
    assert s.history == [1.0, pytest.approx(math.exp(-0.17))]
    assert s.value == pytest.approx(math.exp(-0.34 * 0.9))


def test_scheduler_state_round_trip():
    s = AMScheduler(beta=0.5)
    s.step(0.3)
    t = AMScheduler(beta=0.1)
    t.load_state_dict(s.state_dict())
    assert (t.beta, t.value, t.history) == (s.beta, s.value, s.history)
