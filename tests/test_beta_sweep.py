"""The beta-sensitivity sweep of notebook 04: its configs, beta = 0 in the engine, and the summary table."""

import math

import pytest

from amixup import experiments, tables
from amixup.engine import train


def test_sweep_is_table2_am_mixup_per_beta_and_seed():
    sweep = experiments.beta_sweep_configs("paper")
    assert experiments.BETA_SWEEP == (0.0, 0.1, 0.2, 0.34, 0.5, 0.67, 1.0, 1.5)
    assert [(c.beta, c.seed) for c in sweep] == [(b, s) for b in experiments.BETA_SWEEP for s in (0, 1)]
    assert len({c.run_id() for c in sweep}) == 16
    for c in sweep:
        [twin] = experiments.table2_configs("paper", methods=("am_mixup",), seeds=(c.seed,), beta=c.beta)
        assert {**twin.to_dict(), "experiment": "beta_sweep"} == c.to_dict()  # Table 2's recipe, its own records
    assert (sweep[0].experiment, sweep[0].dataset, sweep[0].model, sweep[0].epochs) == (
        "beta_sweep", "mini_cifar_lt", "cnn_vis2d", 100)
    # an integer beta names the same run as its float (the notebook's -p beta_values "[0, 1]")
    assert [c.run_id() for c in experiments.beta_sweep_configs("paper", [0, 1])] == [
        c.run_id() for c in experiments.beta_sweep_configs("paper", [0.0, 1.0])]
    with pytest.raises(ValueError, match="beta must be >= 0"):
        experiments.beta_sweep_configs("smoke", [-0.1])


def test_beta_zero_keeps_lambda_at_one(data_env, tmp_path):
    [config] = experiments.beta_sweep_configs("smoke", [0.0], [0], train_subset=400, test_subset=200)
    rec = train(config, tmp_path, progress=False)
    assert rec["lambda_trajectory"] == [1.0, 1.0]  # exp(-0 * acc): the partner gets weight 0, no mixing
    assert rec["config"]["beta"] == 0.0 and rec["config"]["method"] == "am_mixup"
    assert all(h["train_acc_clean"] is not None for h in rec["history"])


def _record(beta, seed, acc, few, lambdas):
    return {"config": {"beta": beta, "seed": seed}, "metrics": {"last": {"acc_all": acc, "acc_few": few},
                                                                "best": {"acc_all": acc + 1 + seed, "acc_few": few}},
            "lambda_trajectory": lambdas}


def test_beta_summary_means_stds_and_where_lambda_can_cross():
    records = [_record(0.34, 0, 60.0, 30.0, [1.0, 0.8]), _record(0.34, 1, 62.0, 34.0, [1.0, 0.76]),
               _record(0.67, 0, 61.0, 31.0, [1.0, 0.52]), _record(1.0, 0, 58.0, 20.0, [1.0, 0.6, 0.45]),
               _record(1.5, 0, 50.0, 10.0, [1.0, 0.7, 0.55])]
    table = tables.beta_summary(records).set_index("beta")
    assert list(table.index) == [0.34, 0.67, 1.0, 1.5]
    assert table.loc[0.34, "seeds"] == 2 and table.loc[0.34, "acc_all_mean"] == 61.0
    assert table.loc[0.34, "best_acc_all_mean"] == 62.5  # (61 + 63) / 2, beside the last epoch's 61
    assert table.loc[0.34, "acc_all_std"] == pytest.approx(math.sqrt(2)) and table.loc[0.34, "acc_few_mean"] == 32.0
    assert table.loc[0.34, "lambda_last"] == pytest.approx(0.78) and table.loc[0.34, "lambda_min"] == 0.76
    assert math.isnan(table.loc[0.67, "acc_all_std"])  # one seed
    assert table["can_cross"].to_dict() == {0.34: False, 0.67: False, 1.0: True, 1.5: True}  # beta > ln 2
    assert table["crossed"].to_dict() == {0.34: False, 0.67: False, 1.0: True, 1.5: False}
    assert tables.beta_summary([]).empty
