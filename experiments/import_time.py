"""Time ``import recurrax`` in fresh interpreters, against ``import jax`` alone.

Each statement runs in a new Python process (nothing cached in memory), the candidates interleaved
round by round so that a noisy machine slows them alike; the table gives the median and the
interquartile range in milliseconds, and what ``import recurrax`` costs beyond JAX.

    .venv/bin/python experiments/import_time.py --rounds=15
    .venv/bin/python experiments/import_time.py --src=/path/to/other/checkout/src   # compare trees
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 15, "Fresh processes per statement.", lower_bound=3)
flags.DEFINE_string("src", None, "A source tree to import recurrax from (default: the installed).")

STATEMENTS = {
    "import jax": "import jax",
    "import recurrax": "import recurrax",
    "import recurrax; recurrax.nn": "import recurrax; recurrax.nn",
    "import recurrax; recurrax.train": "import recurrax; recurrax.train",
}


def time_once(statement: str, env: dict[str, str]) -> float:
    """Seconds that ``statement`` takes in a fresh interpreter (measured inside it)."""
    code = f"import time; t0 = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t0)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    env = dict(os.environ)
    if FLAGS.src:
        if not os.path.isdir(os.path.join(FLAGS.src, "recurrax")):
            raise app.UsageError(f"--src must hold the recurrax package; got {FLAGS.src!r}")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [FLAGS.src, env.get("PYTHONPATH")]))
    names = list(STATEMENTS)
    times = {name: [] for name in names}
    for r in range(FLAGS.rounds):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]  # each round starts one statement later
            times[name].append(1000 * time_once(STATEMENTS[name], env))
    jax_median = float(np.median(times["import jax"]))
    print(f"source: {FLAGS.src or 'installed recurrax'}; {FLAGS.rounds} fresh processes each\n")
    print("| statement | median ms | IQR ms | beyond `import jax` ms |")
    print("|---|---|---|---|")
    for name in names:
        q1, median, q3 = np.percentile(times[name], [25, 50, 75])
        print(f"| `{name}` | {median:.0f} | {q1:.0f}–{q3:.0f} | {median - jax_median:+.0f} |")


if __name__ == "__main__":
    app.run(main)
