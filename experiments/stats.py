"""Statistics over seeds: means, 95% intervals, chance scores, the at-chance and bolding rules.

The rules the report and the ordering checks (``experiments/checks.py``) apply:

- **Interval.** A (task, family) cell's headline metric over its seeds is reported as the mean and a
  95% Student-t interval, ``mean ± t(0.975, n − 1) · s / √n`` with ``s`` the sample standard
  deviation of the seed values. With one seed there is no interval.
- **Chance.** Every task's chance score (:data:`CHANCE`, one entry per task, each saying how it is
  derived) is what a predictor that ignores the inputs' content scores in the task's metric.
- **At chance.** A cell is at chance when its interval does not lie entirely on the better side of
  the chance score (the interval contains it, or is worse). With one seed (no interval), when its
  value is not better than chance by more than :data:`SINGLE_SEED_TOLERANCE` (relative).
- **Bold.** The best family of a row is bold only when it is not at chance, it and the runner-up
  both have intervals (two seeds or more), and the two intervals do not overlap. Lower-is-better
  metrics (MSE, cross-entropy, bits per character) are handled: "better" is smaller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from recurrax.tasks import copy_memory, induction_heads, listops, selective_copy, state_tracking

LOWER_IS_BETTER = ("mse", "cross_entropy", "bits_per_char", "loss")
SINGLE_SEED_TOLERANCE = 0.05
"""With one seed, a value counts as at chance unless it beats chance by more than 5% of it."""

# Two-sided 95% quantiles t(0.975, df) of Student's t distribution, df = 1..30.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054


def metric_key(metric: str) -> str:
    """The key of a task's headline metric in the metrics dicts (``cross_entropy`` is ``loss``)."""
    return "loss" if metric == "cross_entropy" else metric


def headline(metrics: Mapping[str, float], metric: str) -> float | None:
    value = metrics.get(metric_key(metric))
    return None if value is None else float(value)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def t_quantile_975(df: int) -> float:
    """``t(0.975, df)``: exact to 4 decimals for ``df ≤ 30``, Cornish–Fisher expansion above."""
    if df < 1:
        raise ValueError(f"df must be >= 1; got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """``(mean, (low, high))``: the mean and 95% Student-t interval; ``(mean, None)`` for one value."""
    array = np.asarray(values, np.float64)
    if array.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(array.mean())
    if array.size == 1:
        return mean, None
    half = t_quantile_975(array.size - 1) * float(array.std(ddof=1)) / math.sqrt(array.size)
    return mean, (mean - half, mean + half)


# ------------------------------------------------------------------------------------------------
# Chance scores

ChanceFn = Callable[[Mapping[str, Any], Any], float]

CHANCE: dict[str, tuple[str, ChanceFn]] = {
    # adding: targets are u1 + u2 with u ~ U[0, 1] (recurrax.tasks.adding); predicting the mean
    # target 1 scores MSE Var(u1 + u2) = 2 · 1/12 = 1/6 ≈ 0.167.
    "adding": ("mse", lambda config, spec: 1 / 6),
    # copy_memory: blank for the first T + 10 steps (cost 0), uniform over the 8 symbols for the 10
    # recall steps (ln 8 each): mean cross-entropy 10 · ln 8 / (T + 20) per step.
    "copy_memory": (
        "cross_entropy",
        lambda config, spec: copy_memory.baseline_cross_entropy(int(config["delay"])),
    ),
    # selective_copy: a uniform guess among the 14 data values at each scored position.
    "selective_copy": ("accuracy", lambda config, spec: 1 / selective_copy.NUM_DATA),
    # induction_heads: a uniform guess among the 15 ordinary tokens at the last position.
    "induction_heads": ("accuracy", lambda config, spec: 1 / induction_heads.NUM_VALUES),
    # mqar: values are drawn uniformly from the V − V//2 value ids; a uniform guess at each query.
    "mqar": ("accuracy", lambda config, spec: 1 / (spec.vocab_size - spec.vocab_size // 2)),
    # listops: the majority class (the value 0), measured on the sampler: 15.2% at the small
    # lengths, 16.2% at the full lengths (max_length > 500); classes are not balanced.
    "listops": (
        "accuracy",
        lambda config, spec: (
            listops.MAJORITY_SHARE_FULL
            if int(config["max_length"]) > 500
            else listops.MAJORITY_SHARE_SMALL
        ),
    ),
    # parity: two balanced classes (the parity of uniform random bits): 1/2.
    "parity": ("accuracy", lambda config, spec: 0.5),
    # s5_word: the running product is uniform over the 120 permutations after the first step,
    # but the first product is the first input, which a model that tracks nothing copies
    # (state_tracking.s5_first_step_baseline; 0.0150 on lengths 41..256).
    "s5_word": ("accuracy", lambda config, spec: state_tracking.s5_first_step_baseline(config)),
    # mnist1d: 10 balanced classes: 1/10.
    "mnist1d": ("accuracy", lambda config, spec: 0.1),
    # seq_fashion_mnist: 10 balanced classes (sequential or permuted pixels): 1/10.
    "seq_fashion_mnist": ("accuracy", lambda config, spec: 0.1),
    # char_lm: the unigram predictor: the entropy in bits of the training split's character
    # frequencies (measured by the task on its data: spec.baseline).
    "char_lm": ("bits_per_char", lambda config, spec: float(spec.baseline)),
}
"""Chance score per task: ``task -> (metric, fn(task_config, task_spec) -> score)``."""


def chance(
    task: str, metric: str, task_config: Mapping[str, Any], spec: Any = None
) -> float | None:
    """The chance score of ``task`` in ``metric`` (``None`` if the table has none for it)."""
    entry = CHANCE.get(task)
    if entry is None or entry[0] != metric:
        return None if spec is None or spec.metric != metric else spec.baseline
    return float(entry[1](task_config, spec))


def is_at_chance(values: Sequence[float], chance_score: float | None, metric: str) -> bool | None:
    """Whether a cell with these seed values is at chance (``None`` when chance is unknown)."""
    if chance_score is None or not values:
        return None
    mean, interval = mean_interval(values)
    lower = lower_is_better(metric)
    if interval is None:
        margin = SINGLE_SEED_TOLERANCE * abs(chance_score)
        return mean >= chance_score - margin if lower else mean <= chance_score + margin
    low, high = interval
    return high >= chance_score if lower else low <= chance_score


# ------------------------------------------------------------------------------------------------
# Summaries over seeds


class Summary(NamedTuple):
    """One (variant, family) cell of the table: the headline metric over seeds and its context.

    ``values`` are the seed values (the mean, interval and at-chance flag come from them; a
    hand-made summary with only ``mean`` counts as one seed). ``baseline`` is the chance score.
    ``by_length`` is the mean headline metric at each test length of ``results["test_by_length"]``
    (induction heads); ``length_eval`` the mean accuracy at the fixed lengths of
    ``recurrax.run.evaluate_at_lengths`` (parity, S5). ``settings`` are the run's settings from
    its stored record (:func:`run_settings`).
    """

    mean: float
    std: float = 0.0
    n: int = 1
    baseline: float | None = None
    metric: str = "accuracy"
    param_count: int | None = None
    steps: int | None = None
    seconds: float | None = None
    by_length: Mapping[int, float] = {}
    length_eval: Mapping[int, float] = {}
    state_size: int | None = None
    task_config: Mapping[str, Any] = {}
    values: tuple[float, ...] = ()
    settings: Mapping[str, Any] = {}

    @property
    def seed_values(self) -> tuple[float, ...]:
        return self.values or (self.mean,)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Student-t interval over seeds (``None`` with one seed)."""
        return mean_interval(self.seed_values)[1]

    @property
    def at_chance(self) -> bool:
        """At chance by the rule of the module docstring (``False`` when chance is unknown)."""
        return bool(is_at_chance(self.seed_values, self.baseline, self.metric))


Summaries = Mapping[str, Mapping[str, Summary]]


def summary(mean: float | None = None, *, values: Sequence[float] = (), **fields: Any) -> Summary:
    """A hand-made :class:`Summary` (for tests and for checking the checks): either ``mean`` (one
    seed) or the seed ``values``."""
    if values:
        array = np.asarray(values, np.float64)
        fields.setdefault("std", float(array.std(ddof=1)) if array.size > 1 else 0.0)
        return Summary(
            mean=float(array.mean()),
            n=int(array.size),
            values=tuple(float(v) for v in values),
            **fields,
        )
    if mean is None:
        raise ValueError("summary needs mean or values")
    return Summary(mean=float(mean), **fields)


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def bold_family(row: Mapping[str, Summary]) -> str | None:
    """The family to bold in a row: the best one, when it is not at chance and its interval does
    not overlap the runner-up's (both need an interval); ``None`` otherwise."""
    if len(row) < 2:
        return None
    metric = next(iter(row.values())).metric
    order = sorted(row, key=lambda f: row[f].mean, reverse=not lower_is_better(metric))
    best, runner_up = row[order[0]], row[order[1]]
    if best.at_chance or best.interval is None or runner_up.interval is None:
        return None
    if best.mean == runner_up.mean or overlaps(best.interval, runner_up.interval):
        return None
    return order[0]


def all_at_chance(cells: Sequence[Summary]) -> bool:
    """True when there is at least one cell and every one is at chance."""
    return bool(cells) and all(cell.at_chance for cell in cells)


def _mean_by_key(dicts: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    keys = sorted({int(k) for d in dicts for k in d}, key=int)
    out = {}
    for k in keys:
        values = [headline(d[str(k)], metric) for d in dicts if str(k) in d]
        values = [v for v in values if v is not None]
        if values:
            out[k] = float(np.mean(values))
    return out


def summarize(outcomes: Sequence[Any]) -> dict[str, dict[str, Summary]]:
    """``{variant name: {family: Summary}}`` over the runs that have results (the outcomes of
    ``experiments.runner.execute``)."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for outcome in outcomes:
        if outcome.results is not None and outcome.value is not None:
            groups.setdefault((outcome.spec.variant.name, outcome.spec.family), []).append(outcome)
    table: dict[str, dict[str, Summary]] = {}
    for (variant, family), group in groups.items():
        metric = group[0].metric
        values = [o.value for o in group]
        array = np.asarray(values, np.float64)
        settings = dict(group[0].settings)
        settings.pop("seed", None)
        settings["seeds"] = tuple(sorted(o.settings.get("seed", o.spec.seed) for o in group))
        for key in ("steps", "evaluated_step"):  # per seed: early stopping makes them differ
            settings[key] = tuple(o.settings.get(key) for o in group)
        stored_task = (group[0].results.get("config") or {}).get("task")
        table.setdefault(variant, {})[family] = Summary(
            mean=float(array.mean()),
            std=float(array.std(ddof=1)) if array.size > 1 else 0.0,
            n=len(group),
            baseline=group[0].baseline,
            metric=metric,
            param_count=group[0].results["param_count"],
            steps=group[0].results["steps"],
            seconds=float(np.mean([o.wall_seconds for o in group])),
            by_length=_mean_by_key([o.results.get("test_by_length", {}) for o in group], metric),
            length_eval=_mean_by_key(
                [o.length_eval for o in group if o.length_eval is not None], "accuracy"
            ),
            state_size=group[0].state_size,
            task_config=stored_task or group[0].spec.config().task.to_dict(),
            values=tuple(float(v) for v in values),
            settings=settings,
        )
    return table
