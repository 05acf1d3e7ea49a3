"""Gradient norms at initialisation, per parameter: does one parameter dominate the clipping norm?

Training clips the global gradient norm to ``config.optimizer.clip_norm``. When one parameter's
gradient makes up most of that norm at initialisation, clipping scales every other parameter's
step down with it, and that family effectively trains at a smaller learning rate than the others.
For every task and family at the default configuration this script computes the loss gradient on
one training batch and reports the global norm, the share of the squared norm held by the largest
parameter (and which one), and the norms of the recurrence group (the parameters trained with
their own learning rate, :func:`recurrax.optim.recurrence_param_labels`) and of the rest.

    .venv/bin/python experiments/init_gradients.py                       # every task and family
    .venv/bin/python experiments/init_gradients.py --tasks=adding,parity --families=lru,mamba

The table goes to stdout and to ``--output``. A row is flagged when the largest parameter holds
more than ``--dominance`` of the squared norm while the global norm exceeds the clipping norm.
"""

from __future__ import annotations

import datetime
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for experiments.*

import jax
import jax.numpy as jnp
from absl import app, flags
from experiments.recipes import apply_recipe

from recurrax import tasks
from recurrax.models import FAMILIES, make_cell
from recurrax.optim import RECURRENCE, recurrence_param_labels
from recurrax.run import Experiment, default_config
from recurrax.tasks.data_files import MissingDataError
from recurrax.train import loss_and_sums

FLAGS = flags.FLAGS
flags.DEFINE_list("tasks", None, "Tasks (default: every registered task).")
flags.DEFINE_list("families", None, "Families (default: all).")
flags.DEFINE_integer("seed", 0, "Initialisation seed.")
flags.DEFINE_bool(
    "recipes", True, "Apply each family's per-task recipe (experiments/recipes.py) first."
)
flags.DEFINE_float("dominance", 0.5, "Flag a parameter holding more than this share of ||g||^2.")
flags.DEFINE_string(
    "output", "experiments/results/init_gradients.md", "Where the table is written."
)


def gradient_report(task: str, family: str, seed: int, recipes: bool = True) -> dict:
    """The norms of one (task, family) at its small configuration (with its recipe)."""
    config = default_config(task, family, "small")
    if recipes:
        apply_recipe(config, family)
    experiment = Experiment(config)
    model = experiment.model
    params = model.init(jax.random.key(seed))
    batch = experiment.batch("train", 0)
    grads = jax.jit(jax.grad(lambda p, b: loss_and_sums(model, p, b)[0]))(params, batch)
    paths = jax.tree_util.tree_flatten_with_path(grads)[0]
    squares = {jax.tree_util.keystr(path): float(jnp.sum(jnp.abs(g) ** 2)) for path, g in paths}
    labels = jax.tree.leaves(recurrence_param_labels(params, [make_cell(experiment.model_config)]))
    total = sum(squares.values())
    recurrence = sum(
        s for s, label in zip(squares.values(), labels, strict=True) if label == RECURRENCE
    )
    largest = max(squares, key=squares.get)
    return {
        "norm": total**0.5,
        "clip": config.optimizer.clip_norm,
        "largest": largest,
        "share": squares[largest] / total if total else 0.0,
        "recurrence": recurrence**0.5,
        "rest": (total - recurrence) ** 0.5,
    }


def main(argv):
    del argv
    task_names = FLAGS.tasks or sorted(tasks.names())
    families = FLAGS.families or list(FAMILIES)
    for name in task_names:
        tasks.get(name)  # rejects an unknown task before any work
    for family in families:
        if family not in FAMILIES:
            raise app.UsageError(f"--families must be among {FAMILIES}; got {family!r}")
    lines = [
        f"Gradient norms at initialisation (seed {FLAGS.seed}, one training batch, small "
        f"configurations, {'with each family' + chr(39) + 's recipe' if FLAGS.recipes else 'library defaults'}); {platform.processor() or platform.machine()}, "
        f"{datetime.date.today().isoformat()}. Command: `experiments/init_gradients.py`.",
        "",
        "| task | family | ‖g‖ | clip | largest parameter | its share of ‖g‖² | recurrence ‖g‖ "
        "| rest ‖g‖ | flag |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in task_names:
        for family in families:
            try:
                r = gradient_report(name, family, FLAGS.seed, FLAGS.recipes)
            except MissingDataError as error:  # a real-data task whose data is not installed
                line = f"| {name} | {family} | skipped: {error} | | | | | | |"
            else:
                clipped = r["clip"] is not None and r["norm"] > r["clip"]
                flag = "dominates" if clipped and r["share"] > FLAGS.dominance else ""
                line = (
                    f"| {name} | {family} | {r['norm']:.3g} | {r['clip']} | `{r['largest']}` | "
                    f"{r['share']:.2f} | {r['recurrence']:.3g} | {r['rest']:.3g} | {flag} |"
                )
            lines.append(line)
            print(line, flush=True)
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    app.run(main)
