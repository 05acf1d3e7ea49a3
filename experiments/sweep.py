"""The same tuning budget for every family: learning rate × initialisation per task, on validation.

Each family starts from its recipe (``experiments/recipes.py``: the papers' initialisation and
learning rate). For every task of a suite and every family, the sweep trains six trials — the same
number for every family — on the task's first row (its shortest setting, e.g. ``adding-T100`` for
adding), with that row's budget, early stopping and seed 0: the recipe's learning rate ×
:data:`LR_FACTORS` with the recipe's initialisation and with the family's one alternative
(``recipes.init_alternative``), or × :data:`FINE_LR_FACTORS` for a family without one. Both grids
span the same range, a factor of 3 either side of the recipe. It keeps the trial whose best
validation loss is lowest (ties: the recipe's). The choices go to
``experiments/results/sweep-<suite>.json`` with every trial's validation loss, and a table beside
it (``.md``); the suite then runs each family at its chosen rate and initialisation on every row
of the task (:func:`experiments.suites.apply_sweep`), so that the chosen values are part of every
run's recorded config.

    .venv/bin/python experiments/sweep.py --suite=small                      # every task
    .venv/bin/python experiments/sweep.py --suite=small --tasks=adding --families=lru,s5

A sweep of some tasks or families updates only those entries of the file. Test numbers are never
looked at.
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

LR_FACTORS = (1 / 3, 1.0, 3.0)
"""Learning rates tried with each of the two initialisations: these multiples of the recipe's."""
FINE_LR_FACTORS = tuple(3 ** ((2 * k - 5) / 5) for k in range(6))
"""Learning rates tried by a family without an initialisation choice (the same six trials): six
multiples of the recipe's, evenly spaced in log over the same range [1/3, 3]."""

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
) -> dict[str, dict[str, Any]]:
    """Runs the trials of every (row, family), one row per task, and returns ``{task: {"row":
    name, "families": {family: record}}}`` where a record is ``{"recipe": lr, "chosen":
    {"learning_rate", "cell_options"}, "trials": [{"learning_rate", "cell_options", "loss"}]}``
    (``loss``: the best validation loss)."""
    tasks = [v.task for v in variants]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"variants: expected one row per task; got tasks {tasks}")
    out: dict[str, dict[str, Any]] = {}
    for variant in variants:
        records_by_family = {}
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
            records_by_family[family] = {
                "recipe": recipe_lr,
                "chosen": choose(records, recipe_lr),
                "trials": records,
            }
        out[variant.task] = {"row": variant.name, "families": records_by_family}
    return out


def rows_to_sweep(variants: Sequence[Variant], tasks: Sequence[str] | None) -> list[Variant]:
    """The first main row of each task (of ``tasks``, task or row names, when given)."""
    first: dict[str, Variant] = {}
    for v in variants:
        if v.group == "main":
            first.setdefault(v.task, v)
    if tasks is None:
        return list(first.values())
    known = set(first) | {v.name for v in first.values()}
    unknown = sorted(set(tasks) - known)
    if unknown:
        raise ValueError(f"--tasks must be among {sorted(known)}; got unknown {unknown}")
    return [v for v in first.values() if v.task in tasks or v.name in tasks]


def _trial_text(trial: Mapping[str, Any]) -> str:
    init = trial["cell_options"]
    text = f"{trial['learning_rate']:g}"
    return text + (" + " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in sorted(init.items())) if init else "")  # fmt: skip


def table(swept: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "| task (row trained) | family | recipe lr | trials: lr [+ init] → best validation loss "
        "| chosen |",
        "|---|---|---:|---|---|",
    ]
    for task, entry in swept.items():
        for family, record in entry["families"].items():
            trials = "; ".join(
                f"{_trial_text(t)} → {'failed' if t['loss'] is None else format(t['loss'], '.4g')}"
                for t in record["trials"]
            )
            lines.append(
                f"| {task} ({entry['row']}) | {family} | {record['recipe']:g} | {trials} | "
                f"{_trial_text(record['chosen'])} |"
            )
    return lines


def markdown(suite: str, stored: Mapping[str, Any]) -> list[str]:
    """The sweep file's table (``sweep-<suite>.md``): the grid, and every trial and choice."""
    return [
        f"# Learning-rate sweep of the `{suite}` suite",
        "",
        f"Last command: `{stored['command']}` ({stored['date']}, {stored['machine']}). Six "
        "trials per family and task, on the task's first row (every row of the task runs at the "
        "choice), seed 0, the row's budget and early stopping, scored by the best validation "
        "loss: the recipe's learning rate (`experiments/recipes.py`) × "
        f"{', '.join(f'{f:.3g}' for f in LR_FACTORS)} with the recipe's initialisation and with "
        "the family's one alternative (`recipes.init_alternative`), or × "
        f"{', '.join(f'{f:.3g}' for f in FINE_LR_FACTORS)} for a family without one. The suite "
        "runs each family at its chosen learning rate and initialisation.",
        "",
        *table(stored["tasks"]),
    ]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    suite = FLAGS.suite
    if suite not in suites.SWEPT_SUITES:
        raise app.UsageError(f"--suite must be one of {tuple(suites.SWEPT_SUITES)}; got {suite!r}")
    try:
        variants = rows_to_sweep(suites.SWEPT_SUITES[suite](), FLAGS.tasks)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    if FLAGS.families is not None and set(FLAGS.families) - set(FAMILIES):
        raise app.UsageError(f"--families must be among {FAMILIES}; got {FLAGS.families}")
    path = Path(suites.SWEEP_FILES[suite])
    swept = sweep(variants, FLAGS.families, FLAGS.workdir or f"workdirs/sweep-{suite}")
    stored = runner.read_json(path) if path.exists() else {"tasks": {}}
    for task, entry in swept.items():
        old = stored["tasks"].get(task, {"row": entry["row"], "families": {}})
        if old["row"] != entry["row"]:
            old = {"row": entry["row"], "families": {}}  # another row: its trials do not compare
        old["families"].update(entry["families"])
        stored["tasks"][task] = old
    stored["command"] = shlex.join(["python", *sys.argv])
    stored["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    stored["machine"] = platform.processor() or platform.machine()
    path.parent.mkdir(parents=True, exist_ok=True)
    runner.write_json(path, stored)
    lines = markdown(suite, stored)
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    flags.DEFINE_enum("suite", "small", ["small", "medium"], "the suite whose rows are swept")
    flags.DEFINE_list("tasks", None, "tasks (or their first rows' names); default: every task")
    flags.DEFINE_list("families", None, "families; default: each row's")
    flags.DEFINE_string("workdir", None, "trial runs; default workdirs/sweep-<suite>")
    app.run(main)
