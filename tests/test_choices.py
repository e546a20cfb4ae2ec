"""Table 2's silent-choices study (notebook 01): one definition of the choices, the configs built from it, and the
tables that read the choices back from the records."""

import inspect
import math
import json
from pathlib import Path

import pytest

from amixup import experiments, models, tables

ROOT = Path(__file__).resolve().parents[1]


def test_our_choices_are_cnn_vis2ds_defaults():
    defaults = inspect.signature(models.cnn_vis2d).parameters
    for name in ("batchnorm", "feature_activation", "pooling"):
        assert defaults[name].default == tables.CHOICE_DEFAULTS[name]
    assert tables.CHOICE_DEFAULTS["augmentation"] is True and experiments.TABLE2_CHOICES is tables.TABLE2_CHOICES


def test_the_factorial_has_every_combination_once_ours_first():
    combos = experiments.table2_choice_combinations()
    assert len(combos) == 16 == len({json.dumps(c, sort_keys=True) for c in combos})
    assert combos[0] == tables.CHOICE_DEFAULTS
    changed = [sum(c[n] != tables.CHOICE_DEFAULTS[n] for n in tables.CHOICES) for c in combos]
    assert changed == sorted(changed) and changed[-1] == 4


def test_overrides_of_a_combination():
    assert experiments.table2_choice_overrides() == {}
    assert experiments.table2_choice_overrides(augmentation=False) == {"crop_padding": 0, "flip": False}
    assert experiments.table2_choice_overrides(feature_activation="relu", pooling="avg") == {
        "model_options": {"feature_activation": "relu"}}
    with pytest.raises(ValueError, match=r"\['dropout'\] are not choices"):
        experiments.table2_choice_overrides(dropout=0.1)


def test_configs_keep_table2s_run_for_ours_and_the_committed_ids_for_the_others():
    ours = experiments.table2_choice_configs("paper", seeds=(0,), combinations=[{}])[0]
    assert ours.experiment == "table2" and ours.run_id() == experiments.table2_configs("paper", ("ce",))[0].run_id()
    pattern = {"augmentation": False, "feature_activation": "relu"}
    runs = experiments.table2_choice_configs("paper", experiments.METHODS, (0,), combinations=[pattern])
    assert {c.experiment for c in runs} == {"table2_choices"}
    committed = ROOT / "results" / "01_motivation" / "paper" / "table2_choices"
    for config in runs:  # the records notebook 01 reads back
        assert (committed / f"{config.run_id()}.json").is_file(), config.run_id()


def test_choice_frame_reads_each_combination_back_from_the_records():
    combos = experiments.table2_choice_combinations()
    configs = experiments.table2_choice_configs("smoke", seeds=(0,), combinations=combos)
    records = [{"run_id": c.run_id(), "seed": c.seed, "seconds": 1.0, "git": {}, "config": c.to_dict(),
                "metrics": {"last": {"acc_all": 50.0}, "best": {"acc_all": 50.0, "epoch": 1}},
                "history": [{"train_loss": 1.0}], "environment": {"device_name": "cpu"}, "data": {"source": "x"}}
               for c in configs]
    frame = tables.choice_frame(records)
    by_id = {c.run_id(): combo for c, combo in zip(configs, combos)}
    for row in frame.itertuples(index=False):
        assert {name: getattr(row, name) for name in tables.CHOICES} == by_id[row.run_id]
    assert len(frame) == 16


def _summary(rows):
    import pandas as pd
    return pd.DataFrame([dict(tables.CHOICE_DEFAULTS, **row) for row in rows])


def test_nearest_orders_combinations_by_the_summed_gaps_computed_by_hand():
    summary = _summary([{"pooling": "flatten", "acc_all": 50.0, "acc_few": 10.0},   # 7.5 + 7.75 = 15.25
                        {"feature_activation": "relu", "acc_all": 40.0, "acc_few": 0.0},  # 2.5 + 2.25 = 4.75
                        {"batchnorm": False, "acc_all": 44.0, "acc_few": 5.0}])   # 1.5 + 2.75 = 4.25
    ranked = tables.nearest(summary, {"acc_all": 42.5, "acc_few": 2.25})
    assert list(ranked["distance"]) == pytest.approx([4.25, 4.75, 15.25])  # sums of decimals: not exact in binary
    assert list(ranked["batchnorm"]) == [False, True, True]
    assert tables.nearest(summary.iloc[:0], {"acc_all": 42.5}).empty


def test_common_seeds_keeps_the_seeds_every_combination_has():
    frame = _summary([{"seed": s, "method": "ce", "acc_all": 1.0} for s in (0, 1, 2)]
                     + [{"seed": s, "method": "ce", "pooling": "flatten", "acc_all": 1.0} for s in (1, 0)])
    kept, seeds = tables.common_seeds(frame)
    assert seeds == [0, 1] and len(kept) == 4 and set(kept["seed"]) == {0, 1}
    apart = _summary([{"seed": 0, "method": "ce"}, {"seed": 1, "method": "ce", "pooling": "flatten"}])
    kept, seeds = tables.common_seeds(apart)
    assert seeds == [] and kept.equals(apart)


def test_under_choices_takes_ours_for_the_choices_a_combination_leaves_out():
    frame = _summary([{}, {"feature_activation": "relu"}, {"feature_activation": "relu", "augmentation": False}])
    assert len(tables.under_choices(frame, {"feature_activation": "relu"})) == 1
    assert len(tables.under_choices(frame, {})) == 1
    assert tables.under_choices(frame, {"augmentation": False, "feature_activation": "relu"}).index.tolist() == [2]


def test_pattern_outcome_needs_both_mixups_five_points_above_ce():
    """The paper's Table 2 pattern: CE at least 5 points below mixup and manifold mixup (42.5 against 59.4, 65.4)."""
    relu = {"feature_activation": "relu"}
    def under(**accuracies):
        return _summary([dict(relu, method=m, acc_all=a) for m, a in accuracies.items()])
    combo = dict(tables.CHOICE_DEFAULTS, **relu)
    assert tables.table2_pattern_outcome(under(ce=40.0, mixup=45.0, manifold_mixup=50.0), combo) == "reproduced"
    assert tables.table2_pattern_outcome(under(ce=40.0, mixup=44.9, manifold_mixup=50.0), combo) == "in part"
    assert tables.table2_pattern_outcome(under(ce=39.93, mixup=32.21, manifold_mixup=32.23), combo) == "not reproduced"
    assert tables.table2_pattern_outcome(under(ce=40.0, mixup=60.0), combo) == "untested"
    assert tables.table2_pattern_outcome(under(ce=40.0, mixup=60.0, manifold_mixup=60.0), tables.CHOICE_DEFAULTS) \
        == "untested"  # no run under our own choices
    assert "manifold_mixup have no run" in tables.table2_pattern_verdict(under(ce=40.0, mixup=60.0), combo)
    assert tables.table2_pattern_verdict(under(ce=40.0, mixup=45.0, manifold_mixup=50.0), combo) == (
        "This combination reproduces the paper's pattern: CE 40.00 lies 5+ points below mixup 45.00, "
        "manifold_mixup 50.00.")


def test_pattern_tally_counts_the_tested_combinations_only():
    assert tables.pattern_tally(["not reproduced", "not reproduced", "untested"]) == (
        "Of the 2 combination(s) with every baseline trained, none reproduces the paper's pattern (0 in part).")
    assert tables.pattern_tally(["reproduced", "in part", "not reproduced"]) == (
        "Of the 3 combination(s) with every baseline trained, 1 reproduce(s) the paper's pattern (1 in part).")
    assert tables.pattern_tally(["untested"]) == "" and tables.pattern_tally([]) == ""


def test_predicts_one_class_only_for_a_total_collapse():
    def record(per_class):
        return {"metrics": {"per_class_acc": per_class}}
    assert tables.predicts_one_class(record([100.0, 0.0, 0.0, 0.0]))
    assert tables.predicts_one_class(record([0.0, None, 100.0]))  # a class without test images is left out
    assert not tables.predicts_one_class(record([100.0, 0.0, 0.0, 0.5]))
    assert not tables.predicts_one_class(record([99.9, 0.0, 0.0, 0.0]))
    assert not tables.predicts_one_class(record([100.0]))
    assert not tables.predicts_one_class({"metrics": {}})


def test_choice_frame_marks_runs_predicting_one_class_and_the_summary_gives_their_share():
    def record(seed, per_class, **options):
        config = experiments.table2_choice_configs("smoke", seeds=(seed,), combinations=[options])[0]
        acc = sum(per_class) / len(per_class)
        return {"run_id": config.run_id(), "seed": seed, "seconds": 1.0, "git": {}, "config": config.to_dict(),
                "metrics": {"last": {"acc_all": acc}, "best": {"acc_all": acc, "epoch": 1}, "per_class_acc": per_class},
                "history": [{"train_loss": 1.0}], "environment": {"device_name": "cpu"}, "data": {"source": "x"}}
    records = [record(0, [100.0, 0.0, 0.0, 0.0], pooling="flatten"), record(1, [90.0, 50.0, 10.0, 0.0], pooling="flatten"),
               record(0, [90.0, 50.0, 10.0, 0.0]), record(1, [95.0, 60.0, 0.0, 0.0])]
    frame = tables.choice_frame(records)
    assert frame["predicts_one_class"].sum() == 1
    summary = tables.choice_summary(frame, metrics=("acc_all", "predicts_one_class"))
    flatten = summary[summary["pooling"] == "flatten"].iloc[0]
    assert flatten["predicts_one_class"] == 0.5 and flatten["acc_all"] == pytest.approx((25.0 + 37.5) / 2)
    effects = tables.choice_effects(summary, metrics=("acc_all", "predicts_one_class")).set_index("choice")
    assert effects.loc["pooling", "predicts_one_class"] == 0.5  # 1 of 2 seeds under flatten, 0 of 2 under ours
    assert effects.loc["pooling", "acc_all"] == pytest.approx(31.25 - (37.5 + 38.75) / 2)
    assert effects.loc["pooling", ["combinations_changed", "combinations_kept"]].tolist() == [1, 1]
    assert math.isnan(effects.loc["batchnorm", "acc_all"])  # no combination changes it
