"""The adding problem (Hochreiter & Schmidhuber 1997): remember two marked numbers over a long delay.

Source: S. Hochreiter & J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997,
§5.4 (Experiment 4, "adding problem"), in the simplified form that later recurrent-network
papers use: Q. Le, N. Jaitly & G. Hinton 2015, "A Simple Way to Initialize Recurrent Networks of
Rectified Linear Units" (arXiv:1504.00941), §4.1, and M. Arjovsky, A. Shah & Y. Bengio 2016,
"Unitary Evolution Recurrent Neural Networks" (ICML 2016), §4.2. This module implements that
simplified form: values uniform in ``[0, 1]``, exactly two markers, one uniform in each half of
the sequence, target the plain sum; always predicting 1 scores MSE 1/6 ≈ 0.167, the baseline those
papers quote.

Deliberate differences:

- from the 1997 original, which draws values from ``[-1, 1]``, marks one of the first ten
  positions and one of the first ``T/2 - 1``, sets the first and last markers to ``-1``, varies
  the length between ``T`` and ``1.1 T``, and asks for ``0.5 + (X1 + X2) / 4``, counting a sequence
  correct when its absolute error is below 0.04. The simplified form is the one whose MSE numbers
  are reported for modern recurrent models;
- a fixed length ``config.length`` (100 small, 1000 full; the suite also runs 2000 and 5000),
  longer than the published sweeps (hundreds of steps), and fresh sequences at every
  ``(seed, split, step)`` instead of a fixed training set;
- the "solved" threshold MSE < 0.01 is this suite's convention, not a number from the papers.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_positive_int


def adding_batch(seed: int, step: int, batch_size: int, length: int, split: str = "train") -> Batch:
    """One batch of the adding problem, deterministic given ``(seed, split, step)``.

    Each sequence has two channels: values ``u_t ~ U[0, 1]`` and a 0/1 marker with exactly two 1s,
    one in each half of the sequence. The target is the sum of the two marked values. Predicting
    the mean target 1 scores an MSE of Var(u_1 + u_2) = 1/6 ≈ 0.167; the task counts as solved below
    0.01.

    Returns:
      ``Batch(inputs (B, T, 2) float32 [value, marker], targets (B, 1) float32)``.
    """
    check_positive_int("batch_size", batch_size)
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer >= 2; got {length!r}")
    rng = batch_rng(seed, split, step)
    values = rng.random((batch_size, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, batch_size)
    second = rng.integers(half, length, batch_size)
    markers = np.zeros((batch_size, length), np.float32)
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return Batch(np.stack([values, markers], axis=-1), targets[:, None].astype(np.float32))


def small_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"length": 100})


def full_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"length": 1000})


def spec(config) -> TaskSpec:
    del config
    return TaskSpec(
        name="adding",
        input="features",
        input_features=2,
        target="sequence",
        loss="mse",
        num_outputs=1,
        metric="mse",
        baseline=1 / 6,
        solved_below=0.01,
    )


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    return adding_batch(seed, step, batch_size, config.length, split)


TASK = Task("adding", spec, batch, small_config, full_config)
