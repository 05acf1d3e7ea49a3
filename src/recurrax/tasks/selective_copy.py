"""Selective copying (Gu & Dao 2023, Mamba §4.1): copy the data tokens scattered among noise.

Layout of one sequence of total length ``T = L + 2M`` (``config.length`` = T, ``config.num_tokens``
= M), vocabulary 16:

- positions ``0 .. L+M-1`` (the field): ``M`` data tokens at random distinct positions, in the
  order they will be recalled; noise ``0`` at the other ``L`` positions;
- positions ``L+M .. T-1``: ``M`` markers ``1``.

Token ids: ``0`` noise, ``1`` marker, ``2..15`` data (14 values, each drawn uniformly and
independently, so repeats are allowed). The target at the ``k``-th marker is the ``k``-th data token
of the field; ``loss_mask`` is true exactly at the ``M`` marker positions (targets elsewhere are 0
and do not count). Targets use the input ids (``num_outputs = 16``).

Metric ``"accuracy"`` over the masked (marker) positions; chance is ``1/14``. Unlike the copy memory
task the data positions vary, so a time-invariant (convolutional) model cannot solve it by a fixed
lag. The published full setting trains 2 layers with d = 64 (``full_config().model_hint``).

Source: A. Gu & T. Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(arXiv:2312.00752), §3.1 (the task's motivation), §4.1.1 and Appendix E.1 (the setting:
sequences of length 4096, a vocabulary of 16 tokens counting the noise token, 16 data tokens to
memorise, 2-layer models of width 64), building on the copying task of Arjovsky et al. 2016
(:mod:`recurrax.tasks.copy_memory`) with the data positions randomised.

Deliberate differences:

- ``config.length`` is the *total* length ``T = L + 2M`` (noise, data and markers together), so
  the full setting has 4096 steps in all; if the paper's 4096 counts the field without the
  markers, the sequences here are 16 steps (0.4%) shorter;
- the token ids (noise ``0``, marker ``1``, data ``2..15``: 14 data values) are this module's; the
  paper specifies only the vocabulary size and the one noise token, so the number of data values
  (14 here) may differ by one from other generators with 16 tokens;
- the small setting (T = 256, M = 8) is this suite's, for a CPU; fresh sequences are drawn at
  every ``(seed, split, step)``, and the training length (steps, batch) is set by the experiment,
  not fixed here.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_positive_int

NOISE = 0
MARKER = 1
FIRST_DATA = 2
VOCAB_SIZE = 16
NUM_DATA = VOCAB_SIZE - FIRST_DATA  # 14 data values


def small_config() -> ml_collections.ConfigDict:
    """T = L + 2M = 256, M = 8."""
    return ml_collections.ConfigDict({"length": 256, "num_tokens": 8})


def full_config() -> ml_collections.ConfigDict:
    """T = 4096, M = 16 (Mamba §4.1); ``model_hint``: the published model, 2 layers of width 64."""
    return ml_collections.ConfigDict(
        {"length": 4096, "num_tokens": 16, "model_hint": {"num_layers": 2, "hidden_size": 64}}
    )


def _sizes(config) -> tuple[int, int]:
    """``(T, M)`` after checking them."""
    length, num_tokens = config.length, config.num_tokens
    check_positive_int("config.length", length)
    check_positive_int("config.num_tokens", num_tokens)
    if length < 2 * num_tokens:
        raise ValueError(
            f"config.length must be at least {2 * num_tokens} (2 * config.num_tokens: the data "
            f"tokens in the field plus the markers); got {length!r}"
        )
    return int(length), int(num_tokens)


def spec(config) -> TaskSpec:
    _sizes(config)
    return TaskSpec(
        name="selective_copy",
        input="tokens",
        vocab_size=VOCAB_SIZE,
        target="step",
        loss="cross_entropy",
        num_outputs=VOCAB_SIZE,
        metric="accuracy",
        baseline=1 / NUM_DATA,
    )


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch, deterministic given ``(seed, split, step)``.

    Returns:
      ``Batch(inputs (B, T) int32, targets (B, T) int32, loss_mask (B, T) bool)``, the mask true
      at the last ``M`` positions.
    """
    length, num_tokens = _sizes(config)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    field = length - num_tokens
    data = rng.integers(FIRST_DATA, VOCAB_SIZE, (batch_size, num_tokens), dtype=np.int32)
    # M distinct positions per row: the M smallest of `field` iid uniforms, sorted so that the data
    # appear in the field in the order they are recalled.
    draws = rng.random((batch_size, field))
    positions = np.sort(np.argpartition(draws, num_tokens - 1, axis=1)[:, :num_tokens], axis=1)
    inputs = np.full((batch_size, length), NOISE, np.int32)
    np.put_along_axis(inputs, positions, data, axis=1)
    inputs[:, field:] = MARKER
    targets = np.zeros((batch_size, length), np.int32)
    targets[:, field:] = data
    loss_mask = np.zeros((batch_size, length), bool)
    loss_mask[:, field:] = True
    return Batch(inputs, targets, loss_mask)


TASK = Task("selective_copy", spec, batch, small_config, full_config)
