"""Runs a suite of (task, family, seed) trainings and writes a results table, a CSV and plots.

    python experiments/compare.py --suite=quick              # ~10 min on a 2-core CPU
    python experiments/compare.py --suite=small              # every task, ~90 min; RESULTS.md
    python experiments/compare.py --suite=full               # published settings, accelerator

The suites are defined in ``experiments/suites.py``. Each run trains with
``recurrax.run.train_and_evaluate`` in ``<workdir>/<task-variant>/<family>/seed<k>/``, one after
another in this process. A run whose ``results.json`` exists is reused, so a comparison that was
interrupted continues where it stopped (a half-finished run resumes from its checkpoints). A
changed suite definition therefore needs a fresh ``--workdir``. Runs that differ only in their seed
share compiled programs through JAX's persistent compilation cache (``<workdir>/jax-cache``).
One line per finished run is printed (task, family, seed, metric, steps, seconds, elapsed total).

Real-data tasks (mnist1d, seq_fashion_mnist, char_lm) run only when their data is found; the
report lists the skipped ones with the reason. The report (markdown) holds the machine and
command, the task × family table of the headline metric (mean ± std over seeds) with baselines,
parameter counts, steps and wall times, one row per expected ordering (published or predicted by theory; `CHECKS`) saying whether it
was reproduced and by which numbers, and links to the plots: learning curves, accuracy against
test length (induction heads, parity, S5), MQAR accuracy against state size, and the gradient norm
``‖∂L/∂h_t‖`` against the distance from the loss for freshly initialised cells. A CSV beside it
(``--csv``) holds every run, and the PNG plots go to ``--plots_dir`` (default ``<report dir>/plots``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for experiments.*

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from experiments import suites
from experiments.suites import CLASSIC, SELECTIVE, TIME_INVARIANT, RunSpec

import recurrax.tasks as tasks
from recurrax import cells as cell_lib
from recurrax.checkpoint import Checkpoints
from recurrax.diagnostics import state_gradient_norms
from recurrax.metrics import read_jsonl
from recurrax.models import FAMILIES, ModelConfig, sequence_model
from recurrax.run import Experiment, evaluate, train_and_evaluate
from recurrax.tasks.data_files import MissingDataError, is_available
from recurrax.train import init_state, make_eval_step

FLAGS = flags.FLAGS
RESULTS_FILE = "results.json"
RUN_INFO_FILE = "compare.json"  # wall seconds of the invocation that finished the run
LENGTH_FILE = "length_eval.json"  # accuracy at fixed lengths (parity, S5)
LOWER_IS_BETTER = ("mse", "cross_entropy", "bits_per_char", "loss")


def _print(line: str) -> None:
    print(line, flush=True)


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that importing this module
    in tests never clashes with other entry points' flags)."""
    flags.DEFINE_enum("suite", "quick", suites.SUITE_NAMES, "which suite of experiments/suites.py")
    flags.DEFINE_string("workdir", None, "runs go here; default workdirs/compare-<suite>")
    flags.DEFINE_list("families", list(FAMILIES), "model families to run")
    flags.DEFINE_list("tasks", None, "task or variant names to run; default: the suite's")
    flags.DEFINE_list("seeds", None, "seeds to run (e.g. 0,1,2); default: each variant's")
    flags.DEFINE_string(
        "report",
        None,
        "markdown report; default RESULTS.md (small), workdirs/compare-quick/RESULTS.md (quick), "
        "RESULTS-full.md (full)",
    )
    flags.DEFINE_string("csv", None, "CSV of every run; default: the report's path with .csv")
    flags.DEFINE_string("plots_dir", None, "PNG plots; default <report dir>/plots")
    flags.DEFINE_integer(
        "num_steps",
        None,
        "override every run's num_steps (a smoke test of a suite); the default workdir then "
        "gets a -steps<N> suffix so that real results are never mixed with it",
    )
    flags.DEFINE_string(
        "compilation_cache",
        None,
        "JAX persistent compilation cache (runs that differ only in the seed compile once); "
        "default <workdir>/jax-cache, 'none' to turn it off",
    )
    flags.DEFINE_bool("dry_run", False, "list the runs and exit")


# ------------------------------------------------------------------------------------------------
# Running the suite


@dataclasses.dataclass
class Outcome:
    """What happened to one run of the suite.

    ``status`` is ``"trained"`` (trained, or resumed and finished, by this invocation),
    ``"reused"`` (its results.json was already there), ``"skipped"`` (its data are missing:
    ``reason``) or ``"failed"`` (an exception: ``reason``).
    """

    spec: RunSpec
    rundir: Path
    status: str
    results: dict[str, Any] | None = None
    wall_seconds: float | None = None
    reason: str | None = None
    length_eval: dict[str, dict[str, float]] | None = None
    state_size: int | None = None
    metric: str | None = None
    baseline: float | None = None

    @property
    def value(self) -> float | None:
        """The headline metric on the test split."""
        if self.results is None:
            return None
        return headline(self.results["test"], self.results["metric"])


def metric_key(metric: str) -> str:
    """The key of a task's headline metric in the metrics dicts (``cross_entropy`` is ``loss``)."""
    return "loss" if metric == "cross_entropy" else metric


def headline(metrics: Mapping[str, float], metric: str) -> float | None:
    value = metrics.get(metric_key(metric))
    return None if value is None else float(value)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def missing_data_reason(config: ml_collections.ConfigDict) -> str | None:
    """``None`` when the task can make batches here, else the one-line reason (real-data tasks)."""
    task = tasks.get(config.task.name)
    if is_available(task, config.task):
        return None
    try:
        task.batch(config.task, 0, "test", 0, 1)
    except MissingDataError as error:
        return str(error)
    return "data not available"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _sharding():
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def evaluate_at_lengths(
    config: ml_collections.ConfigDict, rundir: Path, lengths: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Test metrics of the run's final parameters at each fixed length ``L``.

    Restores the latest checkpoint (the final step: ``train_and_evaluate`` saves at the last step)
    and evaluates ``config.train.test_batches`` test batches of a task config with
    ``test_min_length = test_max_length = L`` (the length fields of parity and the S5 word problem).
    """
    experiment = Experiment(config)
    checkpoints = Checkpoints(
        rundir / "checkpoints",
        keep=config.train.keep_checkpoints,
        run_spec=experiment.run_spec(),
    )
    template = init_state(experiment.model, experiment.tx, jax.random.key(config.train.seed))
    state = checkpoints.restore(checkpoints.latest_step(), template)
    eval_step = jax.jit(make_eval_step(experiment.model))
    sharding = _sharding()
    out = {}
    for length in lengths:
        task_config = ml_collections.ConfigDict(config.task.to_dict())
        task_config.test_min_length = int(length)
        task_config.test_max_length = int(length)
        out[str(int(length))] = evaluate(
            experiment,
            state.params,
            "test",
            config.train.test_batches,
            eval_step,
            sharding,
            task_config,
        )
    return out


def state_size(config: ml_collections.ConfigDict) -> int:
    """Recurrent state per example: the carries of all layers, in real numbers (a complex entry
    counts twice; Mamba's convolution window counts, as it is carried state too)."""
    task = tasks.get(config.task.name)
    spec = task.spec(config.task)
    model = sequence_model(ModelConfig(**config.model.to_dict()), spec)
    if spec.input == "tokens":
        dummy = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    else:
        dummy = jax.ShapeDtypeStruct((1, 1, spec.input_features), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0))
    _, carries = jax.eval_shape(model.apply, params, dummy)
    total = 0
    for leaf in jax.tree.leaves(carries):
        total += math.prod(leaf.shape[1:]) * (
            2 if jnp.issubdtype(leaf.dtype, jnp.complexfloating) else 1
        )
    return int(total)


def execute(
    specs: Sequence[RunSpec],
    workdir: str | os.PathLike,
    *,
    log: Callable[[str], None] = _print,
) -> list[Outcome]:
    """Runs (or reuses) every spec in order and returns what happened to each."""
    workdir = Path(workdir)
    started = time.perf_counter()
    missing: dict[str, str | None] = {}
    outcomes = []
    width = max((len(s.variant.name) for s in specs), default=10)
    for index, spec in enumerate(specs, 1):
        config = spec.config()
        rundir = workdir / spec.relpath()
        prefix = f"[{index:>{len(str(len(specs)))}}/{len(specs)}] {spec.variant.name:<{width}} {spec.family:<8} seed{spec.seed}"
        if spec.variant.name not in missing:
            missing[spec.variant.name] = missing_data_reason(config)
        reason = missing[spec.variant.name]
        if reason is not None:
            outcome = Outcome(spec, rundir, "skipped", reason=reason)
            outcomes.append(outcome)
            log(f"{prefix}  skipped: {reason}")
            continue
        task_spec = tasks.get(spec.task).spec(config.task)
        outcome = Outcome(
            spec, rundir, "trained", metric=task_spec.metric, baseline=task_spec.baseline
        )
        results_path = rundir / RESULTS_FILE
        try:
            results = _read_json(results_path) if results_path.exists() else None
            if results is not None and results.get("steps") == config.train.num_steps:
                outcome.status = "reused"
                info = rundir / RUN_INFO_FILE
                outcome.wall_seconds = (
                    _read_json(info)["wall_seconds"] if info.exists() else results["train_seconds"]
                )
                if spec.variant.length_eval:
                    outcome.length_eval = _length_eval(config, rundir, spec.variant.length_eval)
            else:
                rundir.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                results = train_and_evaluate(config, rundir, progress=False)
                if spec.variant.length_eval:
                    outcome.length_eval = _length_eval(config, rundir, spec.variant.length_eval)
                outcome.wall_seconds = time.perf_counter() - t0
                _write_json(
                    rundir / RUN_INFO_FILE,
                    {"wall_seconds": outcome.wall_seconds, "resumed_from": results["resumed_from"]},
                )
            outcome.results = results
            if spec.variant.curve is not None:
                outcome.state_size = state_size(config)
        except Exception as error:  # a failed run is reported, and the others still run
            outcome.status = "failed"
            outcome.reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
            outcomes.append(outcome)
            log(f"{prefix}  FAILED: {outcome.reason}")
            continue
        outcomes.append(outcome)
        value = outcome.value
        shown = "n/a" if value is None else f"{value:.4f}"
        log(
            f"{prefix}  {metric_key(outcome.metric)} {shown}  {results['steps']} steps  "
            f"{outcome.wall_seconds:6.1f}s{'  (reused)' if outcome.status == 'reused' else ''}"
            f"  [total {_duration(time.perf_counter() - started)}]"
        )
    return outcomes


def _length_eval(config, rundir: Path, lengths) -> dict[str, dict[str, float]]:
    """:func:`evaluate_at_lengths`, cached in the run's ``length_eval.json``."""
    path = rundir / LENGTH_FILE
    wanted = [str(int(L)) for L in lengths]
    if path.exists():
        cached = _read_json(path)
        if all(L in cached for L in wanted):
            return {L: cached[L] for L in wanted}
    values = evaluate_at_lengths(config, rundir, lengths)
    _write_json(path, values)
    return values


# ------------------------------------------------------------------------------------------------
# Summaries over seeds


class Summary(NamedTuple):
    """One (variant, family) cell of the table: the headline metric over seeds and its context.

    ``by_length`` is the mean headline metric at each test length of ``results["test_by_length"]``
    (induction heads); ``length_eval`` the mean accuracy at the fixed lengths of
    :func:`evaluate_at_lengths` (parity, S5).
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


Summaries = Mapping[str, Mapping[str, Summary]]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def _mean_by_key(dicts: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    keys = sorted({int(k) for d in dicts for k in d}, key=int)
    out = {}
    for k in keys:
        values = [headline(d[str(k)], metric) for d in dicts if str(k) in d]
        values = [v for v in values if v is not None]
        if values:
            out[k] = float(np.mean(values))
    return out


def summarize(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Summary]]:
    """``{variant name: {family: Summary}}`` over the runs that have results."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.results is not None and outcome.value is not None:
            groups.setdefault((outcome.spec.variant.name, outcome.spec.family), []).append(outcome)
    table: dict[str, dict[str, Summary]] = {}
    for (variant, family), group in groups.items():
        metric = group[0].metric
        mean, std = _mean_std([o.value for o in group])
        table.setdefault(variant, {})[family] = Summary(
            mean=mean,
            std=std,
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
            task_config=group[0].spec.config().task.to_dict(),
        )
    return table


def summary(mean: float, **fields: Any) -> Summary:
    """A hand-made :class:`Summary` (for tests and for checking the checks)."""
    return Summary(mean=float(mean), **fields)


# ------------------------------------------------------------------------------------------------
# The expected orderings (published or predicted) as checks over the summaries


class CheckResult(NamedTuple):
    status: str  # "yes" (reproduced), "no" (not reproduced), "n/a" (the runs needed are missing)
    evidence: str


class Check(NamedTuple):
    """One expected ordering: its row of the task suite, the task, the expectation and its test."""

    row: int
    task: str
    expected: str
    rule: str
    fn: Callable[[Summaries], CheckResult]

    def __call__(self, summaries: Summaries) -> CheckResult:
        return self.fn(summaries)


NA = "n/a"


def _variants_of(summaries: Summaries, task: str) -> list[str]:
    """Variant names of ``task`` (the name itself or ``task-...``), by their numeric suffix."""
    names = [v for v in summaries if v == task or v.startswith(task + "-")]

    def order(name):
        digits = "".join(c for c in name[len(task) :] if c.isdigit())
        return (int(digits) if digits else 0, name)

    return sorted(names, key=order)


def _length_of(variant: str) -> int | None:
    """``T`` of a variant named ``<task>-T<T>``."""
    tail = variant.rsplit("-", 1)[-1]
    return int(tail[1:]) if tail.startswith("T") and tail[1:].isdigit() else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if abs(value) < 0.01 and value != 0 else f"{value:.3f}"


def _means(row: Mapping[str, Summary], families: Sequence[str]) -> dict[str, float]:
    return {f: row[f].mean for f in families if f in row}


def _list(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in values.items())


def check_adding_rnn(s: Summaries) -> CheckResult:
    rows = [(v, _length_of(v)) for v in _variants_of(s, "adding")]
    rows = [(v, T) for v, T in rows if T is not None and T >= 150 and "rnn" in s[v]]
    if not rows:
        return CheckResult(NA, "no adding run with T ≥ 150 for rnn")
    values = {f"T={T}": s[v]["rnn"].mean for v, T in rows}
    ok = all(value >= 0.10 for value in values.values())
    return CheckResult("yes" if ok else "no", f"rnn MSE: {_list(values)}")


def _below(value: float, reference: float) -> bool:
    """Clearly below: under 0.8× the reference, or solved (< 0.01)."""
    return value < 0.8 * reference or value < 0.01


def _adding_beats_rnn(s: Summaries, families: Sequence[str], max_length: int | None):
    parts, ok, seen = [], True, False
    for v in _variants_of(s, "adding"):
        T = _length_of(v)
        if T is None or (max_length is not None and T > max_length) or "rnn" not in s[v]:
            continue
        values = _means(s[v], families)
        if len(values) < len(families):
            continue
        seen = True
        rnn = s[v]["rnn"].mean
        ok &= all(_below(value, rnn) for value in values.values())
        solved = [f for f, value in values.items() if value < 0.01]
        parts.append(
            f"T={T}: rnn {_fmt(rnn)} vs {_list(values)}"
            + (f" (solved: {', '.join(solved)})" if solved else "")
        )
    if not seen:
        return CheckResult(NA, f"no adding runs with rnn and {', '.join(families)}")
    return CheckResult("yes" if ok else "no", "; ".join(parts))


def check_adding_gated(s: Summaries) -> CheckResult:
    return _adding_beats_rnn(s, ("lstm", "gru"), 500)


def check_adding_linear(s: Summaries) -> CheckResult:
    return _adding_beats_rnn(s, TIME_INVARIANT, None)


def _copy_rows(s: Summaries, family: str):
    rows = []
    for v in _variants_of(s, "copy_memory"):
        if family in s[v] and s[v][family].baseline is not None:
            rows.append((v, _length_of(v), s[v][family]))
    return rows


def check_copy_lstm(s: Summaries) -> CheckResult:
    rows = _copy_rows(s, "lstm")
    if not rows:
        return CheckResult(NA, "no copy_memory run for lstm")
    cell = rows[-1][2]
    ok = cell.mean >= 0.9 * cell.baseline
    detail = "; ".join(f"T={T_}: {_fmt(c.mean)} (baseline {_fmt(c.baseline)})" for _, T_, c in rows)
    return CheckResult("yes" if ok else "no", f"lstm cross-entropy {detail}")


def check_copy_linear(s: Summaries) -> CheckResult:
    parts, ok, seen = [], True, False
    for v in _variants_of(s, "copy_memory"):
        values = _means(s[v], TIME_INVARIANT)
        if len(values) < len(TIME_INVARIANT):
            continue
        seen = True
        baseline = next(iter(s[v].values())).baseline
        ok &= all(value < 0.5 * baseline for value in values.values())
        parts.append(f"T={_length_of(v)}: {_list(values)} (baseline {_fmt(baseline)})")
    if not seen:
        return CheckResult(NA, "no copy_memory runs for lru and s5")
    return CheckResult("yes" if ok else "no", "; ".join(parts))


def _group_gap(row, high, low, margin):
    highs, lows = _means(row, high), _means(row, low)
    if not highs or not lows:
        return None
    gap = np.mean(list(highs.values())) - np.mean(list(lows.values()))
    return gap >= margin, f"{_list(highs)} vs {_list(lows)} (mean gap {gap:+.3f})"


def check_selective_copy(s: Summaries) -> CheckResult:
    for v in _variants_of(s, "selective_copy"):
        result = _group_gap(s[v], SELECTIVE, TIME_INVARIANT, 0.05)
        if result is not None:
            return CheckResult("yes" if result[0] else "no", "accuracy " + result[1])
    return CheckResult(NA, "no selective_copy runs for both groups")


def _extrapolation(s: Summaries, families: Sequence[str]):
    """Per family with length results: (acc at the train length, acc at the longest length)."""
    out = {}
    for v in _variants_of(s, "induction_heads"):
        for family in families:
            cell = s[v].get(family)
            if cell is None or not cell.by_length:
                continue
            train_length = int(cell.task_config.get("length", min(cell.by_length)))
            at_train = cell.by_length.get(train_length, cell.mean)
            longest = max(cell.by_length)
            out[family] = (at_train, cell.by_length[longest], train_length, longest)
    return out


def check_induction_selective(s: Summaries) -> CheckResult:
    rows = _extrapolation(s, SELECTIVE)
    if not rows:
        return CheckResult(NA, "no induction_heads runs of selective families")
    learned = {f: r for f, r in rows.items() if r[0] >= 0.5}
    detail = "; ".join(
        f"{f} {_fmt(a)} at L={L} → {_fmt(b)} at L={M}" for f, (a, b, L, M) in rows.items()
    )
    if not learned:
        return CheckResult("no", f"no selective family learned the task (accuracy ≥ 0.5): {detail}")
    ok = all(b >= a - 0.1 for a, b, _, _ in learned.values())
    return CheckResult("yes" if ok else "no", detail)


def check_induction_others(s: Summaries) -> CheckResult:
    rows = _extrapolation(s, [f for f in FAMILIES if f not in SELECTIVE])
    if not rows:
        return CheckResult(NA, "no induction_heads runs of non-selective families")
    learned = {f: r for f, r in rows.items() if r[0] >= 0.5}
    detail = "; ".join(
        f"{f} {_fmt(a)} at L={L} → {_fmt(b)} at L={M}" for f, (a, b, L, M) in rows.items()
    )
    if not learned:
        return CheckResult(NA, f"no non-selective family learned the task: {detail}")
    ok = all(b < a - 0.1 for a, b, _, _ in learned.values())
    return CheckResult("yes" if ok else "no", detail)


def mqar_curves(s: Summaries) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{setting: {family: [(state size, accuracy), ...]}}`` from the variants ``mqar-L*P*[-w*]``."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for v in _variants_of(s, "mqar"):
        setting = "-".join(v.split("-")[:2])
        for family, cell in s[v].items():
            if cell.state_size is not None:
                curves.setdefault(setting, {}).setdefault(family, []).append(
                    (cell.state_size, cell.mean)
                )
    for setting in curves.values():
        for family in list(setting):
            setting[family] = sorted(setting[family])
            if len(setting[family]) < 2:
                del setting[family]
    return {k: v for k, v in curves.items() if v}


def check_mqar(s: Summaries) -> CheckResult:
    curves = mqar_curves(s)
    if not curves:
        return CheckResult(NA, "no MQAR state-size curve (needs ≥ 2 state sizes per family)")
    parts, rises, total = [], 0, 0
    for setting, families in curves.items():
        for family, points in families.items():
            total += 1
            up = points[-1][1] >= points[0][1] + 0.02
            rises += up
            parts.append(
                f"{setting} {family}: "
                + " → ".join(f"{_fmt(acc)}@{size}" for size, acc in points)
                + ("" if up else " (no rise)")
            )
    ok = rises * 2 > total
    return CheckResult(
        "yes" if ok else "no", f"rises for {rises}/{total} families: " + "; ".join(parts)
    )


def check_listops(s: Summaries) -> CheckResult:
    for v in _variants_of(s, "listops"):
        values = _means(s[v], TIME_INVARIANT)
        if values:
            baseline = next(iter(s[v].values())).baseline or 0.0
            ok = len(values) == len(TIME_INVARIANT) and all(
                value >= baseline + 0.03 for value in values.values()
            )
            others = _means(s[v], [f for f in FAMILIES if f not in TIME_INVARIANT])
            return CheckResult(
                "yes" if ok else "no",
                f"{_list(values)} vs majority class {_fmt(baseline)} (others: {_list(others)})",
            )
    return CheckResult(NA, "no listops runs for lru/s5")


def _test_accuracy(s: Summaries, task: str, families: Sequence[str]) -> dict[str, float]:
    for v in _variants_of(s, task):
        values = _means(s[v], families)
        if values:
            return values
    return {}


def check_parity_gated(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "parity", ("lstm", "gru"))
    if len(values) < 2:
        return CheckResult(NA, "no parity runs for lstm and gru")
    ok = all(value >= 0.9 for value in values.values())
    return CheckResult("yes" if ok else "no", f"accuracy on unseen lengths: {_list(values)}")


def check_parity_positive(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "parity", ("mamba", "mingru"))
    if len(values) < 2:
        return CheckResult(NA, "no parity runs for mamba and mingru")
    ok = all(value <= 0.6 for value in values.values())
    return CheckResult("yes" if ok else "no", f"accuracy on unseen lengths: {_list(values)}")


def check_parity_complex(s: Summaries) -> CheckResult:
    complex_ = _test_accuracy(s, "parity", TIME_INVARIANT)
    positive = _test_accuracy(s, "parity", ("mamba", "mingru"))
    if not complex_ or not positive:
        return CheckResult(NA, "no parity runs for lru/s5 and mamba/mingru")
    ok = max(complex_.values()) >= max(positive.values()) + 0.05
    return CheckResult("yes" if ok else "no", f"{_list(complex_)} vs {_list(positive)}")


def check_s5_word(s: Summaries) -> CheckResult:
    gated = _test_accuracy(s, "s5_word", ("lstm", "gru"))
    diagonal = _test_accuracy(s, "s5_word", [f for f in FAMILIES if f not in CLASSIC])
    if not gated or not diagonal:
        return CheckResult(NA, "no s5_word runs for lstm/gru and the linear recurrences")
    ok = max(gated.values()) >= max(diagonal.values()) + 0.02
    return CheckResult("yes" if ok else "no", f"{_list(gated)} vs {_list(diagonal)}")


def check_mnist1d(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "mnist1d", ("gru",))
    if not values:
        return CheckResult(NA, "no mnist1d run for gru")
    ok = values["gru"] >= 0.85
    return CheckResult(
        "yes" if ok else "no", f"gru accuracy {_fmt(values['gru'])} (published 0.91)"
    )


def check_fashion(s: Summaries) -> CheckResult:
    parts, ok, seen = [], True, False
    for v in _variants_of(s, "seq_fashion_mnist"):
        values = _means(s[v], ("s5", "lstm"))
        if len(values) < 2:
            continue
        seen = True
        ok &= values["s5"] >= values["lstm"]
        parts.append(f"{v}: {_list(values)}")
    if not seen:
        return CheckResult(NA, "no seq_fashion_mnist runs for s5 and lstm")
    return CheckResult("yes" if ok else "no", "; ".join(parts))


def check_char_lm(s: Summaries) -> CheckResult:
    values = _test_accuracy(s, "char_lm", ("mingru", "minlstm", "mamba"))
    if len(values) < 3:
        return CheckResult(NA, "no char_lm runs for mingru, minlstm and mamba")
    ok = values["mingru"] < values["mamba"] and values["minlstm"] < values["mamba"]
    return CheckResult("yes" if ok else "no", f"bits per char: {_list(values)}")


CHECKS: tuple[Check, ...] = (
    Check(1, "adding", "tanh RNN stays near 0.167 from T≈150", "rnn MSE ≥ 0.10 at every T ≥ 150", check_adding_rnn),
    Check(1, "adding", "LSTM/GRU solve T of a few hundred", "lstm and gru MSE < 0.8 × rnn (or < 0.01) at every T ≤ 500", check_adding_gated),
    Check(1, "adding", "LRU/S5-style models solve every T", "lru and s5 MSE < 0.8 × rnn (or < 0.01) at every T; solved = < 0.01", check_adding_linear),
    Check(2, "copy_memory", "LSTM stalls at the baseline as T grows", "lstm cross-entropy ≥ 0.9 × baseline at the longest delay", check_copy_lstm),
    Check(2, "copy_memory", "linear recurrences solve it", "lru and s5 cross-entropy < 0.5 × baseline at every delay", check_copy_linear),
    Check(3, "selective_copy", "selective models ≈ 100%; time-invariant ones (LRU, S4D/S5) far lower", "mean accuracy of mamba/rglru/mingru/minlstm ≥ mean of lru/s5 + 0.05", check_selective_copy),
    Check(4, "induction_heads", "selective models extrapolate (Mamba 100% at every length)", "every selective family that learned (≥ 0.5 at the train length) loses ≤ 0.1 at the longest test length; none learned = not reproduced", check_induction_selective),
    Check(4, "induction_heads", "others degrade", "every non-selective family that learned loses > 0.1 at the longest test length", check_induction_others),
    Check(5, "mqar", "accuracy rises with state size", "accuracy at the largest state ≥ smallest + 0.02 for most curve families", check_mqar),
    Check(6, "listops", "S4 59.6, S5 62.2, LRU 60.2 (≫ majority class)", "lru and s5 accuracy ≥ majority-class share + 0.03", check_listops),
    Check(7, "parity", "LSTM/GRU ≈ 100% on parity", "lstm and gru accuracy ≥ 0.9 on the unseen test lengths", check_parity_gated),
    Check(7, "parity", "positive-real diagonal recurrences (Mamba, minGRU) fail parity", "mamba and mingru accuracy ≤ 0.6 on the unseen test lengths", check_parity_positive),
    Check(7, "parity", "complex or negative eigenvalues help", "best of lru/s5 (complex) ≥ best of mamba/mingru + 0.05", check_parity_complex),
    Check(7, "s5_word", "S5 needs a non-solvable-group state: beyond diagonal linear recurrences", "best of lstm/gru ≥ best linear recurrence + 0.02 on unseen lengths", check_s5_word),
    Check(8, "mnist1d", "GRU ≈ 91% on MNIST-1D", "gru accuracy ≥ 0.85", check_mnist1d),
    Check(8, "seq_fashion_mnist", "ordering as on sMNIST/psMNIST: S4 ≥ LSTM, gap larger when permuted", "s5 accuracy ≥ lstm on sequential and permuted", check_fashion),
    Check(9, "char_lm", "test loss: minGRU 1.548, minLSTM 1.555 < Mamba 1.575 nats/char", "mingru and minlstm bits/char < mamba", check_char_lm),
)  # fmt: skip
"""The expected orderings (published or predicted), each as a rule over the measured summaries."""


def run_checks(summaries: Summaries) -> list[tuple[Check, CheckResult]]:
    return [(check, check(summaries)) for check in CHECKS]


# ------------------------------------------------------------------------------------------------
# Gradient norms at initialisation


class _RealView(NamedTuple):
    """A complex state ``h`` (N,) seen as the real vector ``[Re h, Im h]`` (2N,)."""

    h: jax.Array


def real_view(cell: cell_lib.Cell) -> cell_lib.Cell:
    """``cell`` (complex carry field ``h``, e.g. LRU) with its state as ``[Re h, Im h]``.

    ``state_gradient_norms`` takes real states only; the norm of the gradient with respect to
    ``(Re h, Im h)`` is the natural one for a complex state (that of its real coordinates).
    """
    template = cell.initial_carry()

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        h = cell.initial_carry(batch_shape, dtype).h
        return _RealView(jnp.concatenate([h.real, h.imag], axis=-1))

    def step(params, carry, x):
        n = carry.h.shape[-1] // 2
        h = jax.lax.complex(carry.h[:n], carry.h[n:])
        new, y = cell.step(params, template._replace(h=h), x)
        return _RealView(jnp.concatenate([new.h.real, new.h.imag], axis=-1)), y

    return cell._replace(
        name=f"{cell.name}+real_view",
        hidden_size=2 * cell.hidden_size,
        initial_carry=initial_carry,
        step=step,
        linear=None,
    )


def gradient_norm_curves(
    length: int = 100, hidden: int = 64, batch: int = 16, seed: int = 0
) -> dict[str, np.ndarray]:
    """Mean over a batch of ``‖∂L/∂h_t‖``, ``L = Σ y_T²`` (the last output only), for freshly
    initialised cells, indexed by the distance ``T - 1 - t`` from the loss.

    Cells (inputs and ``h`` of size ``hidden``): tanh RNN (orthogonal recurrent init), LSTM
    (forget bias 1), LRU with its complex state seen as ``[Re h, Im h]`` (:func:`real_view`), and
    two real-state linear recurrences, RG-LRU and minGRU.
    """
    key_x, key_p = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(key_x, (batch, length, hidden), jnp.float32)
    cells = {
        "rnn (tanh)": cell_lib.rnn(hidden),
        "lstm": cell_lib.lstm(hidden),
        "lru (Re, Im of h)": real_view(cell_lib.lru(hidden, hidden)),
        "rglru": cell_lib.rglru(hidden),
        "mingru": cell_lib.mingru(hidden),
    }

    def loss_fn(ys, carry):
        return jnp.sum(jnp.square(ys[:, -1]))

    curves = {}
    for name, cell in cells.items():
        params = cell.init(key_p, hidden)
        norms = np.asarray(state_gradient_norms(cell, params, xs, loss_fn))  # (B, T)
        curves[name] = norms.mean(axis=0)[::-1]  # index = distance from the loss
    return curves


# ------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _family_style(family: str) -> dict[str, Any]:
    index = FAMILIES.index(family) if family in FAMILIES else 0
    return {
        "color": f"C{index}",
        "linestyle": "-" if family in CLASSIC else ("--" if family in TIME_INVARIANT else ":"),
        "marker": "os^vD<>px"[index % 9],
        "markersize": 3,
    }


def _learning_curve(outcomes: Sequence[Outcome]) -> tuple[list[int], list[float]]:
    """Mean over seeds of the valid headline metric at each eval step."""
    by_step: dict[int, list[float]] = {}
    for outcome in outcomes:
        path = outcome.rundir / "metrics.jsonl"
        if not path.exists():
            continue
        for record in read_jsonl(path):
            if record.get("split") != "valid":
                continue
            value = record.get(metric_key(outcome.metric))
            if value is not None:
                by_step.setdefault(int(record["step"]), []).append(float(value))
    steps = sorted(by_step)
    return steps, [float(np.mean(by_step[s])) for s in steps]


def plot_learning_curves(outcomes: Sequence[Outcome], plots_dir: Path) -> list[Path]:
    """One PNG per task: the valid headline metric against the step, one line per family
    (mean over seeds), one panel per main variant."""
    plt = _pyplot()
    done = [o for o in outcomes if o.results is not None and o.spec.variant.group == "main"]
    by_task: dict[str, dict[str, dict[str, list[Outcome]]]] = {}
    for o in done:
        by_task.setdefault(o.spec.task, {}).setdefault(o.spec.variant.name, {}).setdefault(
            o.spec.family, []
        ).append(o)
    paths = []
    for task, variants in by_task.items():
        fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 3.8), squeeze=False)
        for ax, (variant, families) in zip(axes[0], variants.items(), strict=True):
            metric = None
            for family, runs in families.items():
                steps, values = _learning_curve(runs)
                metric = runs[0].metric
                if steps:
                    ax.plot(steps, values, label=family, **_family_style(family))
            baseline = next(iter(families.values()))[0].baseline
            if baseline is not None:
                ax.axhline(baseline, color="gray", linewidth=0.8, linestyle="--", label="baseline")
            ax.set_title(variant)
            ax.set_xlabel("step")
            ax.set_ylabel(f"valid {metric_key(metric or '')}")
            if metric in ("mse",):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = plots_dir / f"learning-curves-{task}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def _length_plot(
    rows: Mapping[str, Mapping[int, float]],
    title: str,
    path: Path,
    *,
    train_range: tuple[float, float] | None = None,
    baseline: float | None = None,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for family, points in rows.items():
        lengths = sorted(points)
        ax.plot(lengths, [points[L] for L in lengths], label=family, **_family_style(family))
    if train_range is not None:
        ax.axvspan(*train_range, color="gray", alpha=0.15, label="train lengths")
    if baseline is not None:
        ax.axhline(baseline, color="gray", linewidth=0.8, linestyle="--", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test length")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_lengths(summaries: Summaries, plots_dir: Path) -> list[Path]:
    """Accuracy against test length: induction heads (``test_by_length``), parity and S5 (fixed
    lengths from :func:`evaluate_at_lengths`)."""
    paths = []
    for variant in _variants_of(summaries, "induction_heads"):
        row = summaries[variant]
        rows = {f: dict(c.by_length) for f, c in row.items() if c.by_length}
        if rows:
            cell = next(iter(row.values()))
            L = cell.task_config.get("length")
            paths.append(
                _length_plot(
                    rows,
                    f"{variant}: accuracy vs test length (trained at {L})",
                    plots_dir / f"{variant}-length.png",
                    train_range=(L * 0.95, L * 1.05) if L else None,
                    baseline=cell.baseline,
                )
            )
    for task in ("parity", "s5_word"):
        for variant in _variants_of(summaries, task):
            row = summaries[variant]
            rows = {f: dict(c.length_eval) for f, c in row.items() if c.length_eval}
            if rows:
                cell = next(iter(row.values()))
                tc = cell.task_config
                train = (tc.get("train_min_length", 1), tc.get("train_max_length", 40))
                paths.append(
                    _length_plot(
                        rows,
                        f"{variant}: accuracy vs sequence length",
                        plots_dir / f"{variant}-length.png",
                        train_range=train,
                        baseline=cell.baseline,
                    )
                )
    return paths


def plot_mqar(summaries: Summaries, plots_dir: Path) -> list[Path]:
    curves = mqar_curves(summaries)
    if not curves:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (setting, families) in zip(axes[0], curves.items(), strict=True):
        for family, points in families.items():
            ax.plot(*zip(*points, strict=True), label=family, **_family_style(family))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("recurrent state per example (real numbers, all layers)")
        ax.set_ylabel("query accuracy")
        ax.set_title(f"{setting}: accuracy vs state size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = plots_dir / "mqar-state-size.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [path]


def plot_gradient_norms(curves: Mapping[str, np.ndarray], path: Path) -> Path:
    """``‖∂L/∂h_t‖`` relative to its value one step before the loss, against the distance.

    Distance 0 is left out: with the loss on the last output, the state after the last step gets
    a gradient only where the output is the state itself (rnn, lstm, gru, minGRU), not where a
    readout follows the state update (LRU, RG-LRU's ``y`` is ``h`` but LRU's is ``Re(C h) + D x``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for index, (name, values) in enumerate(curves.items()):
        distance = np.arange(1, values.size)
        ratio = np.where(values[1:] > 0, values[1:] / values[1], np.nan)
        ax.plot(distance, ratio, label=name, color=f"C{index}")
    ax.set_yscale("log")
    ax.set_xlabel("distance from the loss (T − 1 − t)")
    ax.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_(T−2)‖")
    ax.set_title(f"gradient norm at initialisation (T = {next(iter(curves.values())).size})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# Report and CSV

CSV_FIELDS = (
    "variant",
    "task",
    "family",
    "seed",
    "group",
    "status",
    "metric",
    "value",
    "baseline",
    "valid_value",
    "accuracy",
    "param_count",
    "state_size",
    "steps",
    "batch_size",
    "width",
    "wall_seconds",
    "train_seconds",
    "by_length",
    "length_eval",
    "reason",
    "rundir",
)


def write_csv(outcomes: Sequence[Outcome], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for o in outcomes:
            config = o.spec.config()
            results = o.results or {}
            metric = o.metric or ""
            row = {
                "variant": o.spec.variant.name,
                "task": o.spec.task,
                "family": o.spec.family,
                "seed": o.spec.seed,
                "group": o.spec.variant.group,
                "status": o.status,
                "metric": metric_key(metric) if metric else "",
                "value": o.value,
                "baseline": o.baseline,
                "valid_value": headline(results["valid"], metric) if results else None,
                "accuracy": results.get("test", {}).get("accuracy") if results else None,
                "param_count": results.get("param_count"),
                "state_size": o.state_size,
                "steps": results.get("steps"),
                "batch_size": config.train.batch_size,
                "width": config.model.width,
                "wall_seconds": None if o.wall_seconds is None else round(o.wall_seconds, 2),
                "train_seconds": results.get("train_seconds"),
                "by_length": json.dumps(
                    {k: headline(v, metric) for k, v in results.get("test_by_length", {}).items()}
                )
                if results.get("test_by_length")
                else "",
                "length_eval": json.dumps({k: v.get("accuracy") for k, v in o.length_eval.items()})
                if o.length_eval
                else "",
                "reason": o.reason or "",
                "rundir": str(o.rundir),
            }
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def machine_description() -> str:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.1f} GiB memory"
    except OSError:
        pass
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores{memory}; "
        f"JAX {jax.__version__} on {len(devices)} × {jax.default_backend()} "
        f"({', '.join(kinds)}); Python {platform.python_version()}"
    )


def _cell_text(cell: Summary) -> str:
    text = _fmt(cell.mean)
    if cell.n > 1:
        text += f" ± {_fmt(cell.std)}"
    return text


def _short_count(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def write_report(
    outcomes: Sequence[Outcome],
    summaries: Summaries,
    path: Path,
    *,
    suite: str,
    command: str,
    csv_path: Path,
    plots: Sequence[Path],
    gradient_curves: Mapping[str, np.ndarray] | None,
    elapsed: float,
) -> Path:
    """The markdown report: header, results table, cost table, ordering checks, curves, plots."""
    by_variant: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_variant.setdefault(o.spec.variant.name, []).append(o)
    main = [v for v, os_ in by_variant.items() if os_[0].spec.variant.group == "main"]
    families = [f for f in FAMILIES if any(o.spec.family == f for o in outcomes)]
    counts = {
        s: sum(o.status == s for o in outcomes) for s in ("trained", "reused", "skipped", "failed")
    }
    run_seconds = sum(o.wall_seconds or 0.0 for o in outcomes)
    lines = [
        f"# recurrax comparison: the `{suite}` suite",
        "",
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine_description()}",
        f"- Command: `{command}`",
        f"- Runs: {len(outcomes)} ({counts['trained']} trained by this command, {counts['reused']} "
        f"reused from earlier results, {counts['skipped']} skipped, {counts['failed']} failed); "
        f"sum of run wall times {_duration(run_seconds)}, this command {_duration(elapsed)}",
        f"- Every run: `{csv_path.name}`; suite definition: `experiments/suites.py`",
        "",
        "## Results",
        "",
        "Headline metric on the test split, mean ± sample std over seeds (the number of seeds is in "
        "the cost table). ↓ lower is better, ↑ higher is better. *baseline*: the memoryless or "
        "chance predictor (adding: always 1; copy memory: 10·ln 8/(T+20); ListOps: the majority "
        "class; char_lm: unigram entropy). Parity and S5 are scored on the unseen test lengths.",
        "",
        "| task | metric | baseline | " + " | ".join(families) + " |",
        "|---|---|---:|" + "---:|" * len(families),
    ]
    for variant in main:
        row = summaries.get(variant, {})
        first = by_variant[variant][0]
        metric = next((c.metric for c in row.values()), first.metric)
        if metric is None:
            status = by_variant[variant][0].status
            lines.append(f"| {variant} | — | — | " + " | ".join([status] * len(families)) + " |")
            continue
        arrow = "↓" if lower_is_better(metric) else "↑"
        baseline = next((c.baseline for c in row.values()), first.baseline)
        cells = []
        best = None
        values = {f: row[f].mean for f in families if f in row}
        if values:
            best = (min if lower_is_better(metric) else max)(values.values())
        for family in families:
            if family in row:
                text = _cell_text(row[family])
                cells.append(f"**{text}**" if row[family].mean == best else text)
            else:
                statuses = {o.status for o in by_variant[variant] if o.spec.family == family}
                cells.append(", ".join(sorted(statuses)) if statuses else "")
        lines.append(
            f"| {variant} | {metric_key(metric)} {arrow} | {_fmt(baseline)} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Bold: the best family of the row.",
        "",
        "## Cost",
        "",
        "Per cell: parameters · mean wall seconds per run (training, evaluation and checkpoints) · "
        "seeds. Steps and batch size are shared by the row.",
        "",
        "| task | steps | batch | width | " + " | ".join(families) + " |",
        "|---|---:|---:|---:|" + "---|" * len(families),
    ]
    for variant in main:
        row = summaries.get(variant, {})
        config = by_variant[variant][0].spec.config()
        steps = next((c.steps for c in row.values()), config.train.num_steps)
        cells = [
            f"{_short_count(row[f].param_count)} · {row[f].seconds:.0f}s · {row[f].n}"
            if f in row
            else ""
            for f in families
        ]
        lines.append(
            f"| {variant} | {steps} | {config.train.batch_size} | {config.model.width} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Every family runs at the same width; Mamba at its standard size (`d_state` 16, "
        "`expand` 2; `FAMILY_MODEL` in `experiments/suites.py`). No family is shrunk for speed.",
        "",
        "## Expected orderings (published or predicted)",
        "",
        "Each expected ordering is checked by a rule over the table above (the `CHECKS` of "
        "`experiments/compare.py`). *yes*: reproduced; *no*: not reproduced at this budget; "
        "*n/a*: the runs it needs are missing.",
        "",
        "| row | task | expected | rule | reproduced | numbers |",
        "|---:|---|---|---|---|---|",
    ]
    results = run_checks(summaries)
    for check, result in results:
        lines.append(
            f"| {check.row} | {check.task} | {check.expected} | {check.rule} | "
            f"**{result.status}** | {result.evidence} |"
        )
    tally = {s: sum(r.status == s for _, r in results) for s in ("yes", "no", NA)}
    lines += [
        "",
        f"Reproduced {tally['yes']} of {tally['yes'] + tally['no']} checkable orderings "
        f"({tally[NA]} not checkable with these runs).",
    ]
    lines += _length_tables(summaries)
    curves = mqar_curves(summaries)
    if curves:
        lines += ["", "## MQAR: accuracy against state size", ""]
        lines += [
            "State size: the recurrent carry of all layers per example, in real numbers.",
            "",
            "| setting | family | state size → accuracy |",
            "|---|---|---|",
        ]
        for setting, fams in curves.items():
            for family, points in fams.items():
                lines.append(
                    f"| {setting} | {family} | "
                    + ", ".join(f"{size}: {_fmt(acc)}" for size, acc in points)
                    + " |"
                )
    if gradient_curves:
        T = next(iter(gradient_curves.values())).size
        marks = [d for d in (1, 10, 25, 50, T - 1) if d < T]
        lines += [
            "",
            "## Gradient norm at initialisation",
            "",
            f"‖∂L/∂h_t‖ relative to its value one step before the loss (distance 1), for freshly "
            f"initialised cells (width 64, T = {T}, loss Σ y_T² on the last output, mean over 16 "
            "random-normal sequences; "
            "`recurrax.diagnostics.state_gradient_norms`). The LRU's complex state is measured "
            "through its real and imaginary parts; RG-LRU and minGRU are real-state linear "
            "recurrences.",
            "",
            "| cell | " + " | ".join(f"distance {d}" for d in marks) + " |",
            "|---|" + "---:|" * len(marks),
        ]
        for name, values in gradient_curves.items():
            lines.append(
                f"| {name} | " + " | ".join(f"{values[d] / values[1]:.2e}" for d in marks) + " |"
            )
    skipped = [o for o in outcomes if o.status == "skipped"]
    if skipped:
        lines += ["", "## Skipped", "", "| task | runs | reason |", "|---|---:|---|"]
        reasons: dict[tuple[str, str], int] = {}
        for o in skipped:
            reasons[(o.spec.variant.name, o.reason or "")] = (
                reasons.get((o.spec.variant.name, o.reason or ""), 0) + 1
            )
        for (variant, reason), n in reasons.items():
            lines.append(f"| {variant} | {n} | {reason} |")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        lines += ["", "## Failed runs", "", "| run | error |", "|---|---|"]
        for o in failed:
            lines.append(f"| {o.spec.relpath()} | {o.reason} |")
    if plots:
        lines += ["", "## Plots", ""]
        for plot in plots:
            rel = os.path.relpath(plot, path.parent)
            lines.append(f"- [{plot.stem}]({rel})")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _length_tables(summaries: Summaries) -> list[str]:
    lines = []
    for task, field, title in (
        ("induction_heads", "by_length", "Induction heads: accuracy against test length"),
        ("parity", "length_eval", "Parity: accuracy at fixed lengths"),
        ("s5_word", "length_eval", "S5 word problem: per-step accuracy at fixed lengths"),
    ):
        for variant in _variants_of(summaries, task):
            row = {f: getattr(c, field) for f, c in summaries[variant].items() if getattr(c, field)}
            if not row:
                continue
            lengths = sorted({L for points in row.values() for L in points})
            lines += [
                "",
                f"## {title} ({variant})",
                "",
                "| family | " + " | ".join(f"L={L}" for L in lengths) + " |",
                "|---|" + "---:|" * len(lengths),
            ]
            for family in FAMILIES:
                if family in row:
                    lines.append(
                        f"| {family} | "
                        + " | ".join(_fmt(row[family].get(L)) for L in lengths)
                        + " |"
                    )
    return lines


# ------------------------------------------------------------------------------------------------
# The whole comparison


def run_comparison(
    specs: Sequence[RunSpec],
    *,
    workdir: str | os.PathLike,
    report: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    plots_dir: str | os.PathLike | None = None,
    suite: str = "custom",
    command: str = "",
    gradient_plot: bool = True,
    compilation_cache: str | os.PathLike | None = None,
    log: Callable[[str], None] = _print,
) -> dict[str, Any]:
    """Runs ``specs`` in ``workdir`` and writes the report, CSV and plots.

    ``compilation_cache`` turns on JAX's persistent compilation cache in that directory: runs that
    differ only in their seed (or repeat a shape) then skip most of their compile time.

    Returns ``{"outcomes", "summaries", "checks", "report", "csv", "plots"}``.
    """
    started = time.perf_counter()
    if compilation_cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    report = Path(report)
    csv_path = Path(csv_path) if csv_path else report.with_suffix(".csv")
    plots_dir = Path(plots_dir) if plots_dir else report.parent / "plots"
    for directory in (report.parent, csv_path.parent, plots_dir):
        directory.mkdir(parents=True, exist_ok=True)
    log(f"{len(specs)} runs in {workdir}")
    outcomes = execute(specs, workdir, log=log)
    summaries = summarize(outcomes)
    plots = plot_learning_curves(outcomes, plots_dir)
    plots += plot_lengths(summaries, plots_dir)
    plots += plot_mqar(summaries, plots_dir)
    gradient_curves = None
    if gradient_plot:
        gradient_curves = gradient_norm_curves()
        plots.append(plot_gradient_norms(gradient_curves, plots_dir / "gradient-norms.png"))
    write_csv(outcomes, csv_path)
    write_report(
        outcomes,
        summaries,
        report,
        suite=suite,
        command=command,
        csv_path=csv_path,
        plots=plots,
        gradient_curves=gradient_curves,
        elapsed=time.perf_counter() - started,
    )
    checks = run_checks(summaries)
    for check, result in checks:
        log(f"  [{result.status:>3}] {check.task}: {check.expected}")
    log(f"report {report}, CSV {csv_path}, {len(plots)} plots in {plots_dir}")
    log(f"total {_duration(time.perf_counter() - started)}")
    return {
        "outcomes": outcomes,
        "summaries": summaries,
        "checks": checks,
        "report": report,
        "csv": csv_path,
        "plots": plots,
    }


def _with_steps(specs: Sequence[RunSpec], num_steps: int) -> list[RunSpec]:
    """The same runs with ``num_steps`` steps (evaluations and logs rescaled)."""
    out = []
    for spec in specs:
        v = spec.variant
        train = {
            **v.train,
            **{
                k: suites.train_settings(num_steps, v.train.get("batch_size", 32))[k]
                for k in ("num_steps", "eval_every", "log_every")
            },
        }
        out.append(dataclasses.replace(spec, variant=dataclasses.replace(v, train=train)))
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it renames at INFO
    suite = FLAGS.suite
    try:
        specs = suites.runs(
            suite,
            families=FLAGS.families,
            tasks=FLAGS.tasks,
            seeds=None if FLAGS.seeds is None else [int(s) for s in FLAGS.seeds],
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    workdir = FLAGS.workdir or f"workdirs/compare-{suite}"
    if FLAGS.num_steps is not None:
        specs = _with_steps(specs, FLAGS.num_steps)
        if FLAGS.workdir is None:
            workdir += f"-steps{FLAGS.num_steps}"
    if FLAGS.dry_run:
        for spec in specs:
            config = spec.config()
            print(
                f"{spec.relpath():<50} steps {config.train.num_steps:>6}  batch "
                f"{config.train.batch_size:>3}  width {config.model.width:>4}"
            )
        print(f"{len(specs)} runs")
        return
    report = FLAGS.report or suites.DEFAULT_REPORTS[suite]
    cache = FLAGS.compilation_cache or str(Path(workdir) / "jax-cache")
    run_comparison(
        specs,
        workdir=workdir,
        report=report,
        csv_path=FLAGS.csv,
        plots_dir=FLAGS.plots_dir,
        suite=suite,
        command=shlex.join(["python", *sys.argv]),
        compilation_cache=None if cache == "none" else cache,
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
