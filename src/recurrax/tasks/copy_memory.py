"""Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): recall symbols after a delay.

Layout of one sequence, with delay ``T`` (``config.delay``), total length ``T + 20``, vocabulary 10:

====================  =================  ==========================================
positions             input              target
====================  =================  ==========================================
``0 .. 9``            10 symbols         blank ``0``
``10 .. T+8``         ``T - 1`` blanks   blank ``0``
``T+9``               delimiter ``9``    blank ``0``
``T+10 .. T+19``      10 blanks          the 10 symbols, in order
====================  =================  ==========================================

Token ids: ``0`` blank, ``1..8`` symbols (each drawn uniformly and independently), ``9`` delimiter.
Targets use the same ids (``num_outputs = 10``; the delimiter is never a target), so the model
predicts at every step and ``loss_mask`` is all true, as in the published setting.

Metric ``"cross_entropy"``: the mean cross-entropy (nats) per step over all ``T + 20`` steps. The
memoryless baseline predicts blank for the first ``T + 10`` steps (cost 0) and the uniform
distribution over the 8 symbols for the last 10 (cost ``ln 8`` each), scoring
``10 · ln 8 / (T + 20)``. The last 10 steps are the recall steps: symbol accuracy is the accuracy on
``targets[:, -10:]`` (slice them; chance is 1/8).

Source: M. Arjovsky, A. Shah & Y. Bengio 2016, "Unitary Evolution Recurrent Neural Networks"
(ICML 2016), §4.1 "Copying memory problem", which sets the long-time-lag memorisation problems
of Hochreiter & Schmidhuber 1997 ("Long Short-Term Memory", §5) in the form above: the same
alphabet (``a_0`` blank, ``a_1 .. a_8`` symbols, ``a_9`` delimiter), the same layout of
``T + 20`` steps and the same memoryless baseline ``10 log 8 / (T + 20)``. The layout, the token
ids and the baseline follow that section exactly.

Deliberate differences: the delays (50/100/200 small; 500/1000 full) are this suite's sweep, not
the paper's (delays of a few hundred steps, up to 500); every ``(seed, split, step)`` draws fresh
sequences rather than reusing a fixed training set; and the headline metric is the per-step
cross-entropy over all ``T + 20`` steps (the paper's plotted quantity), with symbol accuracy on the
last 10 steps available by slicing.
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_positive_int

BLANK = 0
DELIMITER = 9
NUM_SYMBOLS = 8  # symbols are ids 1..8
NUM_RECALL = 10  # symbols to copy
VOCAB_SIZE = 10


def small_config() -> ml_collections.ConfigDict:
    """``delay`` T = 100; the small sweep is ``delays`` (50, 100, 200)."""
    return ml_collections.ConfigDict({"delay": 100, "delays": (50, 100, 200)})


def full_config() -> ml_collections.ConfigDict:
    """``delay`` T = 1000; the published sweep is ``delays`` (500, 1000)."""
    return ml_collections.ConfigDict({"delay": 1000, "delays": (500, 1000)})


def _delay(config) -> int:
    delay = config.delay
    check_positive_int("config.delay", delay)
    return int(delay)


def sequence_length(delay: int) -> int:
    """Total length ``T + 20`` of a sequence with delay ``T``."""
    return delay + 2 * NUM_RECALL


def baseline_cross_entropy(delay: int) -> float:
    """Mean per-step cross-entropy of the memoryless predictor: ``10 · ln 8 / (T + 20)``."""
    return NUM_RECALL * math.log(NUM_SYMBOLS) / sequence_length(delay)


def spec(config) -> TaskSpec:
    delay = _delay(config)
    return TaskSpec(
        name="copy_memory",
        input="tokens",
        vocab_size=VOCAB_SIZE,
        target="step",
        loss="cross_entropy",
        num_outputs=VOCAB_SIZE,
        metric="cross_entropy",
        baseline=baseline_cross_entropy(delay),
    )


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch, deterministic given ``(seed, split, step)``.

    Returns:
      ``Batch(inputs (B, T+20) int32, targets (B, T+20) int32, loss_mask (B, T+20) bool all true)``.
    """
    delay = _delay(config)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    length = sequence_length(delay)
    symbols = rng.integers(1, NUM_SYMBOLS + 1, (batch_size, NUM_RECALL), dtype=np.int32)
    inputs = np.full((batch_size, length), BLANK, np.int32)
    inputs[:, :NUM_RECALL] = symbols
    inputs[:, delay + NUM_RECALL - 1] = DELIMITER
    targets = np.full((batch_size, length), BLANK, np.int32)
    targets[:, -NUM_RECALL:] = symbols
    loss_mask = np.ones((batch_size, length), bool)
    return Batch(inputs, targets, loss_mask)


TASK = Task("copy_memory", spec, batch, small_config, full_config)
