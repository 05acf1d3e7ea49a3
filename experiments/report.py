"""The comparison's CSV (one row per run, every setting from the run's own stored record) and its
markdown report (results with 95% intervals and at-chance marks, settings, cost, ordering checks,
length and MQAR tables, gradient norms, real-data tasks, plots)."""

from __future__ import annotations

import csv
import datetime
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from experiments.checks import (
    CHECKS,
    NA,
    ORDERINGS,
    TARGETS,
    fmt,
    mqar_curves,
    run_checks,
    variants_of,
)
from experiments.parts import describe as describe_parts
from experiments.runner import REAL_DATA_TASKS, Outcome, duration, machine_description
from experiments.stats import (
    SINGLE_SEED_TOLERANCE,
    Summaries,
    Summary,
    bold_family,
    headline,
    lower_is_better,
    metric_key,
)
from experiments.suites import FULL, RunSpec, Variant

from recurrax.models import FAMILIES

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
    "max_steps",
    "stopped_early",
    "evaluated_step",
    "init",
    "batch_size",
    "width",
    "depth",
    "learning_rate",
    "weight_decay",
    "schedule",
    "test_examples",
    "config_hash",
    "wall_seconds",
    "train_seconds",
    "by_length",
    "length_eval",
    "reason",
    "rundir",
)


def write_csv(outcomes: Sequence[Outcome], path: Path) -> Path:
    """One row per run. Settings (batch, width, depth, lr, steps, ...) come from the run's stored
    record (``results.json``), never from the current suite; a run without one leaves them empty."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for o in outcomes:
            results = o.results or {}
            settings = o.settings
            metric = o.metric or ""
            row = {
                "variant": o.spec.variant.name,
                "task": o.spec.task,
                "family": o.spec.family,
                "seed": settings.get("seed", o.spec.seed),
                "group": o.spec.variant.group,
                "status": o.status,
                "metric": metric_key(metric) if metric else "",
                "value": o.value,
                "baseline": o.baseline,
                "valid_value": headline(results["valid"], metric) if results else None,
                "accuracy": results.get("test", {}).get("accuracy") if results else None,
                "param_count": results.get("param_count"),
                "state_size": o.state_size,
                "steps": settings.get("steps"),
                "max_steps": settings.get("max_steps"),
                "stopped_early": settings.get("stopped_early"),
                "evaluated_step": settings.get("evaluated_step"),
                "init": settings.get("init"),
                "batch_size": settings.get("batch_size"),
                "width": settings.get("width"),
                "depth": settings.get("depth"),
                "learning_rate": settings.get("learning_rate"),
                "weight_decay": settings.get("weight_decay"),
                "schedule": settings.get("schedule"),
                "test_examples": settings.get("test_examples"),
                "config_hash": results.get("config_hash"),
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


def cell_text(cell: Summary) -> str:
    """``mean [low, high]`` (95% interval; one seed: the mean alone), ``†`` when at chance."""
    text = fmt(cell.mean)
    interval = cell.interval
    if interval is not None:
        text += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    if cell.at_chance:
        text += " †"
    return text


def _short_count(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def _g(value) -> str:
    return "—" if value is None else f"{value:g}"


def results_lines(
    main: Sequence[str],
    by_variant: Mapping[str, Sequence[Outcome]],
    summaries: Summaries,
    families: Sequence[str],
) -> list[str]:
    lines = [
        "| task | metric | chance | " + " | ".join(families) + " |",
        "|---|---|---:|" + "---:|" * len(families),
    ]
    for variant in main:
        row = summaries.get(variant, {})
        first = by_variant[variant][0]
        metric = next((c.metric for c in row.values()), first.metric)
        if metric is None:
            status = first.status
            lines.append(f"| {variant} | — | — | " + " | ".join([status] * len(families)) + " |")
            continue
        arrow = "↓" if lower_is_better(metric) else "↑"
        baseline = next((c.baseline for c in row.values()), first.baseline)
        bold = bold_family(row)
        cells = []
        for family in families:
            if family in row:
                text = cell_text(row[family])
                cells.append(f"**{text}**" if family == bold else text)
            else:
                statuses = {o.status for o in by_variant[variant] if o.spec.family == family}
                cells.append(", ".join(sorted(statuses)) if statuses else "")
        lines.append(
            f"| {variant} | {metric_key(metric)} {arrow} | {fmt(baseline)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def _stopped_early(settings: Mapping) -> int:
    """Seeds that stopped before their step budget (early stopping)."""
    steps, budget = settings.get("steps"), settings.get("max_steps")
    steps = steps if isinstance(steps, tuple) else (steps,)
    return sum(s is not None and budget is not None and s < budget for s in steps)


def _per_seed(values) -> str:
    values = [v for v in (values if isinstance(values, tuple) else (values,)) if v is not None]
    return ", ".join(str(v) for v in values) if values else "—"


def settings_lines(main: Sequence[str], summaries: Summaries) -> list[str]:
    """Per (task, family): the settings of its runs, from their stored records."""
    lines = [
        "| task | family | depth | width | parameters | init | lr | schedule | weight decay "
        "| max steps | patience | steps trained | evaluated step | batch | test examples | seeds |",
        "|---|---|---:|---:|---:|---|---:|---|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for variant in main:
        row = summaries.get(variant, {})
        for family in FAMILIES:
            if family not in row:
                continue
            s = row[family].settings
            seeds = ",".join(str(k) for k in s.get("seeds", ()))
            lines.append(
                f"| {variant} | {family} | {s.get('depth', '—')} | {s.get('width', '—')} | "
                f"{_short_count(s.get('param_count'))} | {s.get('init') or '—'} | "
                f"{_g(s.get('learning_rate'))} | "
                f"{s.get('schedule') or '—'} | {_g(s.get('weight_decay'))} | "
                f"{s.get('max_steps') or '—'} | {s.get('patience') or 'off'} | "
                f"{_per_seed(s.get('steps'))} | {_per_seed(s.get('evaluated_step'))} | "
                f"{s.get('batch_size', '—')} | {s.get('test_examples', '—')} | {seeds} |"
            )
    return lines


def _counterpart(variant: str, full: Sequence[Variant]) -> Variant | None:
    """The ``full`` suite's variant for a row: the same name, else the first of the same task."""
    task = variant.split("-")[0]
    same = [v for v in full if v.name == variant] or [v for v in full if v.task == task]
    return same[0] if same else None


def _span(values) -> str:
    values = sorted({v for v in values if v is not None})
    if not values:
        return "—"
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def gap_lines(main: Sequence[str], summaries: Summaries) -> list[str]:
    """Per row: our setting beside the published one (the ``full`` suite's variant of the task,
    :data:`experiments.suites.FULL`), the differences named, and the published result."""
    lines = [
        "| task | ours | published | gap | published result |",
        "|---|---|---|---|---|",
    ]
    expected: dict[str, str] = {}
    for check in CHECKS:
        expected[check.task] = "; ".join(filter(None, (expected.get(check.task), check.expected)))
    for variant in main:
        row = summaries.get(variant, {})
        if not row:
            continue
        full = _counterpart(variant, FULL)
        if full is None:
            continue
        settings = [c.settings for c in row.values()]
        ours_task = next(iter(row.values())).task_config
        published = [RunSpec(full, f, 0).config() for f in row]
        theirs_task = published[0].task.to_dict()
        ours = {
            "width": _span(s.get("width") for s in settings),
            "depth": _span(s.get("depth") for s in settings),
            "steps": _span(s.get("max_steps") for s in settings),
            "batch": _span(s.get("batch_size") for s in settings),
        }
        theirs = {
            "width": _span(c.model.width for c in published),
            "depth": _span(c.model.num_layers for c in published),
            "steps": _span(c.train.num_steps for c in published),
            "batch": _span(c.train.batch_size for c in published),
        }
        for field in sorted(set(ours_task) & set(theirs_task)):
            a, b = ours_task[field], theirs_task[field]
            if isinstance(a, int | float | str | bool) and a != b and field != "name":
                ours[field], theirs[field] = str(a), str(b)
        gap = [f"{k} {ours[k]} vs {theirs[k]}" for k in ours if ours[k] != theirs[k]]
        lines.append(
            f"| {variant} | " + ", ".join(f"{k} {v}" for k, v in ours.items()) + " | "
            + ", ".join(f"{k} {v}" for k, v in theirs.items()) + f" | {'; '.join(gap) or 'none'} | "
            f"{expected.get(full.task, '—')} |"
        )  # fmt: skip
    if len(lines) == 2:
        return ["None of these rows' tasks has a published configuration (the `full` suite)."]
    return lines


def real_data_lines(outcomes: Sequence[Outcome]) -> list[str]:
    """Which real-data tasks ran and which were skipped for missing data."""
    by_variant: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.spec.task in REAL_DATA_TASKS:
            by_variant.setdefault(o.spec.variant.name, []).append(o)
    lines = [
        "",
        "## Real-data tasks",
        "",
        f"Tasks that read real data ({', '.join(REAL_DATA_TASKS)}; `make data` installs what "
        "packages ship) run only when their data are found.",
        "",
    ]
    if not by_variant:
        return [*lines, "None of this comparison's runs is a real-data task."]
    lines += ["| task | ran | skipped (missing data) | reason |", "|---|---:|---:|---|"]
    for variant, group in by_variant.items():
        ran = sum(o.status in ("trained", "reused") for o in group)
        skipped = [o for o in group if o.status == "skipped"]
        reasons = sorted({o.reason or "" for o in skipped})
        lines.append(f"| {variant} | {ran} | {len(skipped)} | {'; '.join(reasons) or '—'} |")
    return lines


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
    parts: Sequence[Mapping[str, str]] = (),
) -> Path:
    """The markdown report: header, results, settings, cost, ordering checks, curves, plots."""
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
        f"reused from earlier results with the same config hash, {counts['skipped']} skipped, "
        f"{counts['failed']} failed); sum of run wall times {duration(run_seconds)}, this command "
        f"{duration(elapsed)}",
        f"- Every run: `{csv_path.name}`; suite definition: `experiments/suites.py`",
        "",
        *(
            [
                "Assembled from parts (`experiments/parts.py`): each row is run by its own command "
                "and kept in a part file; the rows, when they ran and how:",
                "",
                *describe_parts(parts),
                "",
            ]
            if parts
            else []
        ),
        "## Results",
        "",
        "Headline metric on the test split: mean over seeds and, with two seeds or more, its 95% "
        "Student-t interval `[low, high]` (one seed: no interval). ↓ lower is better, ↑ higher is "
        "better. *chance*: the score of a predictor that ignores the inputs' content (adding: "
        "always 1, MSE 1/6; copy memory: 10·ln 8/(T+20); ListOps: the majority class; char_lm: "
        "unigram entropy; classification: 1/classes; transduction (exact match): copying the "
        "source; the table is `CHANCE` in `experiments/stats.py`, else the task's baseline). Parity and S5 are scored on the unseen test lengths.",
        "",
        *results_lines(main, by_variant, summaries, families),
        "",
        "†: at chance: the 95% interval reaches the chance score (or is worse); with one seed, "
        f"the value is within {SINGLE_SEED_TOLERANCE:.0%} of chance or worse. Bold: the best "
        "family of the row, only when it is not at chance and its interval does not overlap the "
        "runner-up's (so never with one seed).",
        "",
        "## Settings",
        "",
        "Per task and family, from the runs' stored records (`results.json`): layers, width, "
        "parameters, the cell options that differ from the cell's defaults (`init`; the recipes "
        "of `experiments/recipes.py`), peak learning rate, schedule, weight decay, the step "
        "budget, early-stopping patience (validations without a new best validation loss), the "
        "steps each seed trained and the step whose checkpoint (the best by validation loss) the "
        "test scores, batch size, test-set size (examples in the test evaluation) and seeds.",
        "",
        *settings_lines(main, summaries),
        "",
        "## Published configuration beside ours",
        "",
        "Per row, our setting (from the runs' records; ranges over families) beside the published "
        "one (the `full` suite of `experiments/suites.py`, which follows the papers), the "
        "differences named, and the published results or expectations of the task. Task fields "
        "that differ (length, delay, vocabulary, sizes) are listed with the model and budget.",
        "",
        *gap_lines(main, summaries),
        "",
        "## Cost",
        "",
        "Per cell: parameters · mean wall seconds per run (training, evaluation and checkpoints) · "
        "seeds · how many seeds stopped early (`k/n flat`: their validation loss stopped "
        "improving, so the learning curve had flattened; the others trained their whole step "
        "budget and may still have been improving: see the learning curves).",
        "",
        "| task | " + " | ".join(families) + " |",
        "|---|" + "---|" * len(families),
    ]
    for variant in main:
        row = summaries.get(variant, {})
        cells = [
            f"{_short_count(row[f].param_count)} · {row[f].seconds:.0f}s · {row[f].n} · "
            f"{_stopped_early(row[f].settings)}/{row[f].n} flat"
            if f in row
            else ""
            for f in families
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Every family runs at the same width; Mamba at its standard size (`d_state` 16, "
        "`expand` 2; `FAMILY_MODEL` in `experiments/suites.py`). No family is shrunk for speed.",
        "",
        "## Expected orderings (published or predicted)",
        "",
        "Each expected ordering is checked by a rule over the table above (`CHECKS`, or the "
        "suite's own in `ORDERINGS`, in `experiments/checks.py`). *yes*: reproduced; *no*: not reproduced at this budget, or "
        "every family the rule compares is at chance; *n/a*: the runs it needs are missing.",
        "",
        "| row | task | expected | rule | reproduced | numbers |",
        "|---:|---|---|---|---|---|",
    ]
    results = run_checks(summaries, ORDERINGS.get(suite, CHECKS))
    for check, result in results:
        lines.append(
            f"| {check.row} | {check.task} | {check.expected} | {check.full_rule} | "
            f"**{result.status}** | {result.evidence} |"
        )
    tally = {s: sum(r.status == s for _, r in results) for s in ("yes", "no", NA)}
    lines += [
        "",
        f"Reproduced {tally['yes']} of {tally['yes'] + tally['no']} checkable orderings "
        f"({tally[NA]} not checkable with these runs).",
    ]
    targets = run_checks(summaries, TARGETS.get(suite, ()))
    if targets:
        lines += [
            "",
            f"## Targets of the `{suite}` suite",
            "",
            "Each target as a rule over the table (`TARGETS` in `experiments/checks.py`); *no* "
            "also when every family it compares is at chance.",
            "",
            "| row | task | target | rule | met | numbers |",
            "|---:|---|---|---|---|---|",
        ]
        for check, result in targets:
            lines.append(
                f"| {check.row} | {check.task} | {check.expected} | {check.full_rule} | "
                f"**{result.status}** | {result.evidence} |"
            )
    lines += length_tables(summaries)
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
                    + ", ".join(f"{size}: {fmt(acc)}" for size, acc in points)
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
    lines += real_data_lines(outcomes)
    skipped = [o for o in outcomes if o.status == "skipped"]
    if skipped:
        lines += ["", "## Skipped", "", "| task | runs | reason |", "|---|---:|---|"]
        reasons: dict[tuple[str, str], int] = {}
        for o in skipped:
            key = (o.spec.variant.name, o.reason or "")
            reasons[key] = reasons.get(key, 0) + 1
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


def length_tables(summaries: Summaries) -> list[str]:
    lines = []
    for task, field, title in (
        ("induction_heads", "by_length", "Induction heads: accuracy against test length"),
        ("parity", "length_eval", "Parity: accuracy at fixed lengths"),
        ("s5_word", "length_eval", "S5 word problem: per-step accuracy at fixed lengths"),
    ):
        for variant in variants_of(summaries, task):
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
                        + " | ".join(fmt(row[family].get(L)) for L in lengths)
                        + " |"
                    )
    return lines
