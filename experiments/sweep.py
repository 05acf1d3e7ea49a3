"""The same tuning budget for every family: learning rate × initialisation per task, on validation.

Each family starts from its recipe (``experiments/recipes.py``: the papers' initialisation and
learning rate). For every row (variant) of a suite and every family, the sweep trains six trials
— the same number for every family — with the row's own budget, early stopping and seed 0: the
recipe's learning rate × :data:`LR_FACTORS` with the recipe's initialisation and with the family's
one alternative (``recipes.init_alternative``), or × :data:`FINE_LR_FACTORS` for a family without
one. It keeps the trial whose best validation loss is lowest (ties: the recipe's). The choices go to ``experiments/results/
sweep-<suite>.json`` with every trial's validation loss, and a table beside it (``.md``); the suite
then runs each family at its chosen rate and initialisation (:func:`experiments.suites.
apply_sweep`), so that the chosen values are part of every run's recorded config.

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
from experiments.recipes import init_alternative
from experiments.suites import RunSpec, Variant

from recurrax.models import FAMILIES

LR_FACTORS = (0.5, 1.0, 2.0)
"""Learning rates tried with each of the two initialisations: these multiples of the recipe's."""
FINE_LR_FACTORS = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0)
"""Learning rates tried by a family without an initialisation choice (the same six trials)."""

FLAGS = flags.FLAGS


def _trial_variant(variant: Variant, family: str, lr: float, init: dict | None) -> Variant:
    optimizer = {
        **variant.family_optimizer,
        family: {**variant.family_optimizer.get(family, {}), "learning_rate": lr},
    }
    model = dict(variant.family_model)
    if init is not None:
        options = {**model.get(family, {}).get("cell_options", {}), **init}
        model[family] = {**model.get(family, {}), "cell_options": options}
    name = f"{variant.name}/{family}-lr{lr:g}" + ("-init" if init is not None else "")
    return dataclasses.replace(variant, name=name, family_optimizer=optimizer, family_model=model)


def trial_specs(variant: Variant, family: str) -> list[tuple[dict[str, Any], RunSpec]]:
    """``[(trial, spec)]``: the six trials of one family on one row (seed 0). A trial is
    ``{"learning_rate": lr, "cell_options": the alternative initialisation or None}``."""
    base = RunSpec(variant, family, 0).config().optimizer.learning_rate
    alternative = init_alternative(variant.task, family)
    if alternative is None:
        grid = [(factor, None) for factor in FINE_LR_FACTORS]
    else:
        grid = [(factor, init) for init in (None, alternative) for factor in LR_FACTORS]
    trials = []
    for factor, init in grid:
        lr = float(f"{base * factor:.6g}")
        spec = RunSpec(_trial_variant(variant, family, lr, init), family, 0)
        trials.append(({"learning_rate": lr, "cell_options": init}, spec))
    return trials


def choose(trials: Sequence[Mapping[str, Any]], recipe_lr: float) -> dict[str, Any]:
    """The trial with the lowest validation loss (``trial["loss"]``); on a tie the recipe's own
    (its learning rate, its initialisation); failed trials (``None`` or NaN) lose. With every
    trial failed, the recipe."""
    recipe = {"learning_rate": recipe_lr, "cell_options": None}
    finite = [t for t in trials if t["loss"] is not None and t["loss"] == t["loss"]]
    if not finite:
        return recipe
    best = min(t["loss"] for t in finite)
    winners = [t for t in finite if t["loss"] == best]
    for t in winners:
        if t["learning_rate"] == recipe_lr and t["cell_options"] is None:
            return recipe
    return {
        "learning_rate": winners[0]["learning_rate"],
        "cell_options": winners[0]["cell_options"],
    }


def sweep(
    variants: Sequence[Variant],
    families: Sequence[str] | None,
    workdir: str | Path,
    *,
    log=runner._print,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Runs the trials of every (row, family) and returns ``{row: {family: record}}`` where a
    record is ``{"recipe": lr, "chosen": {"learning_rate", "cell_options"}, "trials": [{
    "learning_rate", "cell_options", "loss"}]}`` (``loss``: the best validation loss)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in variants:
        for family in variant.families or FAMILIES:
            if families is not None and family not in families:
                continue
            recipe_lr = RunSpec(variant, family, 0).config().optimizer.learning_rate
            trials = trial_specs(variant, family)
            outcomes = runner.execute([spec for _, spec in trials], workdir, log=log)
            records = [
                {**trial, "loss": o.results["valid"]["loss"] if o.results is not None else None}
                for (trial, _), o in zip(trials, outcomes, strict=True)
            ]
            out.setdefault(variant.name, {})[family] = {
                "recipe": recipe_lr,
                "chosen": choose(records, recipe_lr),
                "trials": records,
            }
    return out


def _trial_text(trial: Mapping[str, Any]) -> str:
    init = trial["cell_options"]
    text = f"{trial['learning_rate']:g}"
    return text + (" + " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in sorted(init.items())) if init else "")  # fmt: skip


def table(choices: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        "| row | family | recipe lr | trials: lr [+ init] → best validation loss | chosen |",
        "|---|---|---:|---|---|",
    ]
    for variant, families in choices.items():
        for family, record in families.items():
            trials = "; ".join(
                f"{_trial_text(t)} → {'failed' if t['loss'] is None else format(t['loss'], '.4g')}"
                for t in record["trials"]
            )
            lines.append(
                f"| {variant} | {family} | {record['recipe']:g} | {trials} | "
                f"{_trial_text(record['chosen'])} |"
            )
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
    path.parent.mkdir(parents=True, exist_ok=True)
    runner.write_json(path, stored)
    lines = [
        f"# Learning-rate sweep of the `{suite}` suite",
        "",
        f"Last command: `{stored['command']}` ({stored['date']}, {stored['machine']}). Six "
        "trials per family and row, seed 0, the row's budget and early stopping, scored by the "
        "best validation loss: the recipe's learning rate (`experiments/recipes.py`) × "
        f"{', '.join(f'{f:g}' for f in LR_FACTORS)} with the recipe's initialisation and with "
        "the family's one alternative (`recipes.init_alternative`), or × "
        f"{', '.join(f'{f:g}' for f in FINE_LR_FACTORS)} for a family without one. The suite "
        "runs each family at its chosen learning rate and initialisation.",
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
