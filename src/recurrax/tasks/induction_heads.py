"""Induction heads (Olsson et al. 2022; Mamba §4.1): associative recall, length extrapolation.

Layout of one sequence of length ``L`` (``config.length``), vocabulary 16:

- every position holds a token drawn uniformly from ``1..15``, except:
- position ``p`` holds the trigger ``0``, with ``p`` uniform in ``0 .. L-3`` (never one of the last
  two positions), so the token at ``p + 1`` (one of ``1..15``) is the one to recall;
- the last position ``L-1`` holds the trigger ``0`` again.

The trigger appears nowhere else. The target at the last position is the token at ``p + 1``;
``loss_mask`` is true only there (targets elsewhere are 0 and do not count). Targets use the input
ids (``num_outputs = 16``).

Metric ``"accuracy"`` at the last position; chance is ``1/15``. Models train at ``config.length``
and are evaluated at each of ``config.test_lengths``: :func:`batch` always generates
``config.length``, so to evaluate at another length override that field (e.g. on a copy of the
config, or with :func:`at_length`).

Source: the synthetic "induction head" task of D. Fu, T. Dao et al. 2023, "Hungry Hungry Hippos:
Towards Language Modeling with State Space Models" (ICLR 2023), §3.1, named after the attention
circuit of C. Olsson et al. 2022, "In-context Learning and Induction Heads"; the setting here is
that of A. Gu & T. Dao 2023, "Mamba" (arXiv:2312.00752), §4.1.2 and Appendix E.1: vocabulary 16,
train at length 256, test at every power of two from 2^6 to 2^20, 2-layer models. The rule is the
papers': after the special token appears a second time, predict the token that followed its
first appearance.

Deliberate differences: the papers fix the rule, not every detail of the sampler; the choices
here are that the trigger is token ``0`` and occurs nowhere else, that its first position is
uniform over ``0 .. L-3`` and that the other tokens are uniform over the 15 ordinary ones. The
small setting (train at 128, test 64 … 4096) is this suite's, for a CPU; sequences are drawn
afresh at every ``(seed, split, step)``.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_positive_int

TRIGGER = 0
VOCAB_SIZE = 16
NUM_VALUES = VOCAB_SIZE - 1  # ordinary tokens are 1..15
MIN_LENGTH = 3


def small_config() -> ml_collections.ConfigDict:
    """Train at L = 128; test at 64 … 4096."""
    return ml_collections.ConfigDict(
        {"length": 128, "test_lengths": tuple(2**k for k in range(6, 13))}
    )


def full_config() -> ml_collections.ConfigDict:
    """Train at L = 256; test at 2^6 … 2^20 (Mamba §4.1)."""
    return ml_collections.ConfigDict(
        {"length": 256, "test_lengths": tuple(2**k for k in range(6, 21))}
    )


def at_length(config, length: int) -> ml_collections.ConfigDict:
    """A copy of ``config`` with ``length`` replaced (for evaluation at a test length)."""
    new = ml_collections.ConfigDict(config.to_dict())
    new.length = length
    return new


def _length(config) -> int:
    length = config.length
    check_positive_int("config.length", length)
    if length < MIN_LENGTH:
        raise ValueError(
            f"config.length must be at least {MIN_LENGTH} (trigger, its token, final trigger); "
            f"got {length!r}"
        )
    return int(length)


def spec(config) -> TaskSpec:
    _length(config)
    return TaskSpec(
        name="induction_heads",
        input="tokens",
        vocab_size=VOCAB_SIZE,
        target="step",
        loss="cross_entropy",
        num_outputs=VOCAB_SIZE,
        metric="accuracy",
        baseline=1 / NUM_VALUES,
    )


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch at ``config.length``, deterministic given ``(seed, split, step)``.

    Returns:
      ``Batch(inputs (B, L) int32, targets (B, L) int32, loss_mask (B, L) bool)``, the mask true
      only at the last position.
    """
    length = _length(config)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    inputs = rng.integers(1, VOCAB_SIZE, (batch_size, length), dtype=np.int32)
    rows = np.arange(batch_size)
    trigger_at = rng.integers(0, length - 2, batch_size)
    inputs[rows, trigger_at] = TRIGGER
    inputs[:, -1] = TRIGGER
    targets = np.zeros((batch_size, length), np.int32)
    targets[:, -1] = inputs[rows, trigger_at + 1]
    loss_mask = np.zeros((batch_size, length), bool)
    loss_mask[:, -1] = True
    return Batch(inputs, targets, loss_mask)


TASK = Task("induction_heads", spec, batch, small_config, full_config)
