"""State tracking: parity and the S5 word problem, trained on short sequences and tested on longer ones.

Parity is the classic test that a recurrence can flip a state (Minsky & Papert 1969; length
generalisation as in Delétang et al. 2023, "Neural Networks and the Chomsky Hierarchy"). The word
problem of the symmetric group S5 needs the state of a non-solvable group, which Merrill, Petty &
Sabharwal 2024 ("The Illusion of State in State-Space Models") show is beyond diagonal linear
recurrences and transformers of bounded depth: a model must multiply permutations as it reads them.

Two tasks share the configuration (:data:`PARITY_TASK` ``"parity"`` and :data:`S5_TASK`
``"s5_word"``). Each example's length is uniform over the integers of its split's range:

=====  ============================================  =======  =======
split  lengths from the config fields                small    full
=====  ============================================  =======  =======
train  ``train_min_length .. train_max_length``      1..40    1..40
valid  the test range (``valid_lengths="test"``)     41..256  41..1000
test   ``test_min_length .. test_max_length``        41..256  41..1000
=====  ============================================  =======  =======

The valid split takes the test range by default, because the headline is accuracy on unseen
lengths (``valid_lengths="train"`` gives it the train range); its examples come from their own
stream, so they are not the test examples. A batch is padded at the end to the largest length of
its split (40 for train, 256 or 1000 for test) and ``lengths`` gives the real lengths. Batches are
drawn afresh at every ``(seed, split, step)``: the data is unlimited, not a fixed dataset.

**parity** — tokens are bits ``0`` and ``1``; padding is ``2`` (``vocab_size = 3``). The target
(``target="sequence"``, 2 classes) is the number of ones modulo 2. Metric ``"accuracy"``; chance
is 0.5.

**s5_word** — token ``i`` is the ``i``-th permutation of ``(0, 1, 2, 3, 4)`` in lexicographic
order (:data:`PERMUTATIONS`; id 0 is the identity); padding is ``120`` (``vocab_size = 121``). A
permutation ``p`` is the map ``j ↦ p[j]``. The target at step ``t`` (``target="step"``, 120
classes) is the id of the running product ``s_t = p_t ∘ p_{t-1} ∘ … ∘ p_1``: each new
permutation is applied after the ones before it, ``s_t[j] = p_t[s_{t-1}[j]]``
(:data:`COMPOSE` ``[a, b]`` is the id of ``a ∘ b``). ``loss_mask`` marks the real steps; targets
past the length are 0. Metric ``"accuracy"`` per real step. The baseline
(:func:`s5_first_step_baseline`) is a model that tracks nothing: the first product is the first
input, which it copies, and every later product is uniform over the 120 permutations, so it
scores ``Σ_L (1 + (L − 1)/120) / Σ_L L`` over the test lengths (0.0150 on 41..256).

Sources and deliberate differences:

- **parity**: G. Delétang et al. 2023, "Neural Networks and the Chomsky Hierarchy" (ICLR 2023),
  the "Parity Check" task (a regular language): a binary string, its parity as the
  answer, training on lengths uniform in 1..40 and testing on the unseen lengths 41..500. Here the
  training range is the same; the test range is 41..256 (small) or 41..1000 (full) instead of
  41..500, and the test lengths are drawn at random per example (the paper averages accuracy over
  each test length). The padding token ``2`` and ``lengths`` are this library's way of batching
  different lengths; fresh strings are drawn at every ``(seed, split, step)``.
- **s5_word**: W. Merrill, J. Petty & A. Sabharwal 2024, "The Illusion of State in State-Space
  Models" (ICML 2024): the word problem of S5, labelled at every position with the product of the
  prefix read so far. The paper studies how many layers a model needs at a given sequence length;
  the split by length (train 1..40, test beyond) is this suite's, borrowed from the parity
  protocol. Write-ups differ in the order of the product (newest permutation applied last or
  first); here it is applied last, ``s_t = p_t ∘ s_{t-1}`` (composition right to left). The other
  order, ``r_t = p_1 ∘ … ∘ p_t``, is this one with every input and every label replaced by its
  inverse (``r_t`` of the inverses is ``s_t ** -1``), a fixed relabelling: the same difficulty,
  different label ids.
"""

from __future__ import annotations

import itertools

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.validation import check_choice, check_positive_int

PARITY_PAD = 2
PARITY_VOCAB_SIZE = 3

PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(5)))
"""The 120 permutations of ``(0, 1, 2, 3, 4)`` in lexicographic order; a token is an index here."""
NUM_PERMUTATIONS = len(PERMUTATIONS)
S5_PAD = NUM_PERMUTATIONS
S5_VOCAB_SIZE = NUM_PERMUTATIONS + 1


def _composition_table() -> np.ndarray:
    index = {p: i for i, p in enumerate(PERMUTATIONS)}
    # (a ∘ b)[j] = a[b[j]]: apply b, then a.
    return np.asarray(
        [[index[tuple(a[j] for j in b)] for b in PERMUTATIONS] for a in PERMUTATIONS], np.int32
    )


COMPOSE: np.ndarray = _composition_table()
"""``COMPOSE[a, b]`` is the id of ``a ∘ b`` (apply ``b``, then ``a``); int32 ``(120, 120)``."""

_LENGTH_FIELDS = ("train_min_length", "train_max_length", "test_min_length", "test_max_length")


def small_config() -> ml_collections.ConfigDict:
    """Train on lengths 1..40; validate and test on 41..256."""
    return ml_collections.ConfigDict(
        {
            "train_min_length": 1,
            "train_max_length": 40,
            "test_min_length": 41,
            "test_max_length": 256,
            "valid_lengths": "test",
        }
    )


def full_config() -> ml_collections.ConfigDict:
    """Train on lengths 1..40; validate and test on 41..1000."""
    config = small_config()
    config.test_max_length = 1000
    return config


def length_range(config, split: str) -> tuple[int, int]:
    """The inclusive range ``(min, max)`` of sequence lengths in ``split``."""
    for field in _LENGTH_FIELDS:
        check_positive_int(f"config.{field}", config[field])
    check_choice("config.valid_lengths", config.valid_lengths, ("train", "test"))
    for prefix in ("train", "test"):
        low, high = config[f"{prefix}_min_length"], config[f"{prefix}_max_length"]
        if high < low:
            raise ValueError(
                f"config.{prefix}_max_length must be >= config.{prefix}_min_length ({low}); "
                f"got {high}"
            )
    check_choice("split", split, ("train", "valid", "test"))
    prefix = config.valid_lengths if split == "valid" else split
    return int(config[f"{prefix}_min_length"]), int(config[f"{prefix}_max_length"])


def _lengths(config, seed: int, split: str, step: int, batch_size: int):
    check_positive_int("batch_size", batch_size)
    low, high = length_range(config, split)
    rng = batch_rng(seed, split, step)
    lengths = rng.integers(low, high + 1, batch_size).astype(np.int32)
    real = np.arange(high)[None, :] < lengths[:, None]
    return rng, lengths, real


def parity_spec(config) -> TaskSpec:
    length_range(config, "train")
    return TaskSpec(
        name="parity",
        input="tokens",
        vocab_size=PARITY_VOCAB_SIZE,
        target="sequence",
        loss="cross_entropy",
        num_outputs=2,
        metric="accuracy",
        baseline=0.5,
    )


def parity_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch of parity, deterministic given ``(seed, split, step)``.

    Returns:
      ``Batch(inputs (B, T) int32 bits with padding 2, targets (B,) int32 = ones mod 2,
      lengths (B,) int32)`` with ``T`` the largest length of the split.
    """
    rng, lengths, real = _lengths(config, seed, split, step, batch_size)
    bits = rng.integers(0, 2, real.shape, dtype=np.int32)
    bits = np.where(real, bits, PARITY_PAD).astype(np.int32)
    targets = (np.sum(bits == 1, axis=1) % 2).astype(np.int32)
    return Batch(bits, targets, lengths=lengths)


def running_product(tokens: np.ndarray) -> np.ndarray:
    """Ids of ``p_t ∘ … ∘ p_1`` at every step of ``tokens`` ``(B, T)`` (ids < 120), in log2(T) passes.

    A doubling (Hillis–Steele) prefix scan: after the pass with offset ``d``, position ``t`` holds
    the product of the ``2d`` permutations ending at ``t``; composition is associative, and the
    later window goes on the left.
    """
    product = np.asarray(tokens, np.int32)
    offset = 1
    while offset < product.shape[1]:
        later = product[:, offset:]
        product = np.concatenate(
            [product[:, :offset], COMPOSE[later, product[:, :-offset]]], axis=1
        )
        offset *= 2
    return product


def s5_spec(config) -> TaskSpec:
    length_range(config, "train")
    return TaskSpec(
        name="s5_word",
        input="tokens",
        vocab_size=S5_VOCAB_SIZE,
        target="step",
        loss="cross_entropy",
        num_outputs=NUM_PERMUTATIONS,
        metric="accuracy",
        baseline=s5_first_step_baseline(config),
    )


def s5_first_step_baseline(config) -> float:
    """Per-real-step test accuracy of copying the first input and guessing afterwards:
    ``Σ_L (1 + (L − 1)/120) / Σ_L L`` over the test lengths ``L`` (each equally likely)."""
    lengths = np.arange(int(config["test_min_length"]), int(config["test_max_length"]) + 1)
    return float(np.sum(1 + (lengths - 1) / NUM_PERMUTATIONS) / np.sum(lengths))


def s5_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch of the S5 word problem, deterministic given ``(seed, split, step)``.

    Returns:
      ``Batch(inputs (B, T) int32 permutation ids with padding 120, targets (B, T) int32 ids of
      the running product (0 past the length), loss_mask (B, T) bool real steps,
      lengths (B,) int32)`` with ``T`` the largest length of the split.
    """
    rng, lengths, real = _lengths(config, seed, split, step, batch_size)
    tokens = rng.integers(0, NUM_PERMUTATIONS, real.shape, dtype=np.int32)
    targets = np.where(real, running_product(tokens), 0).astype(np.int32)
    inputs = np.where(real, tokens, S5_PAD).astype(np.int32)
    return Batch(inputs, targets, loss_mask=real, lengths=lengths)


PARITY_TASK = Task("parity", parity_spec, parity_batch, small_config, full_config)
S5_TASK = Task("s5_word", s5_spec, s5_batch, small_config, full_config)
