"""How often a jitted training step compiles under three ways of padding variable-length sources.

    .venv/bin/python experiments/bucketing.py
    .venv/bin/python experiments/bucketing.py --examples=4096 --buckets=10,15,20,25,30

The corpus is ``--examples`` dates written in random styles (:mod:`recurrax.tasks.dates`: from
``20210303`` to ``Wednesday, September 28th, 2021``), tokenised by characters into the ids of a
:class:`recurrax.text.Vocab`; each target is the ISO date plus ``<eos>`` (11 ids). One epoch of a
small GRU encoder–decoder with Bahdanau attention (loss, gradient and a plain SGD update in one
``jax.jit``) runs under each strategy, each with a fresh jitted step wrapped in
:func:`recurrax.text.trace_counter` (so the number of compilations is counted, not computed):

* ``longest``: each batch padded to its own longest source (:func:`recurrax.text.pad_sequences`);
* ``buckets``: :func:`recurrax.text.bucket_batches` with the fixed lengths ``--buckets`` and
  ``pad_remainder=True``;
* ``max``: every batch padded to the corpus' longest source.

Every batch has ``--batch_size`` rows: a partial last batch (``longest``, ``max``) or a bucket's
partial last batch (``buckets``) is filled with empty rows (length 0, no target), so only the
source length varies between batches. Targets are 11 wide in every strategy. The table gives per
strategy the batches, the compilations (the counter), the distinct batch shapes, the padding share
(padded source positions, filler rows included, over all source positions) and the epoch's wall
seconds, compilations included; it is printed and written to ``--out``.
"""

from __future__ import annotations

import datetime
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for experiments.*

import jax
import numpy as np
from absl import app, flags
from experiments.runner import machine_description

import recurrax
from recurrax.seq2seq import encoder_decoder, sequence_loss, shift_right
from recurrax.tasks import dates
from recurrax.text import (
    PAD,
    Vocab,
    bucket_batches,
    bucket_for,
    bucket_indices,
    char_tokenizer,
    pad_sequences,
    trace_counter,
)
from recurrax.text.batching import check_buckets
from recurrax.text.special_tokens import SPECIAL_TOKENS
from recurrax.validation import check_positive_int

FLAGS = flags.FLAGS

STRATEGIES = ("longest", "buckets", "max")
DEFAULT_BUCKETS = (8, 16, 24, 32)
FIRST_YEAR, LAST_YEAR = 1900, 2099
LEARNING_RATE = 0.1


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so that importing this module
    in tests never clashes with other entry points' flags)."""
    flags.DEFINE_integer("examples", 2048, "dates in the corpus", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "rows per batch", lower_bound=1)
    flags.DEFINE_list(
        "buckets",
        [str(b) for b in DEFAULT_BUCKETS],
        "bucket lengths, strictly increasing positive ints; the largest must hold every source",
    )
    flags.DEFINE_integer("width", 32, "GRU width of the encoder and the decoder", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "seed of the corpus and the parameters", lower_bound=0)
    flags.DEFINE_string("out", "experiments/results/bucketing.md", "markdown report to write")


# ----------------------------------------------------------------------------- corpus


def corpus(examples: int, seed: int) -> tuple[list[list[int]], list[list[int]], Vocab, Vocab]:
    """``(sources, targets, source vocab, target vocab)``: ``examples`` random dates of
    1900..2099, each in a random format and casing, as character ids; targets ISO + ``<eos>``."""
    check_positive_int("examples", examples)
    rng = np.random.default_rng(seed)
    first = datetime.date(FIRST_YEAR, 1, 1).toordinal()
    last = datetime.date(LAST_YEAR, 12, 31).toordinal()
    chars = char_tokenizer()
    texts, isos = [], []
    for _ in range(examples):
        day = datetime.date.fromordinal(int(rng.integers(first, last + 1)))
        format = dates.FORMATS[int(rng.integers(len(dates.FORMATS)))]
        case = dates.CASES[int(rng.integers(len(dates.CASES)))]
        texts.append(chars.tokenize(dates.render(day, format, case)))
        isos.append(chars.tokenize(day.isoformat()))
    source_vocab = Vocab.build(texts)
    target_vocab = Vocab.from_tokens([*SPECIAL_TOKENS, *dates.TARGET_CHARACTERS])
    sources = [source_vocab.encode(t) for t in texts]
    targets = [target_vocab.encode(t, add_eos=True) for t in isos]
    return sources, targets, source_vocab, target_vocab


def check_settings(batch_size: int, buckets: Any, width: int, seed: int) -> tuple[int, ...]:
    """The checked bucket lengths; a ValueError naming the bad setting otherwise."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("width", width)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return check_buckets(buckets)


def check_largest_bucket(buckets: tuple[int, ...], longest: int) -> None:
    try:
        bucket_for(longest, buckets)
    except ValueError as error:
        raise ValueError(
            f"buckets must end with a length that holds the longest source ({longest} tokens); "
            f"got buckets {buckets}"
        ) from error


# ----------------------------------------------------------------------------- batches


def fill_rows(rows: list, batch_size: int) -> list:
    """``rows`` followed by empty rows up to ``batch_size``."""
    return rows + [[]] * (batch_size - len(rows))


def stack_targets(targets: Sequence[Sequence[int]], indices, batch_size: int) -> np.ndarray:
    """The ``(batch_size, 11)`` targets of ``indices``, filler rows all ``<pad>``."""
    rows = fill_rows([targets[i] for i in indices], batch_size)
    return pad_sequences(rows, max_length=dates.TARGET_LENGTH)[0]


def batches(
    strategy: str,
    sources: list[list[int]],
    targets: list[list[int]],
    batch_size: int,
    buckets: tuple[int, ...],
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(src (batch_size, L), src_lengths (batch_size,), tgt (batch_size, 11))`` for one epoch."""
    if strategy == "buckets":
        # bucket_batches pads the sources; bucket_indices is the plan it follows (same arguments,
        # same order), which says whose targets go with each batch.
        plan = bucket_indices([len(s) for s in sources], buckets, batch_size, shuffle_seed=seed)
        padded = bucket_batches(sources, buckets, batch_size, shuffle_seed=seed, pad_remainder=True)
        for (_, indices), (src, lengths) in zip(plan, padded, strict=True):
            yield src, lengths, stack_targets(targets, indices, batch_size)
        return
    longest = max(len(s) for s in sources)
    for start in range(0, len(sources), batch_size):
        indices = range(start, min(start + batch_size, len(sources)))
        rows = fill_rows([sources[i] for i in indices], batch_size)
        src, lengths = pad_sequences(rows, max_length=longest if strategy == "max" else None)
        yield src, lengths, stack_targets(targets, indices, batch_size)


# ----------------------------------------------------------------------------- training step


def training_step(model):
    """``step(params, src, src_lengths, tgt) -> (params, loss, target tokens)``: one SGD step."""

    def loss_fn(params, src, src_lengths, tgt):
        logits, _ = model.apply(params, src, src_lengths, shift_right(tgt))
        loss, sums = sequence_loss(logits, tgt, tgt != PAD)
        return loss, sums["count"]

    def step(params, src, src_lengths, tgt):
        (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, src, src_lengths, tgt
        )
        params = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)
        return params, loss, count

    return step


def measure(
    *,
    examples: int = 2048,
    batch_size: int = 32,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    width: int = 32,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One epoch under each of :data:`STRATEGIES`; a dict per strategy.

    Keys: ``strategy``, ``batches``, ``compilations`` (the trace counter of that strategy's fresh
    jitted step), ``shapes`` (distinct source batch shapes), ``padding_share`` (padded source
    positions over all), ``seconds`` (the epoch's wall time, compilations included), and to check
    the epoch: ``examples`` (rows with a real source), ``source_tokens`` (real source tokens) and
    ``target_tokens`` (real target tokens, as counted by the loss).
    """
    buckets = check_settings(batch_size, tuple(buckets), width, seed)
    sources, targets, source_vocab, target_vocab = corpus(examples, seed)
    check_largest_bucket(buckets, max(len(s) for s in sources))
    model = encoder_decoder(
        encoder=recurrax.gru(width),
        decoder_cells=recurrax.gru(width),
        src_vocab_size=len(source_vocab),
        tgt_vocab_size=len(target_vocab),
        embed_size=width,
        attention="bahdanau",
    )
    initial = model.init(jax.random.key(seed))
    rows = []
    for strategy in STRATEGIES:
        counted = trace_counter(training_step(model))
        step = jax.jit(counted)
        params, shapes, counts = initial, set(), []
        n_batches = positions = real = seen = 0
        start = time.perf_counter()
        for src, lengths, tgt in batches(strategy, sources, targets, batch_size, buckets, seed):
            params, _, count = step(params, src, lengths, tgt)
            counts.append(count)
            shapes.add(src.shape)
            n_batches += 1
            positions += src.size
            real += int(lengths.sum())
            seen += int(np.count_nonzero(lengths))
        jax.block_until_ready(params)
        seconds = time.perf_counter() - start
        rows.append({
            "strategy": strategy,
            "batches": n_batches,
            "compilations": counted.count,
            "shapes": len(shapes),
            "padding_share": (positions - real) / positions,
            "seconds": seconds,
            "examples": seen,
            "source_tokens": real,
            "target_tokens": sum(int(c) for c in counts),
        })  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- report


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| strategy | batches | compilations | distinct batch shapes | padding share | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['strategy']} | {row['batches']} | {row['compilations']} | {row['shapes']} "
            f"| {row['padding_share']:.3f} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def parse_buckets(values: Sequence[str]) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise app.UsageError(
            f"--buckets must be a comma-separated list of integers; got {','.join(values)!r}"
        ) from None


def main(argv):
    del argv
    buckets = parse_buckets(FLAGS.buckets)
    settings = {
        "examples": FLAGS.examples,
        "batch_size": FLAGS.batch_size,
        "buckets": buckets,
        "width": FLAGS.width,
        "seed": FLAGS.seed,
    }
    try:  # the checks' messages start with the setting's name, which is the flag's name
        check_settings(FLAGS.batch_size, buckets, FLAGS.width, FLAGS.seed)
        check_largest_bucket(buckets, max(len(s) for s in corpus(FLAGS.examples, FLAGS.seed)[0]))
    except ValueError as error:
        raise app.UsageError(f"--{str(error).split()[0]}: {error}") from None
    rows = measure(**settings)
    text = table(rows)
    print(text)
    header = (
        f"Compilations of a jitted training step (GRU encoder–decoder with Bahdanau attention, "
        f"width {FLAGS.width}) over one epoch of {FLAGS.examples} dates, batch size "
        f"{FLAGS.batch_size}, buckets {', '.join(map(str, buckets))}, seed {FLAGS.seed}; "
        f"{datetime.date.today().isoformat()}.\n\n"
        f"- Machine: {machine_description()}\n"
        f"- Command: `{shlex.join(['python', *sys.argv])}`\n"
        "- Compilations are counted by `recurrax.text.trace_counter` around the step function; "
        "seconds are the epoch's wall time, compilations included; padding share is padded "
        "source positions (filler rows of partial batches included) over all source positions."
    )
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Bucketing\n\n{header}\n\n{text}\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
