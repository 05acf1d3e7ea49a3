"""ListOps (Nangia & Bowman 2018; Long Range Arena, Tay et al. 2021): evaluate a long nested expression.

An expression is a digit ``0..9`` or ``[OP a_1 … a_k ]`` with ``k`` arguments that are expressions
themselves. The operators:

=======  ====================================================================================
``MIN``  the smallest argument
``MAX``  the largest argument
``MED``  the median; for an even number of arguments the **lower** median,
         ``sorted(args)[(k - 1) // 2]`` (other generators may round differently)
``SM``   the sum modulo 10
=======  ====================================================================================

The model reads the expression as tokens and predicts its value, a class ``0..9``.

Tokenisation, as in Long Range Arena: the opening brackets are dropped (an operator token opens its
node) and the closing ``]`` is kept as a token, so ``[MAX 2 9 [MIN 4 7 ] 0 ]`` is read as
``MAX 2 9 MIN 4 7 ] 0 ]``. Token ids (``VOCAB_SIZE = 16``):

=============  ===========================
id             token
=============  ===========================
``0``          padding (after the length)
``1 .. 10``    the digits ``0 .. 9`` (id = digit + 1)
``11 .. 14``   ``MIN``, ``MAX``, ``MED``, ``SM``
``15``         ``]``
=============  ===========================

:func:`tokenize` and :func:`detokenize` convert between the bracketed text and the ids.

The sampler builds an expression of an exact token length, so every draw lands in the configured
range (LRA instead draws trees and rejects those of the wrong length). For one example:

1. its length ``L`` is uniform over the integers in ``[min_length, max_length]`` (lengths 2 and 3
   admit no expression and are redrawn);
2. a node of length ``n > 1`` takes an operator uniformly from the four and an arity ``k`` uniformly
   from those in ``2 .. max_args`` that can fill the ``n - 2`` tokens between operator and ``]``
   (every subtree has length 1 or at least 4);
3. each argument is a digit with probability ``leaf_prob`` (clamped so the lengths stay feasible);
   the other arguments share the remaining tokens: each gets 4 plus a uniformly random cut of the
   rest; the argument order is shuffled.

With the defaults (``max_args = 5``, ``leaf_prob = 0.1``) the nesting depth (open operators) is
4..10 (5th..95th percentile, mean 7) at the small lengths and 8..13 (mean 11) at the full lengths;
LRA allows up to 10 arguments and depth up to 10.

The dataset is finite and fixed, as in the benchmark: a split has ``<split>_size`` examples and
example ``i`` of a split is generated from its own stream ``(seed, split, i)``. The batch at
``step`` holds the examples ``(step · batch_size + b) mod <split>_size`` for ``b < batch_size``,
so an epoch is ``<split>_size / batch_size`` steps and evaluation over a split wraps around in its
last batch.

Metric ``"accuracy"`` of the predicted value. The baseline is the share of the majority class,
the value 0, measured with :func:`majority_share` (60k examples small, 26k full): 15.2% at the
small lengths and 16.2% at the full lengths (LRA's data: ≈ 17%). MIN pulls values to 0 and MAX
to 9; the lower median tips the balance to 0 (with the upper median, 9 is the majority).
``spec`` gives 0.162 when ``max_length > 500`` and 0.152 otherwise; for other sampler settings
measure it with :func:`majority_share`.

Source: N. Nangia & S. Bowman 2018, "ListOps: A Diagnostic Dataset for Latent Tree Learning"
(NAACL Student Research Workshop 2018; the four operators and the bracketed syntax), at the
lengths of the Long Range Arena: Y. Tay et al. 2021, "Long Range Arena: A Benchmark for Efficient
Transformers" (ICLR 2021), §2.2.1 ("Long ListOps": sequences of up to 2K tokens, 10 classes,
96k / 2k / 2k examples). The full configuration has LRA's lengths (more than 500 and fewer than
2000 tokens, padded to 2048) and split sizes.

Deliberate differences from LRA's released data (its generator draws each node at depth below 10
as an operator with probability 0.25 and a digit otherwise, with 2..10 arguments, keeps the trees
whose length falls in the range and drops duplicates):

- **MED for an even number of arguments**: LRA evaluates ``int(numpy.median(args))``, the mean of
  the two middle values rounded down (``[MED 2 9 ]`` is 5); this module takes the lower median
  (``[MED 2 9 ]`` is 2). Labels of expressions with an even-arity ``MED`` can differ from LRA's;
  the rule is kept so that earlier results stay reproducible;
- the length-exact sampler above instead of rejection sampling, with at most ``max_args = 5``
  arguments (LRA: 10), so the distribution of tree shapes and the depth differ (the depth here may
  exceed LRA's 10 at the full lengths);
- no check for duplicate expressions across or within splits (at these lengths a repeat is
  vanishingly unlikely); the small configuration (51..499 tokens, 20k / 1k / 1k) is this suite's;
- the brackets of LRA's text files (``(`` ``)``, removed by its input pipeline) never appear, and
  the vocabulary is the 16 ids above rather than LRA's tokenizer over the text.
"""

from __future__ import annotations

import random

import ml_collections
import numpy as np

from recurrax.tasks.spec import SPLITS, Batch, Task, TaskSpec
from recurrax.validation import check_positive_int

PAD = 0
DIGIT_OFFSET = 1  # digit d has id d + 1
OPERATORS = ("MIN", "MAX", "MED", "SM")
OPERATOR_OFFSET = 11  # OPERATORS[j] has id 11 + j
CLOSE = 15  # "]"
VOCAB_SIZE = 16
NUM_CLASSES = 10
# The majority-class share, measured with `majority_share` (module docstring; checked in
# tests/test_tasks_reasoning.py) for the default sampler at the small and full lengths.
MAJORITY_SHARE_SMALL = 0.152
MAJORITY_SHARE_FULL = 0.162

_MIN, _MAX, _MED, _SM = range(OPERATOR_OFFSET, OPERATOR_OFFSET + 4)
_CLOSE_MARK = -1  # on the builder's stack: emit "]"


def small_config() -> ml_collections.ConfigDict:
    """50 < length < 500, padded to 500; 20k / 1k / 1k examples."""
    return ml_collections.ConfigDict(
        {
            "min_length": 51,
            "max_length": 499,
            "padded_length": 500,
            "max_args": 5,
            "leaf_prob": 0.1,
            "train_size": 20_000,
            "valid_size": 1_000,
            "test_size": 1_000,
        }
    )


def full_config() -> ml_collections.ConfigDict:
    """500 < length < 2000, padded to 2048; 96k / 2k / 2k examples (Long Range Arena)."""
    return ml_collections.ConfigDict(
        {
            "min_length": 501,
            "max_length": 1999,
            "padded_length": 2048,
            "max_args": 5,
            "leaf_prob": 0.1,
            "train_size": 96_000,
            "valid_size": 2_000,
            "test_size": 2_000,
        }
    )


def _check_config(config) -> None:
    for field in (
        "min_length",
        "max_length",
        "padded_length",
        "max_args",
        "train_size",
        "valid_size",
        "test_size",
    ):
        check_positive_int(f"config.{field}", config[field])
    if config.max_length < config.min_length:
        raise ValueError(
            f"config.max_length must be >= config.min_length ({config.min_length}); "
            f"got {config.max_length}"
        )
    if config.max_length < 4 and config.min_length != 1:
        raise ValueError(
            "config.min_length..config.max_length must contain 1 or a length >= 4 "
            f"(no expression has 2 or 3 tokens); got {config.min_length}..{config.max_length}"
        )
    if config.padded_length < config.max_length:
        raise ValueError(
            f"config.padded_length must be >= config.max_length ({config.max_length}); "
            f"got {config.padded_length}"
        )
    if config.max_args < 2:
        raise ValueError(f"config.max_args must be an integer >= 2; got {config.max_args!r}")
    leaf_prob = config.leaf_prob
    if isinstance(leaf_prob, bool) or not isinstance(leaf_prob, int | float):
        raise ValueError(f"config.leaf_prob must be a float in [0, 1]; got {leaf_prob!r}")
    if not 0.0 <= leaf_prob <= 1.0:
        raise ValueError(f"config.leaf_prob must be a float in [0, 1]; got {leaf_prob!r}")


def spec(config) -> TaskSpec:
    _check_config(config)
    return TaskSpec(
        name="listops",
        input="tokens",
        vocab_size=VOCAB_SIZE,
        target="sequence",
        loss="cross_entropy",
        num_outputs=NUM_CLASSES,
        metric="accuracy",
        baseline=MAJORITY_SHARE_FULL if config.max_length > 500 else MAJORITY_SHARE_SMALL,
    )


def _expression(length: int, rng: random.Random, max_args: int, leaf_prob: float) -> list[int]:
    """Token ids of a random expression of exactly ``length`` tokens (1 or >= 4)."""
    tokens: list[int] = []
    pending = [length]  # a stack of subtree lengths (popped in prefix order) and "]" marks
    while pending:
        n = pending.pop()
        if n == _CLOSE_MARK:
            tokens.append(CLOSE)
            continue
        if n == 1:
            tokens.append(DIGIT_OFFSET + int(rng.random() * 10))
            continue
        inner = n - 2  # the tokens of the k arguments; each argument has length 1 or >= 4
        arities = [k for k in range(2, min(max_args, inner) + 1) if inner == k or inner >= k + 3]
        arity = arities[int(rng.random() * len(arities))]
        if inner == arity:
            sizes = [1] * arity
        else:
            leaves = sum(rng.random() < leaf_prob for _ in range(arity))
            # Feasible leaf counts: j < arity with inner - j >= 4 (arity - j).
            leaves = min(max(leaves, -((inner - 4 * arity) // 3)), arity - 1)
            subtrees = arity - leaves
            extra = inner - leaves - 4 * subtrees
            cuts = sorted(int(rng.random() * (extra + 1)) for _ in range(subtrees - 1))
            bounds = [0, *cuts, extra]
            sizes = [1] * leaves + [4 + bounds[i + 1] - bounds[i] for i in range(subtrees)]
            for i in range(arity - 1, 0, -1):  # Fisher-Yates shuffle of the argument order
                j = int(rng.random() * (i + 1))
                sizes[i], sizes[j] = sizes[j], sizes[i]
        tokens.append(OPERATOR_OFFSET + int(rng.random() * 4))
        pending.append(_CLOSE_MARK)
        pending.extend(reversed(sizes))
    return tokens


def _apply(operator: int, args: list[int]) -> int:
    if operator == _MIN:
        return min(args)
    if operator == _MAX:
        return max(args)
    if operator == _MED:
        return sorted(args)[(len(args) - 1) // 2]
    return sum(args) % 10


def evaluate(tokens) -> int:
    """The value ``0..9`` of an expression given as token ids (padding after it is ignored)."""
    frames: list[tuple[int, list[int]]] = []
    value = None
    for token in tokens:
        token = int(token)
        if token == PAD:
            break
        if DIGIT_OFFSET <= token < DIGIT_OFFSET + 10:
            value = token - DIGIT_OFFSET
        elif OPERATOR_OFFSET <= token < OPERATOR_OFFSET + 4:
            frames.append((token, []))
            continue
        elif token == CLOSE:
            if not frames:
                raise ValueError("tokens have an unmatched ']'")
            operator, args = frames.pop()
            value = _apply(operator, args)
        else:
            raise ValueError(f"tokens must be ids in [0, {VOCAB_SIZE}); got {token}")
        if not frames:
            return value
        frames[-1][1].append(value)
    raise ValueError("tokens end before the expression is complete")


_NAMES = {
    **{DIGIT_OFFSET + d: str(d) for d in range(10)},
    **{OPERATOR_OFFSET + j: op for j, op in enumerate(OPERATORS)},
    CLOSE: "]",
}
_IDS = {name: token for token, name in _NAMES.items()}


def detokenize(tokens) -> str:
    """The bracketed text of token ids, e.g. ``"[MAX 2 9 [MIN 4 7 ] 0 ]"``; padding is dropped."""
    words = []
    for token in tokens:
        token = int(token)
        if token == PAD:
            break
        if token not in _NAMES:
            raise ValueError(f"tokens must be ids in [0, {VOCAB_SIZE}); got {token}")
        name = _NAMES[token]
        words.append("[" + name if name in OPERATORS else name)
    return " ".join(words)


def tokenize(text: str) -> np.ndarray:
    """Token ids of bracketed text: ``"[MAX 2 9 [MIN 4 7 ] 0 ]"`` -> ``MAX 2 9 MIN 4 7 ] 0 ]``.

    ``[`` may be attached to its operator or stand apart; it is dropped.
    """
    words = text.replace("[", " [ ").split()
    ids = []
    for i, word in enumerate(words):
        if word == "[":
            if i + 1 >= len(words) or words[i + 1] not in OPERATORS:
                raise ValueError(f"'[' must be followed by one of {OPERATORS}; got {text!r}")
            continue
        if word not in _IDS:
            raise ValueError(f"tokens must be digits 0-9, {OPERATORS}, '[' or ']'; got {word!r}")
        ids.append(_IDS[word])
    return np.asarray(ids, np.int32)


def example(config, seed: int, split: str, index: int) -> tuple[np.ndarray, int]:
    """Example ``index`` of ``split``: its token ids (unpadded, int32) and its value."""
    rng = random.Random(_example_seed(seed, split, index))
    return _example(config, rng)


def _example_seed(seed: int, split: str, index: int) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"index must be a non-negative integer; got {index!r}")
    state = np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(2, np.uint64)
    return int(state[0]) << 64 | int(state[1])


def _example(config, rng: random.Random) -> tuple[np.ndarray, int]:
    low, high = config.min_length, config.max_length
    while True:
        length = low + int(rng.random() * (high - low + 1))
        if length not in (2, 3):
            break
    tokens = _expression(length, rng, config.max_args, float(config.leaf_prob))
    return np.asarray(tokens, np.int32), evaluate(tokens)


def majority_share(config, num_examples: int = 4000, seed: int = 0, split: str = "train") -> float:
    """The share of the most common value among the first ``num_examples`` examples of ``split``."""
    check_positive_int("num_examples", num_examples)
    _check_config(config)
    counts = np.zeros(NUM_CLASSES, np.int64)
    for index in range(num_examples):
        counts[example(config, seed, split, index)[1]] += 1
    return float(counts.max() / num_examples)


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """The examples ``(step · batch_size + b) mod <split>_size``, padded to ``padded_length``.

    Returns:
      ``Batch(inputs (B, padded_length) int32, targets (B,) int32 values 0..9, lengths (B,) int32)``.
    """
    _check_config(config)
    check_positive_int("batch_size", batch_size)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step must be a non-negative integer; got {step!r}")
    size = config[f"{split}_size"]
    inputs = np.full((batch_size, config.padded_length), PAD, np.int32)
    targets = np.empty(batch_size, np.int32)
    lengths = np.empty(batch_size, np.int32)
    for b in range(batch_size):
        index = (int(step) * batch_size + b) % size
        tokens, targets[b] = example(config, seed, split, index)
        lengths[b] = len(tokens)
        inputs[b, : len(tokens)] = tokens
    return Batch(inputs, targets, lengths=lengths)


TASK = Task("listops", spec, batch, small_config, full_config)
