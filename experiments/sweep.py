"""The same tuning budget for every family: a learning-rate sweep per task on the validation split.

Each family starts from its recipe (``experiments/recipes.py``: the papers' initialisation and
learning rate). For every row (variant) of a suite and every family, the sweep trains
:data:`LR_FACTORS` ``× the recipe's learning rate`` — the same number of trials for every family —
with the row's own budget, early stopping and seed 0, and keeps the learning rate whose best
validation loss is lowest (ties: the recipe's). The choices go to ``experiments/results/
sweep-<suite>.json`` with every trial's validation loss, and a table beside it (``.md``); the suite
then runs each family at its chosen rate (:func:`experiments.suites.apply_sweep`), so that the
chosen value is part of every run's recorded config.

    .venv/bin/python experiments/sweep.py --suite=small                      # every row
    .venv/bin/python experiments/sweep.py --suite=small --tasks=adding-T100 --families=lru,s5

A sweep of some rows updates only those rows of the file. Test numbers are never looked at.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for experiments.*

from absl import app, flags, logging
from experiments import runner, suites
from experiments.suites import RunSpec, Variant

from recurrax.models import FAMILIES

LR_FACTORS = (0.5, 1.0, 2.0)
"""Trials per (row, family): these multiples of the recipe's peak learning rate."""

FLAGS = flags.FLAGS


def trial_specs(variant: Variant, family: str) -> list[tuple[float, RunSpec]]:
    """``[(learning rate, spec)]``: the trials of one family on one row (seed 0)."""
    base = RunSpec(variant, family, 0).config().optimizer.learning_rate
    trials = []
    for factor in LR_FACTORS:
        lr = float(f"{base * factor:.6g}")
        optimizer = {
            **variant.family_optimizer,
            family: {**variant.family_optimizer.get(family, {}), "learning_rate": lr},
        }
        trial = dataclasses.replace(
            variant, name=f"{variant.name}/{family}-lr{lr:g}", family_optimizer=optimizer
        )
        trials.append((lr, RunSpec(trial, family, 0)))
    return trials


def choose(losses: Mapping[float, float | None], recipe_lr: float) -> float:
    """The rate with the lowest validation loss; the recipe's on a tie; failed trials lose."""
    finite = {lr: loss for lr, loss in losses.items() if loss is not None and loss == loss}
    if not finite:
        return recipe_lr
    best = min(finite.values())
    if finite.get(recipe_lr) == best:
        return recipe_lr
    return min(lr for lr, loss in finite.items() if loss == best)


def sweep(
    variants: Sequence[Variant],
    families: Sequence[str] | None,
    workdir: str | Path,
    *,
    log=runner._print,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Runs the trials of every (row, family) and returns ``{row: {family: choice}}`` where a
    choice is ``{"recipe": lr, "chosen": lr, "trials": {lr: best validation loss}}``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in variants:
        for family in variant.families or FAMILIES:
            if families is not None and family not in families:
                continue
            recipe_lr = RunSpec(variant, family, 0).config().optimizer.learning_rate
            trials = trial_specs(variant, family)
            outcomes = runner.execute([spec for _, spec in trials], workdir, log=log)
            losses = {
                lr: (o.results["valid"]["loss"] if o.results is not None else None)
                for (lr, _), o in zip(trials, outcomes, strict=True)
            }
            out.setdefault(variant.name, {})[family] = {
                "recipe": recipe_lr,
                "chosen": choose(losses, recipe_lr),
                "trials": {f"{lr:g}": loss for lr, loss in losses.items()},
            }
    return out


def table(choices: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        "| row | family | recipe lr | " + " | ".join(f"×{f:g}" for f in LR_FACTORS)
        + " | chosen lr |",
        "|---|---|---:|" + "---:|" * len(LR_FACTORS) + "---:|",
    ]  # fmt: skip
    for variant, families in choices.items():
        for family, choice in families.items():
            losses = list(choice["trials"].values())
            shown = ["failed" if v is None else f"{v:.4g}" for v in losses]
            lines.append(
                f"| {variant} | {family} | {choice['recipe']:g} | " + " | ".join(shown)
                + f" | {choice['chosen']:g} |"
            )  # fmt: skip
    return lines


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    suite = FLAGS.suite
    if suite not in suites.SWEPT_SUITES:
        raise app.UsageError(f"--suite must be one of {tuple(suites.SWEPT_SUITES)}; got {suite!r}")
    variants = [v for v in suites.SWEPT_SUITES[suite]() if v.group == "main"]
    if FLAGS.tasks is not None:
        known = {v.name for v in variants} | {v.task for v in variants}
        unknown = sorted(set(FLAGS.tasks) - known)
        if unknown:
            raise app.UsageError(f"--tasks must be among {sorted(known)}; got unknown {unknown}")
        variants = [v for v in variants if v.name in FLAGS.tasks or v.task in FLAGS.tasks]
    if FLAGS.families is not None and set(FLAGS.families) - set(FAMILIES):
        raise app.UsageError(f"--families must be among {FAMILIES}; got {FLAGS.families}")
    path = Path(suites.SWEEP_FILES[suite])
    choices = sweep(variants, FLAGS.families, FLAGS.workdir or f"workdirs/sweep-{suite}")
    stored = runner.read_json(path) if path.exists() else {"rows": {}}
    for variant, families in choices.items():
        stored["rows"].setdefault(variant, {}).update(families)
    stored["command"] = shlex.join(["python", *sys.argv])
    stored["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    stored["machine"] = platform.processor() or platform.machine()
    stored["lr_factors"] = list(LR_FACTORS)
    path.parent.mkdir(parents=True, exist_ok=True)
    runner.write_json(path, stored)
    lines = [
        f"# Learning-rate sweep of the `{suite}` suite",
        "",
        f"Last command: `{stored['command']}` ({stored['date']}, {stored['machine']}). Best "
        f"validation loss (seed 0, early stopping as in the suite) of each trial: "
        f"{', '.join(f'×{f:g}' for f in LR_FACTORS)} the recipe's learning rate "
        "(`experiments/recipes.py`). The suite runs each family at its chosen rate.",
        "",
        *table(stored["rows"]),
    ]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    flags.DEFINE_enum("suite", "small", ["small", "medium"], "the suite whose rows are swept")
    flags.DEFINE_list("tasks", None, "rows (variant or task names); default: every main row")
    flags.DEFINE_list("families", None, "families; default: each row's")
    flags.DEFINE_string("workdir", None, "trial runs; default workdirs/sweep-<suite>")
    app.run(main)
