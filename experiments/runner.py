"""Running a suite: one ``train_and_evaluate`` per run, in order, reusing stored runs by config.

Each run trains in ``<workdir>/<variant>/<family>/seed<k>/``. Its ``results.json`` (written by
``recurrax.run.train_and_evaluate``) records the full resolved config and its hash; a stored run
is reused only when that hash equals the hash of the run's config now (:func:`reuse_refusal`), so
a changed suite, default or override never passes off old numbers as new. A stored run whose
config differs is moved aside (``seed<k>.stale-<hash>``) and trained again; a half-finished run
(checkpoints, no ``results.json``) resumes when its checkpoints are of the same config, and is
moved aside (``seed<k>.stale-partial``) and trained afresh when ``train_and_evaluate`` refuses
them as another config's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
from experiments.stats import chance, headline, metric_key
from experiments.suites import RunSpec

import recurrax.tasks as tasks
from recurrax.checkpoint import ForeignCheckpointDirectoryError
from recurrax.metrics import read_jsonl
from recurrax.run import config_hash, evaluate_at_lengths, resolved_config, state_size
from recurrax.run import train_and_evaluate as _train_and_evaluate
from recurrax.tasks.data_files import MissingDataError, is_available

RESULTS_FILE = "results.json"
RUN_INFO_FILE = "compare.json"  # wall seconds of the invocation that finished the run
LENGTH_FILE = "length_eval.json"  # accuracy at fixed lengths (parity, S5)
REAL_DATA_TASKS = ("mnist1d", "seq_fashion_mnist", "char_lm")
"""Tasks that read real data (``make data`` installs what packages ship); they run only when their
data are found, and the report says which ran and which were skipped."""

# Looked up at call time, so that tests can count or replace the training.
train_and_evaluate = _train_and_evaluate


def machine_description() -> str:
    """The machine runs happen on: OS, CPU cores, memory, JAX and its devices, Python."""
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


def _print(line: str) -> None:
    print(line, flush=True)


@dataclasses.dataclass
class Outcome:
    """What happened to one run of the suite.

    ``valid_curve`` is the run's validation learning curve, ``[(step, metrics), ...]``.
    ``status`` is ``"trained"`` (trained, or resumed and finished, by this invocation),
    ``"reused"`` (its stored results were made by the same config), ``"skipped"`` (its data are
    missing: ``reason``) or ``"failed"`` (an exception: ``reason``). ``results`` is the run's
    stored record (``results.json``, with its resolved ``config``).
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
    valid_curve: list[tuple[int, dict[str, float]]] | None = None

    @property
    def value(self) -> float | None:
        """The headline metric on the test split."""
        if self.results is None:
            return None
        return headline(self.results["test"], self.results["metric"])

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings from its stored record (empty without one)."""
        return run_settings(self.results) if self.results else {}


def run_settings(results: Mapping[str, Any]) -> dict[str, Any]:
    """Depth, width, parameters, learning rate, schedule, weight decay, steps, batch, test-set size
    and seed of a run, read from its stored record (``results.json``)."""
    config = results.get("config") or {}
    model, optimizer, train = (config.get(k, {}) for k in ("model", "optimizer", "train"))
    out: dict[str, Any] = {
        "depth": model.get("num_layers"),
        "width": model.get("width"),
        "state_size": model.get("state_size"),
        "param_count": results.get("param_count"),
        "learning_rate": optimizer.get("learning_rate"),
        "weight_decay": optimizer.get("weight_decay"),
        "schedule": schedule_text(optimizer) if optimizer else None,
        "steps": results.get("steps"),
        "max_steps": train.get("num_steps"),
        "patience": train.get("patience"),
        "stopped_early": results.get("stopped_early"),
        "evaluated_step": results.get("evaluated_step"),
        "init": init_text(model.get("cell_options") or {}),
        "batch_size": train.get("batch_size"),
        "test_examples": (
            train["test_batches"] * train["batch_size"]
            if "test_batches" in train and "batch_size" in train
            else None
        ),
        "seed": train.get("seed"),
    }
    return out


def init_text(cell_options: Mapping[str, Any]) -> str:
    """The cell options that differ from the cell's defaults, ``"r_min=0.999, r_max=0.9999"``
    (``"defaults"`` when there are none)."""
    if not cell_options:
        return "defaults"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(cell_options.items()))  # fmt: skip


def schedule_text(optimizer: Mapping[str, Any]) -> str:
    """``"warmup 50, cosine to 0.1× at 1000"`` from ``config.optimizer`` (see ``make_optimizer``)."""
    warmup = optimizer.get("warmup_steps", 0)
    text = f"warmup {warmup}, " if warmup else ""
    return text + (
        f"cosine to {optimizer.get('final_ratio', 0.0):g}× at {optimizer.get('total_steps')}"
    )


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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    os.replace(tmp, path)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def differing_fields(stored: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """The dotted config fields whose values differ between two resolved configs."""
    a, b = _flat(stored or {}), _flat(current)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<missing>") != b.get(k, "<missing>"))


def reuse_refusal(
    results: Mapping[str, Any] | None, config: ml_collections.ConfigDict
) -> str | None:
    """``None`` when a stored record may stand for a run of ``config``; else why it may not.

    Reused only when the hash of the full resolved config stored with the record equals
    :func:`recurrax.run.config_hash` of ``config``, and the run finished its steps (or stopped
    early: ``config.train.patience``).
    """
    if results is None:
        return "no stored results"
    stored = results.get("config_hash")
    if stored is None:
        return "the stored run has no config hash"
    if stored != config_hash(config):
        fields = differing_fields(results.get("config"), resolved_config(config))
        return "the stored run's config differs" + (f" in {', '.join(fields)}" if fields else "")
    if results.get("steps") != config.train.num_steps and not results.get("stopped_early"):
        return f"the stored run stopped at step {results.get('steps')}"
    return None


def _set_aside(rundir: Path, results: Mapping[str, Any] | None) -> Path:
    """Moves a stored run of another config out of the way (never deletes it); a half-finished
    one (no ``results``) is tagged ``partial``."""
    tag = "partial" if results is None else str(results.get("config_hash") or "nohash")[:8]
    target = rundir.with_name(f"{rundir.name}.stale-{tag}")
    index = 1
    while target.exists():
        index += 1
        target = rundir.with_name(f"{rundir.name}.stale-{tag}-{index}")
    os.replace(rundir, target)
    return target


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
            spec,
            rundir,
            "trained",
            metric=task_spec.metric,
            baseline=chance(spec.task, task_spec.metric, config.task.to_dict(), task_spec),
        )
        results_path = rundir / RESULTS_FILE
        try:
            results = read_json(results_path) if results_path.exists() else None
            refusal = reuse_refusal(results, config)
            if refusal is None:
                outcome.status = "reused"
                info = rundir / RUN_INFO_FILE
                outcome.wall_seconds = (
                    read_json(info)["wall_seconds"] if info.exists() else results["train_seconds"]
                )
                if spec.variant.length_eval:
                    outcome.length_eval = _length_eval(config, rundir, spec.variant.length_eval)
            else:
                if results is not None:
                    moved = _set_aside(rundir, results)
                    log(f"{prefix}  not reused ({refusal}); moved to {moved.name}")
                rundir.mkdir(parents=True, exist_ok=True)
                t0 = time.perf_counter()
                try:
                    results = train_and_evaluate(config, rundir, progress=False)
                except ForeignCheckpointDirectoryError as error:
                    # A half-finished run of another config (checked before any work).
                    moved = _set_aside(rundir, None)
                    log(
                        f"{prefix}  not resumed ({error.__class__.__name__}); moved to {moved.name}"
                    )
                    rundir.mkdir(parents=True)
                    results = train_and_evaluate(config, rundir, progress=False)
                if spec.variant.length_eval:
                    outcome.length_eval = _length_eval(config, rundir, spec.variant.length_eval)
                outcome.wall_seconds = time.perf_counter() - t0
                write_json(
                    rundir / RUN_INFO_FILE,
                    {
                        "wall_seconds": outcome.wall_seconds,
                        "resumed_from": results["resumed_from"],
                        "config_hash": results.get("config_hash"),
                    },
                )
            outcome.results = results
            outcome.valid_curve = valid_curve(rundir)
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
            f"  [total {duration(time.perf_counter() - started)}]"
        )
    return outcomes


def valid_curve(rundir: Path) -> list[tuple[int, dict[str, float]]]:
    """``[(step, validation metrics), ...]`` from the run's ``metrics.jsonl``."""
    path = rundir / "metrics.jsonl"
    if not path.exists():
        return []
    return [
        (int(r["step"]), {k: v for k, v in r.items() if k not in ("step", "split")})
        for r in read_jsonl(path)
        if r.get("split") == "valid"
    ]


def _length_eval(config, rundir: Path, lengths) -> dict[str, dict[str, float]]:
    """:func:`recurrax.run.evaluate_at_lengths`, cached in the run's ``length_eval.json``."""
    path = rundir / LENGTH_FILE
    wanted = [str(int(L)) for L in lengths]
    if path.exists():
        cached = read_json(path)
        if all(L in cached for L in wanted):
            return {L: cached[L] for L in wanted}
    values = evaluate_at_lengths(config, rundir, lengths)
    write_json(path, values)
    return values
