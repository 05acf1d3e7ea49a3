"""Attention heatmaps of a trained translator: where the decoder looks while it generates.

    python experiments/main.py --config=experiments/configs/dates.py:gru --workdir=/tmp/dates \
        --config.seq2seq.attention=bahdanau
    python experiments/attention_map.py --workdir=/tmp/dates --out=plots/attention-dates.png

Loads the checkpoint that the run evaluated, decodes ``--examples`` test sources greedily and
plots, for each, the attention weights of every generated token (rows) over the source tokens
(columns). The weights are those of greedy decoding itself: the decoder is re-run, teacher-forced,
on the tokens it generated, which feeds it exactly what it fed itself.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from absl import app, flags

from recurrax import decoding
from recurrax.run import restore_evaluated, stored_config
from recurrax.seq2seq import shift_right
from recurrax.tasks import dates, transduction

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that importing this module
    in tests never clashes with other entry points' flags)."""
    flags.DEFINE_string("workdir", None, "directory of a finished transduction run with attention")
    flags.DEFINE_string("out", None, "the PNG to write")
    flags.DEFINE_integer("examples", 3, "test examples plotted", lower_bound=1, upper_bound=8)
    flags.mark_flags_as_required(["workdir", "out"])


SYMBOLS = {"reverse": transduction, "sort": transduction, "addition": transduction, "dates": dates}
"""The module that names each transduction task's tokens (``source_symbols``, ``target_symbols``)."""


def attention_maps(experiment, params, num_examples: int):
    """``[(source tokens, generated tokens, weights (generated, source))]`` of the first
    ``num_examples`` test examples, cut to the real source and the tokens up to ``<eos>``."""
    batch = experiment.batch("test", 0, batch_size=num_examples)
    seq2seq = experiment.model.encoder_decoder
    src, lengths = jnp.asarray(batch.inputs), jnp.asarray(batch.lengths)
    out = decoding.greedy(
        seq2seq.step_fn(params),
        seq2seq.encode(params, src, lengths),
        max_length=batch.targets.shape[1],
    )
    _, weights = seq2seq.apply(params, src, lengths, shift_right(out.tokens))
    maps = []
    for b in range(num_examples):
        n_src, n_out = int(lengths[b]), int(out.lengths[b])
        maps.append(
            (
                np.asarray(src[b, :n_src]),
                np.asarray(out.tokens[b, :n_out]),
                np.asarray(weights[b, :n_out, :n_src]),
            )
        )
    return maps


def _shown(symbol: str) -> str:
    return "␣" if symbol == " " else symbol


def plot(maps, source_symbols, target_symbols, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4.2), squeeze=False)
    for ax, (src, out, weights) in zip(axes[0], maps, strict=True):
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), [_shown(source_symbols[t]) for t in src], fontsize=7)
        ax.set_yticks(range(len(out)), [_shown(target_symbols[t]) for t in out], fontsize=7)
        ax.set_xlabel("source")
        ax.set_ylabel("generated")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv):
    del argv
    config = stored_config(FLAGS.workdir)
    if config.task.name not in SYMBOLS:
        raise app.UsageError(
            f"--workdir must hold a run of a transduction task {tuple(SYMBOLS)}; it holds "
            f"{config.task.name!r}"
        )
    if config.seq2seq.attention == "none":
        raise app.UsageError(f"--workdir holds a run without attention ({FLAGS.workdir})")
    experiment, params = restore_evaluated(config, FLAGS.workdir)
    maps = attention_maps(experiment, params, FLAGS.examples)
    names = SYMBOLS[config.task.name]
    title = (
        f"{config.task.name}: {config.model.cell} encoder–decoder, {config.seq2seq.attention} "
        "attention (greedy decoding of test examples)"
    )
    path = plot(
        maps,
        names.source_symbols(config.task),
        names.target_symbols(config.task),
        title,
        Path(FLAGS.out),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
