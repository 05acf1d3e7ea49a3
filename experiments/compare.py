"""Runs a suite of (task, family, seed) trainings and writes a results table, a CSV and plots.

    python experiments/compare.py --suite=quick              # ~10 min on a 2-core CPU
    python experiments/compare.py --suite=small              # every task, ~90 min; RESULTS.md
    python experiments/compare.py --suite=medium --tasks=parity   # one part of RESULTS-medium.md
    python experiments/compare.py --suite=full               # published settings, accelerator
    python experiments/compare.py --suite=seq2seq --tasks=dates-bahdanau   # encoder–decoders

The suites are defined in ``experiments/suites.py``. Each run trains with
``recurrax.run.train_and_evaluate`` in ``<workdir>/<task-variant>/<family>/seed<k>/``, one after
another in this process. A run whose ``results.json`` holds the hash of the same full resolved
config is reused, so a comparison that was interrupted continues where it stopped (a half-finished
run resumes from its checkpoints); a stored run of another config is moved aside and trained
again (``experiments/runner.py``). Runs that differ only in their seed
share compiled programs through JAX's persistent compilation cache (``<workdir>/jax-cache``).
One line per finished run is printed (task, family, seed, metric, steps, seconds, elapsed total).

Real-data tasks (mnist1d, seq_fashion_mnist, char_lm) run only when their data is found; the
report lists the skipped ones with the reason. The report (markdown) holds the machine and
command, the task × family table of the headline metric (mean and 95% interval over seeds, at-chance
cells marked; ``experiments/stats.py``) with chance scores, each run's settings from its stored
record, parameter counts and wall times, one row per expected ordering (published or predicted by
theory; ``CHECKS`` in ``experiments/checks.py``) saying whether it was reproduced and by which
numbers, which real-data tasks ran, and links to the plots: learning curves, accuracy against
test length (induction heads, parity, S5), MQAR accuracy against state size, and the gradient norm
``‖∂L/∂h_t‖`` against the distance from the loss for freshly initialised cells. A CSV beside it
(``--csv``) holds every run, and the PNG plots go to ``--plots_dir`` (default ``<report dir>/plots`` for ``RESULTS.md``, else ``<report>-plots``).

The pieces: ``experiments/runner.py`` (running and reuse), ``experiments/stats.py`` (intervals,
chance, bolding), ``experiments/checks.py`` (the expected orderings), ``experiments/plots.py``
and ``experiments/report.py`` (CSV and markdown). This file is the entry point.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for experiments.*

import jax
from absl import app, flags, logging
from experiments import parts, runner, suites
from experiments.checks import (  # noqa: F401 — re-exported: the checks, by name
    CHECKS,
    NA,
    ORDERINGS,
    TARGETS,
    Check,
    CheckResult,
    check_adding_gated,
    check_adding_linear,
    check_adding_rnn,
    check_char_lm,
    check_copy_linear,
    check_copy_lstm,
    check_fashion,
    check_induction_others,
    check_induction_selective,
    check_listops,
    check_mnist1d,
    check_mqar,
    check_parity_gated,
    check_parity_negative,
    check_parity_positive,
    check_s5_word,
    check_selective_copy,
    mqar_curves,
    run_checks,
)
from experiments.plots import (
    gradient_norm_curves,
    plot_gradient_norms,
    plot_learning_curves,
    plot_lengths,
    plot_mqar,
    real_view,  # noqa: F401 — re-exported
)
from experiments.report import write_csv, write_report
from experiments.runner import Outcome, execute, missing_data_reason  # noqa: F401 — re-exported
from experiments.stats import Summary, summarize, summary  # noqa: F401 — re-exported
from experiments.suites import RunSpec

from recurrax.models import FAMILIES
from recurrax.run import state_size  # noqa: F401 — re-exported

FLAGS = flags.FLAGS


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
    flags.DEFINE_string(
        "plots_dir",
        None,
        "PNG plots; default <report dir>/plots for RESULTS.md, else <report>-plots",
    )
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
    flags.DEFINE_string(
        "parts_dir",
        None,
        "keep each row's results in a part file here and assemble the report from every part "
        f"(default: {suites.DEFAULT_PARTS} by suite; 'none' to turn off)",
    )
    flags.DEFINE_bool("dry_run", False, "list the runs and exit")


def run_comparison(
    specs: Sequence[RunSpec],
    *,
    workdir: str | os.PathLike,
    report: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    plots_dir: str | os.PathLike | None = None,
    suite: str = "custom",
    command: str = "",
    gradient_plot: bool | None = None,
    compilation_cache: str | os.PathLike | None = None,
    parts_dir: str | os.PathLike | None = None,
    suite_specs: Sequence[RunSpec] = (),
    log: Callable[[str], None] = runner._print,
) -> dict[str, Any]:
    """Runs ``specs`` in ``workdir`` and writes the report, CSV and plots.

    ``compilation_cache`` turns on JAX's persistent compilation cache in that directory: runs that
    differ only in their seed (or repeat a shape) then skip most of their compile time.

    With ``parts_dir``, each row run now is saved there as a part file (``experiments/parts.py``)
    and the report also covers the runs of ``suite_specs`` that earlier parts hold (other rows, and
    other families or seeds of the rows run now).

    Returns ``{"outcomes", "summaries", "checks", "report", "csv", "plots"}``.
    """
    started = time.perf_counter()
    if compilation_cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    report = Path(report)
    csv_path = Path(csv_path) if csv_path else report.with_suffix(".csv")
    if not plots_dir:  # beside the report: plots/ for RESULTS.md, <stem>-plots/ for the others
        plots_dir = report.parent / (
            "plots" if report.name == "RESULTS.md" else f"{report.stem}-plots"
        )
    plots_dir = Path(plots_dir)
    for directory in (report.parent, csv_path.parent, plots_dir):
        directory.mkdir(parents=True, exist_ok=True)
    log(f"{len(specs)} runs in {workdir}")
    outcomes = runner.execute(specs, workdir, log=log)
    used_parts: list[dict[str, Any]] = []
    if parts_dir is not None:
        saved = parts.save_parts(outcomes, parts_dir, command=command)
        log(f"saved {len(saved)} part files in {parts_dir}")
        ran = {_key(s) for s in specs}
        stored, used_parts, stale = parts.load_parts(suite_specs, parts_dir)
        for name in stale:
            log(f"  left out (its config changed since it ran): {name}")
        outcomes = [*outcomes, *(o for o in stored if _key(o.spec) not in ran)]
    summaries = summarize(outcomes)
    plots = plot_learning_curves(outcomes, plots_dir)
    plots += plot_lengths(summaries, plots_dir)
    plots += plot_mqar(summaries, plots_dir)
    gradient_curves = None
    if gradient_plot is None:  # the cells' gradient norms are about the task suite's memory
        gradient_plot = suite != "seq2seq"
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
        parts=used_parts,
    )
    checks = run_checks(summaries, ORDERINGS.get(suite, CHECKS) + TARGETS.get(suite, ()))
    for check, result in checks:
        log(f"  [{result.status:>3}] {check.task}: {check.expected}")
    log(f"report {report}, CSV {csv_path}, {len(plots)} plots in {plots_dir}")
    log(f"total {runner.duration(time.perf_counter() - started)}")
    return {
        "outcomes": outcomes,
        "summaries": summaries,
        "checks": checks,
        "report": report,
        "csv": csv_path,
        "plots": plots,
    }


def _key(spec: RunSpec) -> tuple[str, str, int]:
    return spec.variant.name, spec.family, spec.seed


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
    parts_dir = FLAGS.parts_dir or suites.DEFAULT_PARTS.get(suite)
    if parts_dir == "none" or FLAGS.num_steps is not None:
        parts_dir = None  # a smoke run never writes parts
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
        parts_dir=parts_dir,
        suite_specs=suites.runs(suite),  # the report covers every family and seed with a part
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
