"""A suite's results kept per row in committed files, so that a report can be assembled from parts.

A long suite (``medium``) is run a few rows at a time (``compare.py --suite=medium
--tasks=parity``), on different days. After each part, :func:`save_parts` writes one JSON file per
row (variant) into the suite's parts directory: every run's stored record (``results.json``: the
resolved config and its hash, metrics, steps), its validation learning curve, its accuracy at
fixed lengths, its wall time, and the command, date and machine that made it (per run: one row
can hold runs made on different days or machines, e.g. the costly family on an accelerator). :func:`load_parts` reads them
back as :class:`experiments.runner.Outcome` values for the rows this invocation did not run, so
the report covers every row that has ever been run, without the run directories.

A stored run stands for a run of the suite only while its config hash equals the hash of the
suite's config for it now; a part whose runs no longer match is left out of the report and named
(:func:`load_parts` returns it among the stale), never mixed in.
"""

from __future__ import annotations

import datetime
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.runner import Outcome, machine_description, read_json, write_json
from experiments.suites import RunSpec

from recurrax.run import config_hash

PART_VERSION = 1
PROVENANCE = ("date", "command", "machine")
"""What each stored run records about how it was made (a run of an older part file without them
takes its part's date and command, and an unknown machine)."""


def part_path(directory: str | os.PathLike, variant: str) -> Path:
    return Path(directory) / f"{variant}.json"


def save_parts(
    outcomes: Sequence[Outcome],
    directory: str | os.PathLike,
    *,
    command: str,
    machine: str | None = None,
) -> list[Path]:
    """Writes one part file per variant of ``outcomes`` (runs with results only); returns them.

    A variant none of whose runs has results, or whose runs the part file already holds (reused
    runs of the same config hash), keeps its earlier part file (and its date and command), if any;
    a part of some families or seeds keeps the stored runs of the others. Each run records the
    ``command``, date and ``machine`` (default: this one, :func:`runner.machine_description`) that
    made it; a reused run keeps its own.
    """
    machine = machine or machine_description()
    by_variant: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.results is not None:
            by_variant.setdefault(outcome.spec.variant.name, []).append(outcome)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    paths = []
    for variant, group in by_variant.items():
        path = part_path(directory, variant)
        part = read_json(path) if path.exists() else {}
        earlier = part.get("runs", [])
        held = {(r["family"], r["seed"]): r["results"].get("config_hash") for r in earlier}
        if path.exists() and all(
            o.status == "reused"
            and held.get((o.spec.family, o.spec.seed)) == o.results.get("config_hash")
            for o in group
        ):
            continue
        made = {(r["family"], r["seed"]): _provenance(r, part) for r in earlier}
        runs = [
            {
                **(
                    made[(o.spec.family, o.spec.seed)]
                    if o.status == "reused" and (o.spec.family, o.spec.seed) in made
                    else {"date": date, "command": command, "machine": machine}
                ),
                "family": o.spec.family,
                "seed": o.spec.seed,
                "results": o.results,
                "valid_curve": o.valid_curve,
                "length_eval": o.length_eval,
                "state_size": o.state_size,
                "wall_seconds": o.wall_seconds,
                "metric": o.metric,
                "baseline": o.baseline,
            }
            for o in group
        ]
        now = {(r["family"], r["seed"]) for r in runs}  # keep the stored runs of the others
        runs += [
            {**made[key], **r} for r in earlier if (key := (r["family"], r["seed"])) not in now
        ]
        write_json(
            path,
            {"version": PART_VERSION, "variant": variant, "date": date, "command": command,
             "runs": runs},
        )  # fmt: skip
        paths.append(path)
    return paths


def _provenance(run: dict[str, Any], part: dict[str, Any]) -> dict[str, str]:
    """How a stored run was made: its own record, else its part's (older files), else "—"."""
    return {k: run.get(k, part.get(k, "—")) for k in PROVENANCE}


def load_parts(
    specs: Sequence[RunSpec], directory: str | os.PathLike
) -> tuple[list[Outcome], list[dict[str, Any]], list[str]]:
    """The stored outcomes of ``specs`` from ``directory``, the parts used, and the stale ones.

    Returns ``(outcomes, parts, stale)``: an :class:`Outcome` (status ``"reused"``) for every spec
    whose part holds a run with the same config hash; ``parts`` holds ``{"variant", "date",
    "command", "machine"}`` of every run used; ``stale`` names the variants whose part holds runs
    of another config (left out).
    """
    directory = Path(directory)
    wanted: dict[str, list[RunSpec]] = {}
    for spec in specs:
        wanted.setdefault(spec.variant.name, []).append(spec)
    outcomes, parts, stale = [], [], []
    for variant, group in wanted.items():
        path = part_path(directory, variant)
        if not path.exists():
            continue
        part = read_json(path)
        if part.get("version") != PART_VERSION:
            stale.append(f"{variant} (part format {part.get('version')})")
            continue
        stored = {(r["family"], r["seed"]): r for r in part["runs"]}
        for spec in group:
            run = stored.get((spec.family, spec.seed))
            if run is None:
                continue
            if run["results"].get("config_hash") != config_hash(spec.config()):
                stale.append(f"{variant}/{spec.family}/seed{spec.seed}")
                continue
            parts.append({"variant": variant, **_provenance(run, part)})
            outcomes.append(
                Outcome(
                    spec,
                    directory / variant,
                    "reused",
                    results=run["results"],
                    wall_seconds=run["wall_seconds"],
                    length_eval=run["length_eval"],
                    state_size=run["state_size"],
                    metric=run["metric"],
                    baseline=run["baseline"],
                    valid_curve=[tuple(point) for point in run.get("valid_curve") or []],
                )
            )
    return outcomes, parts, stale


PER_RUN_FLAGS = ("--seeds", "--workdir", "--parts_dir", "--report", "--csv",
                 "--plots_dir", "--compilation_cache")  # fmt: skip
"""Flags that only say which seeds a command ran, or where it wrote: commands that differ only in
them are one line of :func:`describe`."""


def _shared_command(command: str) -> str:
    """``command`` without :data:`PER_RUN_FLAGS` (``--flag=value`` or ``--flag value``)."""
    words, out, skip = shlex.split(command), [], False
    for word in words:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in PER_RUN_FLAGS:
            skip = "=" not in word
            continue
        out.append(word)
    return shlex.join(out)


def describe(parts: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: which commands made which rows (and how many runs), when, on which machine.

    Commands that differ only in :data:`PER_RUN_FLAGS` (one command per row or seed) share a line,
    with the span of their dates."""
    lines = ["| rows | runs | date | command | machine |", "|---|---:|---|---|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for part in parts:
        key = (_shared_command(part["command"]), part.get("machine", "—"))
        groups.setdefault(key, []).append(part)
    for (command, machine), group in sorted(
        groups.items(), key=lambda g: min(p["date"] for p in g[1])
    ):
        rows = ", ".join(dict.fromkeys(p["variant"] for p in group))
        dates = sorted(p["date"] for p in group)
        date = dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}"
        varied = sorted({p["command"] for p in group})
        note = "" if len(varied) == 1 else f" (×{len(varied)}: one per `--seeds`)"
        lines.append(f"| {rows} | {len(group)} | {date} | `{command}`{note} | {machine} |")
    return lines
