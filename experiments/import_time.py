"""Time ``import recurrax`` in fresh interpreters, against ``import jax`` alone.

Each statement runs in a new Python process (nothing cached in memory). The candidates, every
statement of every source tree given, are interleaved round by round (each round starting one
candidate later) so that a noisy machine slows them alike; the table gives the median and the
interquartile range in milliseconds, and what each costs beyond ``import jax`` in the same run.

    .venv/bin/python experiments/import_time.py --rounds=15
    .venv/bin/python experiments/import_time.py --src=/other/checkout/src --src=src   # compare
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 15, "Fresh processes per candidate.", lower_bound=3)
flags.DEFINE_multi_string(
    "src", [], "Source trees to import recurrax from (default: the installed package)."
)

STATEMENTS = (
    "import jax",
    "import recurrax",
    "import recurrax; recurrax.nn",
    "import recurrax; recurrax.train",
)


def time_once(statement: str, env: dict[str, str]) -> float | str:
    """Seconds that ``statement`` takes in a fresh interpreter (measured inside it), or the
    error it ends with."""
    code = f"import time; t0 = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t0)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        return out.stderr.strip().splitlines()[-1].split(":")[0]
    return float(out.stdout.strip().splitlines()[-1])


def environment(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        if not os.path.isdir(os.path.join(src, "recurrax")):
            raise app.UsageError(f"--src must hold the recurrax package; got {src!r}")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def main(argv):
    del argv
    sources = FLAGS.src or [None]
    envs = {src: environment(src) for src in sources}
    candidates = [(src, s) for src in sources for s in STATEMENTS]
    times = {c: [] for c in candidates}
    for r in range(FLAGS.rounds):
        for i in range(len(candidates)):
            src, statement = candidates[(i + r) % len(candidates)]
            times[(src, statement)].append(time_once(statement, envs[src]))
    print(f"{FLAGS.rounds} fresh processes per candidate, interleaved\n")
    print("| source | statement | median ms | IQR ms | beyond `import jax` ms |")
    print("|---|---|---|---|---|")
    for src, statement in candidates:
        label = src or "installed"
        failures = sorted({t for t in times[(src, statement)] if isinstance(t, str)})
        if failures:
            print(f"| {label} | `{statement}` | fails: {', '.join(failures)} | | |")
            continue
        jax_ms = 1000 * float(np.median(times[(src, "import jax")]))
        q1, median, q3 = np.percentile(np.array(times[(src, statement)]) * 1000, [25, 50, 75])
        print(
            f"| {label} | `{statement}` | {median:.0f} | {q1:.0f}–{q3:.0f} | {median - jax_ms:+.0f} |"
        )


if __name__ == "__main__":
    app.run(main)
