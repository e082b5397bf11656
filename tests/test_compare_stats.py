"""The statistics of ``actplug compare`` on constructed inputs whose answers are worked out by hand
(or by an independent scipy call written here), including every degenerate case."""

from __future__ import annotations

import json
import math
import random

import pytest
from scipy import stats as sps

from actplug.compare import stats

METRICS = ["accuracy", "f1"]


def _record(act: str, seed: int, accuracy: float, f1: float | None = None, **extra) -> dict:
    return {
        "task": "wdbc",
        "act": act,
        "seed": seed,
        "epochs": 3,
        "seconds": 2.0,
        "metrics": {"accuracy": accuracy, "f1": accuracy if f1 is None else f1},
        "history": [],
        **extra,
    }


# --- describe --------------------------------------------------------------------------------------------


def test_describe_three_values_by_hand():
    d = stats.describe([0.9, 0.92, 0.94])
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(0.92, abs=1e-15)
    assert d["std"] == pytest.approx(0.02, abs=1e-15)  # sqrt((0.02^2 + 0 + 0.02^2) / 2)
    half = 4.302652729749464 * 0.02 / math.sqrt(3)  # t(0.975, df=2) = 4.3027 in any t table
    assert d["ci_low"] == pytest.approx(0.92 - half, abs=1e-12)
    assert d["ci_high"] == pytest.approx(0.92 + half, abs=1e-12)
    low, high = sps.t.interval(0.95, 2, loc=0.92, scale=0.02 / math.sqrt(3))
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert (d["min"], d["max"]) == (0.9, 0.94)


def test_describe_other_confidence_uses_its_quantile():
    d = stats.describe([1.0, 2.0, 3.0, 4.0], confidence=0.9)
    std = math.sqrt(5 / 3)  # squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over n - 1 = 3
    half = sps.t.ppf(0.95, 3) * std / 2
    assert d["std"] == pytest.approx(std)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((2.5 - half, 2.5 + half))


def test_describe_one_value_has_no_spread():
    d = stats.describe([0.875])
    assert d == {"n": 1, "mean": 0.875, "std": None, "ci_low": None, "ci_high": None, "min": 0.875, "max": 0.875}


def test_describe_no_value_is_all_none():
    d = stats.describe([])
    assert d["n"] == 0
    assert all(d[k] is None for k in ("mean", "std", "ci_low", "ci_high", "min", "max"))


def test_describe_equal_values_give_a_zero_width_interval():
    d = stats.describe([0.5, 0.5, 0.5])
    assert d["std"] == 0.0
    assert (d["ci_low"], d["ci_high"]) == (0.5, 0.5)


# --- paired_test -----------------------------------------------------------------------------------------


def test_paired_known_p_by_hand_and_by_scipy():
    ref = {0: 0.89, 1: 0.90, 2: 0.92, 3: 0.91}
    act = {0: 0.90, 1: 0.92, 2: 0.95, 3: 0.91}  # differences 0.01, 0.02, 0.03, 0
    c = stats.paired_test(act, ref)
    mean, std = 0.015, math.sqrt(0.0005 / 3)
    t = mean / (std / 2)  # 2.3238
    assert c["n_pairs"] == 4 and c["seeds"] == [0, 1, 2, 3] and c["unpaired_seeds"] == []
    assert c["mean_diff"] == pytest.approx(mean, abs=1e-12)
    assert c["std_diff"] == pytest.approx(std, abs=1e-12)
    assert c["t"] == pytest.approx(t, rel=1e-9)
    assert c["p_t"] == pytest.approx(2 * sps.t.sf(t, 3), rel=1e-9)
    assert c["p_t"] == pytest.approx(sps.ttest_1samp([0.01, 0.02, 0.03, 0.0], 0.0).pvalue, rel=1e-9)
    assert 0.10 < c["p_t"] < 0.11
    half = sps.t.ppf(0.975, 3) * std / 2
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((mean - half, mean + half), abs=1e-12)
    # Wilcoxon drops the zero difference: three positive ones, exact two-sided p = 2 / 2^3.
    assert c["p_wilcoxon"] == pytest.approx(0.25)
    assert c["degenerate"] is None


def test_paired_negative_difference_is_activation_minus_reference():
    c = stats.paired_test({0: 0.80, 1: 0.85, 2: 0.83}, {0: 0.90, 1: 0.91, 2: 0.95})
    assert c["mean_diff"] == pytest.approx(-0.28 / 3)  # (-0.10 - 0.06 - 0.12) / 3
    assert c["t"] < 0


def test_paired_constant_nonzero_differences_give_p_zero_and_no_infinity():
    ref = {0: 0.90, 1: 0.91, 2: 0.93}
    act = {0: 0.91, 1: 0.92, 2: 0.94}  # +0.01 each, up to float noise
    c = stats.paired_test(act, ref)
    assert c["degenerate"] == "constant"
    assert c["p_t"] == 0.0
    assert c["t"] is None  # infinite: JSON has no infinity
    assert c["std_diff"] == 0.0
    assert c["mean_diff"] == pytest.approx(0.01, abs=1e-12)
    assert c["ci_low"] == c["ci_high"] == c["mean_diff"]
    assert c["p_wilcoxon"] == pytest.approx(0.25)  # 3 positive differences: 2 / 2^3
    json.dumps(c, allow_nan=False)


def test_paired_all_zero_differences_give_p_one():
    ref = {0: 0.90, 1: 0.91, 2: 0.93}
    c = stats.paired_test(dict(ref), ref)
    assert c["degenerate"] == "zero"
    assert (c["mean_diff"], c["std_diff"], c["ci_low"], c["ci_high"], c["t"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert c["p_t"] == 1.0 and c["p_wilcoxon"] == 1.0
    json.dumps(c, allow_nan=False)


def test_paired_float_noise_counts_as_zero():
    ref = {0: 0.3, 1: 0.6}
    act = {0: 0.1 + 0.2, 1: 0.6}  # 0.30000000000000004 vs 0.3
    c = stats.paired_test(act, ref)
    assert c["degenerate"] == "zero" and c["p_t"] == 1.0


def test_paired_one_pair_gives_the_difference_only():
    c = stats.paired_test({0: 0.93}, {0: 0.90})
    assert c["n_pairs"] == 1
    assert c["mean_diff"] == pytest.approx(0.03)
    assert all(c[k] is None for k in ("std_diff", "ci_low", "ci_high", "t", "p_t", "p_wilcoxon"))


def test_paired_uses_only_the_seeds_both_have():
    ref = {0: 0.90, 1: 0.80, 3: 0.10}
    act = {0: 0.95, 1: 0.82, 2: 0.99}
    c = stats.paired_test(act, ref)
    assert c["n_pairs"] == 2 and c["seeds"] == [0, 1] and c["unpaired_seeds"] == [2, 3]
    assert c["mean_diff"] == pytest.approx(0.035)  # (0.05 + 0.02) / 2
    assert c["p_t"] == pytest.approx(sps.ttest_rel([0.95, 0.82], [0.90, 0.80]).pvalue)


def test_paired_no_common_seed_is_all_none():
    c = stats.paired_test({0: 0.9}, {1: 0.8})
    assert c["n_pairs"] == 0 and c["unpaired_seeds"] == [0, 1]
    assert all(c[k] is None for k in ("mean_diff", "std_diff", "ci_low", "ci_high", "t", "p_t", "p_wilcoxon"))


# --- best_of ---------------------------------------------------------------------------------------------


def test_best_lists_every_tied_activation_in_the_given_order():
    assert stats.best_of({"relu": 0.8, "smu": 0.9, "ash": 0.9}) == ["smu", "ash"]
    assert stats.best_of({"relu": 0.9, "smu": 0.9 - 1e-14}) == ["relu", "smu"]  # float noise is a tie
    assert stats.best_of({"relu": 0.9, "smu": 0.9 - 1e-6}) == ["relu"]
    assert stats.best_of({"relu": None, "smu": 0.1}) == ["smu"]
    assert stats.best_of({"relu": None}) == []


# --- summarize -------------------------------------------------------------------------------------------


REF = [0.80, 0.81, 0.82, 0.83, 0.84]
UP = [0.05, 0.06, 0.05, 0.07, 0.06]
NOISE = [0.01, -0.01, 0.02, -0.02, 0.0]


def _records() -> list[dict]:
    records = []
    for seed, (r, u, z) in enumerate(zip(REF, UP, NOISE, strict=True)):
        records.append(_record("relu", seed, r, f1=0.5))
        records.append(_record("up", seed, r + u, f1=0.5))
        records.append(_record("down", seed, r - u, f1=0.5))
        records.append(_record("same", seed, r + z, f1=0.5))
    random.Random(1).shuffle(records)  # the order of the records must not matter
    return records


def test_summarize_shape_order_and_json():
    s = stats.summarize(_records(), ["relu", "same", "up", "down"], METRICS, "accuracy")
    assert list(s) == [
        "task",
        "reference",
        "acts",
        "metrics",
        "main_metric",
        "alpha",
        "confidence",
        "seeds",
        "epochs",
        "runs",
        "seconds",
        "per_act",
        "paired",
        "significant",
        "best",
        "n_comparisons",
    ]
    assert s["task"] == "wdbc" and s["reference"] == "relu"
    assert s["acts"] == ["relu", "same", "up", "down"]
    assert list(s["per_act"]) == s["acts"] and list(s["per_act"]["up"]) == METRICS
    assert list(s["paired"]) == ["same", "up", "down"]  # not the reference
    assert s["seeds"] == [0, 1, 2, 3, 4] and s["epochs"] == [3]
    assert s["runs"] == {"relu": 5, "same": 5, "up": 5, "down": 5}
    assert s["seconds"]["relu"] == 2.0
    assert s["per_act"]["relu"]["accuracy"]["mean"] == pytest.approx(0.82)
    assert s["per_act"]["relu"]["accuracy"]["std"] == pytest.approx(math.sqrt(0.001 / 4))
    assert json.loads(json.dumps(s, allow_nan=False)) == s  # plain, JSON-ready types
    assert s == stats.summarize(_records(), ["relu", "same", "up", "down"], METRICS, "accuracy")


def test_summarize_significance_and_best():
    s = stats.summarize(_records(), ["relu", "same", "up", "down"], METRICS, "accuracy")
    p_up = sps.ttest_1samp(UP, 0.0).pvalue  # independent route to the same paired t-test
    assert s["paired"]["up"]["accuracy"]["p_t"] == pytest.approx(p_up, rel=1e-6)
    assert s["paired"]["up"]["accuracy"]["p_t"] < 0.001
    assert s["paired"]["same"]["accuracy"]["p_t"] == pytest.approx(1.0)  # mean difference 0 exactly
    assert s["paired"]["up"]["accuracy"]["p_wilcoxon"] == pytest.approx(0.0625)  # 5 positive: 2 / 2^5
    assert s["significant"]["accuracy"] == {"better": ["up"], "worse": ["down"], "tested": 3}
    assert s["best"]["accuracy"] == {"acts": ["up"], "mean": pytest.approx(0.878), "reference_is_best": False,
                                     "significant": ["up"]}  # fmt: skip
    # f1 is 0.5 everywhere: all tied, the reference among them, nothing significant, p = 1 without NaN.
    assert s["significant"]["f1"] == {"better": [], "worse": [], "tested": 3}
    assert s["best"]["f1"]["acts"] == ["relu", "same", "up", "down"]
    assert s["best"]["f1"]["reference_is_best"] is True and s["best"]["f1"]["significant"] == []
    assert all(s["paired"][a]["f1"]["p_t"] == 1.0 for a in ("same", "up", "down"))
    assert s["n_comparisons"] == 6


def test_summarize_nothing_significant_when_only_noise():
    s = stats.summarize(_records(), ["relu", "same"], METRICS, "accuracy")
    assert s["significant"]["accuracy"]["better"] == [] and s["significant"]["accuracy"]["worse"] == []
    assert s["paired"]["same"]["accuracy"]["p_t"] == pytest.approx(1.0)
    assert s["best"]["accuracy"]["significant"] == []


def test_summarize_missing_seed_and_single_run():
    records = [_record("relu", s, v) for s, v in enumerate([0.9, 0.92, 0.94])]
    records += [_record("smu", 0, 0.95), _record("smu", 1, 0.93)]  # no seed 2
    records += [_record("ash", 1, 0.99)]  # one run
    s = stats.summarize(records, ["relu", "smu", "ash"], ["accuracy"], "accuracy")
    assert s["runs"] == {"relu": 3, "smu": 2, "ash": 1}
    c = s["paired"]["smu"]["accuracy"]
    assert c["seeds"] == [0, 1] and c["unpaired_seeds"] == [2]
    assert c["mean_diff"] == pytest.approx(0.03)  # (0.05 + 0.01) / 2
    assert s["per_act"]["ash"]["accuracy"]["std"] is None
    assert s["paired"]["ash"]["accuracy"]["p_t"] is None
    assert s["significant"]["accuracy"]["tested"] == 1 and s["n_comparisons"] == 1
    assert s["best"]["accuracy"]["acts"] == ["ash"] and s["best"]["accuracy"]["significant"] == []


def test_summarize_ignores_activations_not_listed():
    records = [*_records(), _record("gelu", 0, 0.99)]
    s = stats.summarize(records, ["relu", "up"], METRICS, "accuracy")
    assert list(s["per_act"]) == ["relu", "up"]


def test_summarize_only_the_reference():
    s = stats.summarize(_records(), ["relu"], METRICS, "accuracy")
    assert s["paired"] == {} and s["n_comparisons"] == 0
    assert s["best"]["accuracy"]["reference_is_best"] is True


def test_summarize_activation_without_runs():
    s = stats.summarize(_records(), ["relu", "mish"], METRICS, "accuracy")
    assert s["runs"]["mish"] == 0 and s["per_act"]["mish"]["accuracy"]["mean"] is None
    assert s["paired"]["mish"]["accuracy"]["n_pairs"] == 0 and s["seconds"]["mish"] is None
    assert s["best"]["accuracy"]["acts"] == ["relu"]


@pytest.mark.parametrize(
    ("records", "acts", "metrics", "main", "match"),
    [
        ([_record("relu", 0, 0.9), _record("relu", 0, 0.8)], ["relu"], ["accuracy"], "accuracy", "two runs"),
        ([_record("relu", 0, float("nan"))], ["relu"], ["accuracy"], "accuracy", "finite"),
        ([_record("relu", 0, 0.9)], ["relu"], ["miou"], "miou", "'miou'"),
        ([], [], ["accuracy"], "accuracy", "no activations"),
        ([], ["relu", "relu"], ["accuracy"], "accuracy", "twice"),
        ([], ["relu"], ["accuracy"], "map", "main metric"),
        ([_record("relu", 0, 0.9), {**_record("smu", 0, 0.9), "task": "digits"}], ["relu", "smu"], ["accuracy"],
         "accuracy", "several tasks"),
    ],
)  # fmt: skip
def test_summarize_rejects_bad_input(records, acts, metrics, main, match):
    with pytest.raises(ValueError, match=match):
        stats.summarize(records, acts, metrics, main)
