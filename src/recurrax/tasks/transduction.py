"""Synthetic transduction: reverse a string, sort it, or add two numbers written as text.

Three sequence-to-sequence tasks for an encoder–decoder: the model reads a source sequence and
writes a target sequence of its own length, ended by ``<eos>``. Examples are drawn afresh at every
``(seed, split, step)``: the data is unlimited, not a fixed dataset.

Batch layout (every transduction task, :func:`pack`), with ``S`` and ``T`` fixed per config
(:func:`padded_lengths`) so that a jitted step compiles once per config:

- ``inputs`` ``(B, S)`` int32: the source tokens, then ``<pad>`` (0); ``lengths`` ``(B,)`` int32
  the real source lengths (at least 1);
- ``targets`` ``(B, T)`` int32: the target tokens, one ``<eos>`` (3), then ``<pad>``; ``T`` is the
  longest target plus one for the ``<eos>``; ``loss_mask`` ``(B, T)`` bool, true on the target
  tokens and the ``<eos>``.

Token ids: ``<pad>`` 0, ``<unk>`` 1, ``<sos>`` 2, ``<eos>`` 3 (:mod:`recurrax.text.special_tokens`),
the task's symbols from 4 on. :func:`source_symbols` and :func:`target_symbols` give the string of
every id; :func:`decode_source` and :func:`decode_target` turn ids back into text.

**reverse** (:data:`REVERSE_TASK`) and **sort** (:data:`SORT_TASK`) share their config and their
vocabulary. A source is ``L`` symbols drawn uniformly and independently (repeats allowed) from an
alphabet of ``num_symbols`` (ids ``4 .. 3 + num_symbols``, written ``a``, ``b``, … up to 26
symbols and ``s0``, ``s1``, … beyond), ``L`` uniform over the integers of the split's range:

=============  ==============================================  =======  =======
split          lengths from the config fields                  small    full
=============  ==============================================  =======  =======
train          ``min_length .. max_length``                    1..20    1..50
valid, test    ``eval_min_length .. eval_max_length``          1..20    1..50
=============  ==============================================  =======  =======

The eval range equals the training range by default; set it apart to measure length
generalisation (e.g. train on 1..20, test on 21..40), or narrow it (``eval_min_length = 40``) for
the accuracy at length 40 and beyond. ``S = max(max_length, eval_max_length)`` and ``T = S + 1``
for every split. The target of reverse is the source read backwards; the target of sort is the
source in ascending order of id (alphabetical order for letters). Source and target share the
vocabulary: ``vocab_size = num_outputs = 4 + num_symbols``.

**addition** (:data:`ADDITION_TASK`): the source is ``a+b`` as characters and the target the
decimal sum, e.g. ``"907+85"`` -> ``"992"``. Each operand independently takes a number of digits
``n`` uniform in ``1 .. max_digits``, then a value uniform over the ``n``-digit numbers (``0 .. 9``
for one digit, ``10^(n-1) .. 10^n - 1`` otherwise: no leading zeros except ``"0"`` itself).
Source characters ``0-9`` and ``+`` (ids 4..14, ``vocab_size = 15``); target characters ``0-9``
(ids 4..13, ``num_outputs = 14``); digit ``d`` has id ``4 + d`` in both. ``S = 2 · max_digits + 1``
and ``T = max_digits + 2``.

Metric ``"exact_match"``: the share of targets predicted exactly, ``<eos>`` included; solved above
0.99. The baseline is the exact match of the copy predictor (output the source unchanged):
a palindrome for reverse, ``Σ_L k^-⌊L/2⌋ / #L`` over the eval lengths (:func:`reverse_baseline`);
an already sorted string for sort, ``Σ_L C(L+k-1, L) k^-L / #L`` (:func:`sort_baseline`), with
``k = num_symbols``; and 0 for addition, whose sources always hold a ``+`` that no sum has.

Sources and deliberate differences:

- **reverse**: sequence reversal as a transduction task, as in E. Grefenstette, K. M. Hermann,
  M. Suleyman & P. Blunsom 2015, "Learning to Transduce with Unbounded Memory" (NeurIPS 2015),
  which reads random symbol strings and writes them reversed, tests on strings longer than the
  training ones, and reports the share of wholly correct outputs (its "coarse accuracy", the
  exact match here) beside a per-symbol score; and the "Reverse String" task of G. Delétang et
  al. 2023, "Neural Networks and the Chomsky Hierarchy" (ICLR 2023). The long variant (the full
  config, lengths up to 50) mirrors the setting of D. Bahdanau, K. Cho & Y. Bengio 2015, "Neural
  Machine Translation by Jointly Learning to Align and Translate" (ICLR 2015), whose
  encoder–decoder without attention degrades as sentences grow towards 50 words while the
  attentive one does not. The alphabet sizes, the length ranges and the uniform draw of lengths
  are this suite's, not those papers'.
- **sort**: sorting as sequence-to-sequence learning, after O. Vinyals, S. Bengio & M. Kudlur
  2016, "Order Matters: Sequence to Sequence for Sets" (ICLR 2016), which sorts random numbers.
  Here the items are discrete symbols with repeats, and the model writes the sorted symbols
  themselves rather than pointers to input positions.
- **addition**: adding two numbers read and written character by character, as in the addition
  task of W. Zaremba & I. Sutskever 2014, "Learning to Execute" (arXiv:1410.4615). The plain
  ``a+b`` source (no program text around it) and the sampling of the operands (digit counts
  uniform and independent, then values uniform) are this module's.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from fractions import Fraction

import ml_collections
import numpy as np

from recurrax.tasks.spec import Batch, Task, TaskSpec, batch_rng
from recurrax.text.special_tokens import EOS, PAD, SPECIAL_TOKENS
from recurrax.validation import check_positive_int

FIRST_SYMBOL = len(SPECIAL_TOKENS)
"""The id of a task's first symbol (4): the reserved tokens come first."""

DIGITS = string.digits
ADDITION_SOURCE_CHARACTERS = DIGITS + "+"
ADDITION_TARGET_CHARACTERS = DIGITS

_STRING_LENGTH_FIELDS = ("min_length", "max_length", "eval_min_length", "eval_max_length")


# ----------------------------------------------------------------------------- the batch layout


def pack(
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    source_length: int,
    target_length: int,
) -> Batch:
    """Lays out ragged source and target rows as one fixed-shape transduction batch.

    ``inputs[b, :n_b] = sources[b]`` then ``<pad>``, ``lengths[b] = n_b``;
    ``targets[b, :m_b] = targets[b]``, ``targets[b, m_b] = <eos>``, then ``<pad>``;
    ``loss_mask[b, t] = t <= m_b``.

    Args:
      sources: ``B`` rows of source ids, each of length ``1 .. source_length``.
      targets: ``B`` rows of target ids, each of length ``0 .. target_length - 1``.
      source_length: ``S``, the padded source length.
      target_length: ``T``, the padded target length (room for the ``<eos>`` included).

    Returns:
      ``Batch(inputs (B, S) int32, targets (B, T) int32, loss_mask (B, T) bool,
      lengths (B,) int32)``.

    Example:
      >>> b = pack([[4, 5], [6]], [[5, 4], [6]], 3, 4)
      >>> b.inputs.tolist(), b.lengths.tolist()
      ([[4, 5, 0], [6, 0, 0]], [2, 1])
      >>> b.targets.tolist(), b.loss_mask.sum(axis=1).tolist()
      ([[5, 4, 3, 0], [6, 3, 0, 0]], [3, 2])
    """
    check_positive_int("source_length", source_length)
    check_positive_int("target_length", target_length)
    if len(sources) != len(targets) or not sources:
        raise ValueError(
            "sources and targets must be the same positive number of rows; "
            f"got {len(sources)} and {len(targets)}"
        )
    batch_size = len(sources)
    inputs = np.full((batch_size, source_length), PAD, np.int32)
    lengths = np.empty(batch_size, np.int32)
    target_ids = np.full((batch_size, target_length), PAD, np.int32)
    loss_mask = np.zeros((batch_size, target_length), bool)
    for b, (source, target) in enumerate(zip(sources, targets, strict=True)):
        if not 1 <= len(source) <= source_length:
            raise ValueError(
                f"sources[{b}] must have 1 .. {source_length} tokens; got {len(source)}"
            )
        if len(target) >= target_length:
            raise ValueError(
                f"targets[{b}] must have at most {target_length - 1} tokens (one place is kept "
                f"for <eos>); got {len(target)}"
            )
        inputs[b, : len(source)] = source
        lengths[b] = len(source)
        target_ids[b, : len(target)] = target
        target_ids[b, len(target)] = EOS
        loss_mask[b, : len(target) + 1] = True
    return Batch(inputs, target_ids, loss_mask, lengths)


def decode(symbols: Sequence[str], ids, *, stop_at_eos: bool) -> str:
    """The text of ``ids`` under the vocabulary ``symbols`` (``symbols[i]`` is the string of id ``i``).

    Reading stops at the first ``<pad>`` and, when ``stop_at_eos``, at the first ``<eos>`` (a
    hypothesis ends there). Symbols are joined without a separator when every non-reserved symbol
    is one character, else with spaces; reserved ids met before the end print as their strings.

    Example:
      >>> decode(("<pad>", "<unk>", "<sos>", "<eos>", "a", "b"), [5, 4, 3, 0], stop_at_eos=True)
      'ba'
    """
    ids = np.asarray(ids).reshape(-1).tolist()
    words = []
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < len(symbols):
            raise ValueError(f"ids must be integers in [0, {len(symbols)}); got {token!r}")
        if token == PAD or (stop_at_eos and token == EOS):
            break
        words.append(symbols[token])
    single = all(len(s) == 1 for s in symbols[FIRST_SYMBOL:])
    return ("" if single else " ").join(words)


# ----------------------------------------------------------------------------- configs


def small_config() -> ml_collections.ConfigDict:
    """Reverse and sort: 10 symbols, lengths 1..20 for training and evaluation."""
    return ml_collections.ConfigDict(
        {
            "num_symbols": 10,
            "min_length": 1,
            "max_length": 20,
            "eval_min_length": 1,
            "eval_max_length": 20,
        }
    )


def full_config() -> ml_collections.ConfigDict:
    """Reverse and sort, the long variant: 26 symbols, lengths 1..50 for training and evaluation."""
    return ml_collections.ConfigDict(
        {
            "num_symbols": 26,
            "min_length": 1,
            "max_length": 50,
            "eval_min_length": 1,
            "eval_max_length": 50,
        }
    )


def addition_small_config() -> ml_collections.ConfigDict:
    """Operands of 1..5 digits."""
    return ml_collections.ConfigDict({"max_digits": 5})


def addition_full_config() -> ml_collections.ConfigDict:
    """Operands of 1..10 digits."""
    return ml_collections.ConfigDict({"max_digits": 10})


def _check_int_at_least(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def _check_string_config(config) -> None:
    _check_int_at_least("config.num_symbols", config.num_symbols, 2)
    for field in _STRING_LENGTH_FIELDS:
        check_positive_int(f"config.{field}", config[field])
    for prefix in ("", "eval_"):
        low, high = config[f"{prefix}min_length"], config[f"{prefix}max_length"]
        if high < low:
            raise ValueError(
                f"config.{prefix}max_length must be >= config.{prefix}min_length ({low}); "
                f"got {high}"
            )


def _check_addition_config(config) -> None:
    check_positive_int("config.max_digits", config.max_digits)


def _is_addition(config) -> bool:
    # Reverse and sort share one config shape and one vocabulary; addition is told apart by its
    # own field, so the helpers below work on any of the three configs.
    return "max_digits" in config


def length_range(config, split: str) -> tuple[int, int]:
    """Reverse and sort: the inclusive range ``(min, max)`` of source lengths in ``split``.

    Example:
      >>> config = small_config()
      >>> config.eval_min_length, config.eval_max_length = 21, 40
      >>> length_range(config, "train"), length_range(config, "test")
      ((1, 20), (21, 40))
    """
    _check_string_config(config)
    if split == "train":
        return int(config.min_length), int(config.max_length)
    if split in ("valid", "test"):
        return int(config.eval_min_length), int(config.eval_max_length)
    raise ValueError(f"split must be one of ('train', 'valid', 'test'); got {split!r}")


def padded_lengths(config) -> tuple[int, int]:
    """``(S, T)``: the padded source and target lengths of every batch of this config.

    Example:
      >>> padded_lengths(small_config()), padded_lengths(addition_small_config())
      ((20, 21), (11, 7))
    """
    if _is_addition(config):
        _check_addition_config(config)
        return 2 * int(config.max_digits) + 1, int(config.max_digits) + 2
    _check_string_config(config)
    longest = max(int(config.max_length), int(config.eval_max_length))
    return longest, longest + 1


# ----------------------------------------------------------------------------- vocabularies


def _symbol_names(num_symbols: int) -> tuple[str, ...]:
    if num_symbols <= len(string.ascii_lowercase):
        return tuple(string.ascii_lowercase[:num_symbols])
    return tuple(f"s{i}" for i in range(num_symbols))


def source_symbols(config) -> tuple[str, ...]:
    """The string of every source id: the four reserved tokens, then the task's symbols.

    Example:
      >>> source_symbols(small_config())[:6]
      ('<pad>', '<unk>', '<sos>', '<eos>', 'a', 'b')
      >>> source_symbols(addition_small_config())[-2:]
      ('9', '+')
    """
    if _is_addition(config):
        _check_addition_config(config)
        return SPECIAL_TOKENS + tuple(ADDITION_SOURCE_CHARACTERS)
    _check_string_config(config)
    return SPECIAL_TOKENS + _symbol_names(int(config.num_symbols))


def target_symbols(config) -> tuple[str, ...]:
    """The string of every target id: the four reserved tokens, then the task's symbols.

    Example:
      >>> len(target_symbols(small_config())), len(target_symbols(addition_small_config()))
      (14, 14)
    """
    if _is_addition(config):
        _check_addition_config(config)
        return SPECIAL_TOKENS + tuple(ADDITION_TARGET_CHARACTERS)
    return source_symbols(config)


def decode_source(config, ids) -> str:
    """The text of one source row (up to the first ``<pad>``).

    Example:
      >>> decode_source(addition_small_config(), [13, 11, 14, 8, 0])
      '97+4'
    """
    return decode(source_symbols(config), ids, stop_at_eos=False)


def decode_target(config, ids) -> str:
    """The text of one target or prediction row (up to the first ``<eos>`` or ``<pad>``).

    Example:
      >>> decode_target(small_config(), [6, 5, 4, 3, 0])
      'cba'
    """
    return decode(target_symbols(config), ids, stop_at_eos=True)


# ----------------------------------------------------------------------------- baselines


def reverse_baseline(config) -> float:
    """Exact match of the copy predictor on reverse: the share of palindromes at the eval lengths.

    A uniform string of length ``L`` over ``k`` symbols is a palindrome with probability
    ``k^-⌊L/2⌋``; lengths are uniform over the eval range.

    Example:
      >>> config = small_config()
      >>> config.eval_min_length, config.eval_max_length = 1, 3
      >>> round(reverse_baseline(config), 4)  # (1 + 1/10 + 1/10) / 3
      0.4
    """
    low, high = length_range(config, "test")
    k = int(config.num_symbols)
    total = sum(Fraction(1, k ** (length // 2)) for length in range(low, high + 1))
    return float(total / (high - low + 1))


def sort_baseline(config) -> float:
    """Exact match of the copy predictor on sort: the share of already sorted sources.

    Of the ``k^L`` strings of length ``L`` over ``k`` symbols, ``C(L + k - 1, L)`` are
    non-decreasing (a multiset of ``L`` symbols has one sorted order); lengths are uniform over
    the eval range.

    Example:
      >>> config = small_config()
      >>> config.eval_min_length, config.eval_max_length = 2, 2
      >>> sort_baseline(config)  # C(11, 2) / 10^2
      0.55
    """
    low, high = length_range(config, "test")
    k = int(config.num_symbols)
    total = sum(
        Fraction(math.comb(length + k - 1, length), k**length) for length in range(low, high + 1)
    )
    return float(total / (high - low + 1))


# ----------------------------------------------------------------------------- reverse and sort


def _string_spec(name: str, config, baseline: float) -> TaskSpec:
    size = FIRST_SYMBOL + int(config.num_symbols)
    return TaskSpec(
        name=name,
        input="tokens",
        vocab_size=size,
        target="transduction",
        loss="cross_entropy",
        num_outputs=size,
        metric="exact_match",
        baseline=baseline,
        solved_above=0.99,
    )


def reverse_spec(config) -> TaskSpec:
    return _string_spec("reverse", config, reverse_baseline(config))


def sort_spec(config) -> TaskSpec:
    return _string_spec("sort", config, sort_baseline(config))


def _random_strings(config, seed: int, split: str, step: int, batch_size: int) -> list:
    """``B`` rows of uniform symbol ids, each of a length uniform over the split's range."""
    low, high = length_range(config, split)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    lengths = rng.integers(low, high + 1, batch_size)
    symbols = rng.integers(
        FIRST_SYMBOL, FIRST_SYMBOL + int(config.num_symbols), (batch_size, high), dtype=np.int32
    )
    return [row[:length] for row, length in zip(symbols, lengths, strict=True)]


def reverse_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch of reverse, deterministic given ``(seed, split, step)``; layout as in :func:`pack`.

    Example:
      >>> b = reverse_batch(small_config(), 0, "train", 0, 2)
      >>> b.inputs.shape, b.targets.shape
      ((2, 20), (2, 21))
      >>> source = decode_source(small_config(), b.inputs[0])
      >>> decode_target(small_config(), b.targets[0]) == source[::-1]
      True
    """
    sources = _random_strings(config, seed, split, step, batch_size)
    return pack(sources, [row[::-1] for row in sources], *padded_lengths(config))


def sort_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch of sort, deterministic given ``(seed, split, step)``; layout as in :func:`pack`.

    Example:
      >>> b = sort_batch(small_config(), 0, "train", 0, 2)
      >>> source = decode_source(small_config(), b.inputs[0])
      >>> decode_target(small_config(), b.targets[0]) == "".join(sorted(source))
      True
    """
    sources = _random_strings(config, seed, split, step, batch_size)
    return pack(sources, [np.sort(row) for row in sources], *padded_lengths(config))


# ----------------------------------------------------------------------------- addition


def addition_spec(config) -> TaskSpec:
    _check_addition_config(config)
    return TaskSpec(
        name="addition",
        input="tokens",
        vocab_size=FIRST_SYMBOL + len(ADDITION_SOURCE_CHARACTERS),
        target="transduction",
        loss="cross_entropy",
        num_outputs=FIRST_SYMBOL + len(ADDITION_TARGET_CHARACTERS),
        metric="exact_match",
        baseline=0.0,
        solved_above=0.99,
    )


def _operands(rng: np.random.Generator, max_digits: int, batch_size: int) -> list[str]:
    """``2B`` operands as decimal text: ``n`` digits uniform in ``1 .. max_digits``, value uniform."""
    count = 2 * batch_size
    num_digits = rng.integers(1, max_digits + 1, count)
    # A uniform n-digit number is a first digit uniform in 1..9 (0..9 when n = 1) followed by
    # n - 1 uniform digits; drawing digits keeps any max_digits exact, past int64.
    first = rng.integers(1, 10, count)
    single = rng.integers(0, 10, count)
    rest = rng.integers(0, 10, (count, max(max_digits - 1, 0)))
    operands = []
    for i in range(count):
        if num_digits[i] == 1:
            operands.append(DIGITS[single[i]])
        else:
            tail = "".join(DIGITS[d] for d in rest[i, : num_digits[i] - 1])
            operands.append(DIGITS[first[i]] + tail)
    return operands


def addition_batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch of addition, deterministic given ``(seed, split, step)``; layout as in :func:`pack`.

    Example:
      >>> config = addition_small_config()
      >>> b = addition_batch(config, 0, "train", 0, 2)
      >>> a, c = decode_source(config, b.inputs[0]).split("+")
      >>> int(decode_target(config, b.targets[0])) == int(a) + int(c)
      True
    """
    _check_addition_config(config)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    operands = _operands(rng, int(config.max_digits), batch_size)
    sources, targets = [], []
    for a, b in zip(operands[0::2], operands[1::2], strict=True):
        sources.append(_encode(f"{a}+{b}", ADDITION_SOURCE_CHARACTERS))
        targets.append(_encode(str(int(a) + int(b)), ADDITION_TARGET_CHARACTERS))
    return pack(sources, targets, *padded_lengths(config))


def _encode(text: str, characters: str) -> list[int]:
    return [FIRST_SYMBOL + characters.index(c) for c in text]


REVERSE_TASK = Task("reverse", reverse_spec, reverse_batch, small_config, full_config)
SORT_TASK = Task("sort", sort_spec, sort_batch, small_config, full_config)
ADDITION_TASK = Task(
    "addition", addition_spec, addition_batch, addition_small_config, addition_full_config
)
