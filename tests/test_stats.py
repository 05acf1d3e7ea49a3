"""Statistics of the comparison (experiments/stats.py) and the at-chance rule of the checks, on
synthetic numbers."""

import math

import pytest
from experiments import checks, stats, suites
from experiments.stats import (
    CHANCE,
    bold_family,
    chance,
    is_at_chance,
    mean_interval,
    summary,
    t_quantile_975,
)

import recurrax.tasks as tasks
from recurrax.models import FAMILIES
from recurrax.tasks.data_files import is_available


def test_interval_is_the_student_t_interval_over_seeds():
    mean, (low, high) = mean_interval([1.0, 2.0, 3.0])
    half = 4.3027 * 1.0 / math.sqrt(3)  # t(0.975, 2) · s / √n with s = 1
    assert mean == 2.0
    assert low == pytest.approx(2.0 - half) and high == pytest.approx(2.0 + half)
    assert mean_interval([0.5]) == (0.5, None)  # one seed: no interval
    assert mean_interval([0.3, 0.3]) == (0.3, (0.3, 0.3))


def test_t_quantiles_match_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 10, 29, 30, 31, 50, 200):
        assert t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=2e-4), df


def test_at_chance_rule():
    # Higher is better (accuracy, chance 0.5): the interval must lie entirely above chance.
    assert is_at_chance([0.45, 0.55, 0.5], 0.5, "accuracy")  # contains chance
    assert is_at_chance([0.30, 0.35, 0.32], 0.5, "accuracy")  # below chance: not better
    assert not is_at_chance([0.90, 0.95, 0.92], 0.5, "accuracy")
    assert is_at_chance([0.52, 0.99], 0.5, "accuracy")  # wide interval with two seeds
    # Lower is better (MSE, chance 1/6): the interval must lie entirely below chance.
    assert is_at_chance([0.160, 0.170, 0.168], 1 / 6, "mse")
    assert not is_at_chance([0.010, 0.012, 0.011], 1 / 6, "mse")
    assert is_at_chance([0.30, 0.31], 1 / 6, "mse")  # worse than chance
    # One seed: within 5% of chance (or worse) is at chance.
    assert is_at_chance([0.52], 0.5, "accuracy") and not is_at_chance([0.6], 0.5, "accuracy")
    assert is_at_chance([0.16], 1 / 6, "mse") and not is_at_chance([0.15], 1 / 6, "mse")
    assert is_at_chance([0.9], None, "accuracy") is None  # unknown chance
    cell = summary(values=[0.45, 0.55, 0.5], baseline=0.5, metric="accuracy")
    assert cell.at_chance and cell.n == 3 and cell.interval is not None


def _cells(metric, baseline, **values):
    return {f: summary(values=v, baseline=baseline, metric=metric) for f, v in values.items()}


def test_bold_only_without_overlap_and_never_at_chance():
    clear = _cells("accuracy", 0.1, lstm=[0.90, 0.91, 0.92], gru=[0.50, 0.52, 0.51])
    assert bold_family(clear) == "lstm"
    overlapping = _cells("accuracy", 0.1, lstm=[0.90, 0.70, 0.92], gru=[0.80, 0.85, 0.83])
    assert bold_family(overlapping) is None
    # Lower is better: the smallest MSE is the best.
    mse = _cells("mse", 1 / 6, lstm=[0.001, 0.002, 0.0015], rnn=[0.16, 0.17, 0.165])
    assert bold_family(mse) == "lstm"
    # The best is at chance: never bold, even when it is clear of the runner-up.
    at_chance = _cells("accuracy", 0.5, lstm=[0.50, 0.51, 0.49], gru=[0.20, 0.21, 0.22])
    assert bold_family(at_chance) is None
    # One seed: no interval, so no bold.
    one_seed = _cells("accuracy", 0.1, lstm=[0.95], gru=[0.2])
    assert bold_family(one_seed) is None
    assert bold_family(_cells("accuracy", 0.1, lstm=[0.9, 0.91])) is None  # no runner-up


def _row(metric, baseline, **values):
    return {f: summary(v, baseline=baseline, metric=metric) for f, v in values.items()}


ALL_AT_CHANCE = [
    # The tanh RNN "stays at the baseline", but so does every family it is compared with.
    (
        checks.check_adding_rnn,
        {"adding-T200": _row("mse", 1 / 6, rnn=0.166, lstm=0.167, gru=0.166, lru=0.165, s5=0.167)},
    ),
    # s5 ≥ lstm holds, at chance (0.1) on both.
    (
        checks.check_fashion,
        {
            "seq_fashion_mnist": _row("accuracy", 0.1, s5=0.1, lstm=0.1),
            "seq_fashion_mnist-permuted": _row("accuracy", 0.1, s5=0.101, lstm=0.1),
        },
    ),
    # mamba, mingru ≤ 0.6 holds, and lstm, gru are at chance too.
    (
        checks.check_parity_positive,
        {"parity": _row("accuracy", 0.5, lstm=0.5, gru=0.51, mamba=0.5, mingru=0.49)},
    ),
    # mingru, minlstm < mamba holds, all of them worse than the unigram baseline.
    (
        checks.check_char_lm,
        {"char_lm": _row("bits_per_char", 2.0, mingru=2.2, minlstm=2.25, mamba=2.3)},
    ),
]


@pytest.mark.parametrize(
    ("fn", "summaries"), ALL_AT_CHANCE, ids=lambda x: getattr(x, "__name__", "")
)
def test_a_check_fails_when_every_compared_family_is_at_chance(fn, summaries):
    assert fn(summaries).status == "yes"  # the bare rule holds ...
    (check,) = [c for c in checks.CHECKS if c.fn is fn]
    result = check(summaries)  # ... but the check, as run, fails
    assert result.status == "no"
    assert "at chance" in result.evidence
    assert "at chance" in check.full_rule


def test_every_check_states_its_rule_and_families():
    for check in checks.CHECKS:
        assert check.rule and check.families
        assert set(check.families) <= set(FAMILIES)


@pytest.mark.parametrize("task", sorted(CHANCE))
def test_chance_table_agrees_with_each_task_definition(task):
    task_def = tasks.get(task)
    for config in (task_def.small_config(), task_def.full_config()):
        if not is_available(task_def, config):
            continue  # a real-data task without its data here
        spec = task_def.spec(config)
        metric, _ = CHANCE[task]
        assert metric == spec.metric
        assert chance(task, metric, config.to_dict(), spec) == pytest.approx(spec.baseline)


def test_chance_table_covers_every_task_of_the_suites():
    # (tasks.names() may also hold tasks other tests register in this process)
    assert set(CHANCE) == {v.task for v in suites.SMALL}


def test_adding_chance_is_the_variance_of_the_target():
    # Predicting the mean target 1: MSE Var(u1 + u2) = 2/12 for u ~ U[0, 1].
    assert chance("adding", "mse", {"length": 100}) == pytest.approx(2 / 12)
    assert stats.lower_is_better("mse") and not stats.lower_is_better("accuracy")
