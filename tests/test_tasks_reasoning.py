"""Tests of the reasoning tasks: ListOps, parity and the S5 word problem.

Labels are checked against evaluators written here, independently of the generators: a recursive
descent evaluator of ListOps token lists, counting ones for parity, and composing permutation
tuples in a Python loop for S5.
"""

import itertools
import statistics

import numpy as np
import pytest

from recurrax.tasks import listops, state_tracking
from recurrax.tasks.spec import Batch

# --------------------------------------------------------------------------------------------
# ListOps
# --------------------------------------------------------------------------------------------

DIGITS = {d + 1: d for d in range(10)}  # token id -> digit
OPS = {11: min, 12: max, 13: statistics.median_low, 14: lambda args: sum(args) % 10}
CLOSE = 15


def _parse(tokens, pos):
    """Recursive descent: (value, next position) of the expression starting at ``pos``."""
    token = tokens[pos]
    if token in DIGITS:
        return DIGITS[token], pos + 1
    assert token in OPS, f"expected a digit or an operator at {pos}; got {token}"
    args = []
    pos += 1
    while tokens[pos] != CLOSE:
        value, pos = _parse(tokens, pos)
        args.append(value)
    assert 2 <= len(args) <= 5, f"arity {len(args)}"
    return OPS[token](args), pos + 1


def reference_value(tokens):
    """Value of a complete expression; the whole token list must be consumed."""
    tokens = [int(t) for t in tokens]
    value, end = _parse(tokens, 0)
    assert end == len(tokens), f"expression ends at {end} of {len(tokens)}"
    return value


def test_listops_tokenisation_of_the_documented_example():
    ids = listops.tokenize("[MAX 2 9 [MIN 4 7 ] 0 ]")
    assert ids.dtype == np.int32
    # MAX 2 9 MIN 4 7 ] 0 ]
    np.testing.assert_array_equal(ids, [12, 3, 10, 11, 5, 8, 15, 1, 15])
    assert listops.detokenize(ids) == "[MAX 2 9 [MIN 4 7 ] 0 ]"
    assert listops.evaluate(ids) == 9
    assert reference_value(ids) == 9


@pytest.mark.parametrize(
    "text, value",
    [
        ("7", 7),
        ("[MED 1 5 3 8 ]", 3),  # even count: the lower median
        ("[MED 4 0 9 ]", 4),
        ("[SM 9 8 7 ]", 4),
        ("[MIN 3 [MAX 1 2 ] 8 ]", 2),
        ("[SM [MED 1 2 ] [MIN 9 9 ] ]", 0),
    ],
)
def test_listops_evaluate_small_expressions(text, value):
    ids = listops.tokenize(text)
    assert listops.evaluate(ids) == value
    assert reference_value(ids) == value
    assert listops.detokenize(ids) == text
    # Padding after the expression is ignored.
    assert listops.evaluate(np.concatenate([ids, np.zeros(5, np.int32)])) == value


def test_listops_bad_text_and_tokens_raise():
    with pytest.raises(ValueError, match="tokens must be"):
        listops.tokenize("[MAX 2 10 ]")
    with pytest.raises(ValueError, match="'\\[' must be followed"):
        listops.tokenize("[ 2 ]")
    with pytest.raises(ValueError, match="end before"):
        listops.evaluate(listops.tokenize("[MAX 2 9"))
    with pytest.raises(ValueError, match="tokens must be ids"):
        listops.evaluate([16])


def test_listops_batch_shapes_lengths_padding_and_labels():
    config = listops.small_config()
    seen = 0
    for step in range(6):
        batch = listops.batch(config, seed=3, split="train", step=step, batch_size=32)
        assert isinstance(batch, Batch)
        assert batch.inputs.shape == (32, 500) and batch.inputs.dtype == np.int32
        assert batch.targets.shape == (32,) and batch.targets.dtype == np.int32
        assert batch.lengths.shape == (32,) and batch.lengths.dtype == np.int32
        assert batch.loss_mask is None
        assert np.all((batch.lengths > 50) & (batch.lengths < 500))
        real = np.arange(500)[None, :] < batch.lengths[:, None]
        assert np.all(batch.inputs[~real] == listops.PAD)
        assert np.all((batch.inputs[real] >= 1) & (batch.inputs[real] < listops.VOCAB_SIZE))
        for row, length, target in zip(batch.inputs, batch.lengths, batch.targets, strict=True):
            tokens = row[:length]
            assert tokens[-1] == CLOSE
            assert reference_value(tokens) == target
            np.testing.assert_array_equal(listops.tokenize(listops.detokenize(tokens)), tokens)
            seen += 1
    assert seen == 192


def test_listops_lengths_cover_the_range_and_all_classes_occur():
    config = listops.small_config()
    batch = listops.batch(config, seed=0, split="valid", step=0, batch_size=400)
    assert batch.lengths.min() < 80 and batch.lengths.max() > 470
    assert set(batch.targets.tolist()) == set(range(10))


def test_listops_short_expressions_have_feasible_lengths():
    config = listops.small_config()
    config.min_length, config.max_length, config.padded_length = 1, 7, 8
    batch = listops.batch(config, seed=0, split="train", step=0, batch_size=200)
    assert set(batch.lengths.tolist()) == {1, 4, 5, 6, 7}
    for row, length, target in zip(batch.inputs, batch.lengths, batch.targets, strict=True):
        assert reference_value(row[:length]) == target
        assert np.all(row[length:] == listops.PAD)


def test_listops_full_config_batch():
    config = listops.full_config()
    batch = listops.batch(config, seed=0, split="test", step=0, batch_size=4)
    assert batch.inputs.shape == (4, 2048)
    assert np.all((batch.lengths > 500) & (batch.lengths < 2000))
    for row, length, target in zip(batch.inputs, batch.lengths, batch.targets, strict=True):
        assert reference_value(row[:length]) == target
        assert np.all(row[length:] == listops.PAD)
    spec = listops.spec(config)
    assert spec.baseline == listops.MAJORITY_SHARE_FULL


def test_listops_determinism_and_a_finite_dataset():
    config = listops.small_config()
    a = listops.batch(config, seed=1, split="train", step=5, batch_size=8)
    b = listops.batch(config, seed=1, split="train", step=5, batch_size=8)
    for x, y in zip(a, b, strict=True):
        if x is not None:
            np.testing.assert_array_equal(x, y)
    for other in (
        listops.batch(config, seed=1, split="train", step=6, batch_size=8),
        listops.batch(config, seed=1, split="valid", step=5, batch_size=8),
        listops.batch(config, seed=2, split="train", step=5, batch_size=8),
    ):
        assert not np.array_equal(a.lengths, other.lengths) or not np.array_equal(
            a.inputs, other.inputs
        )
    # Row b of step s is example (s * B + b) mod train_size.
    tokens, value = listops.example(config, 1, "train", 5 * 8 + 3)
    assert a.lengths[3] == len(tokens) and a.targets[3] == value
    np.testing.assert_array_equal(a.inputs[3, : len(tokens)], tokens)
    # The dataset wraps around: with 10 examples, step 2 of batch 4 holds examples 8, 9, 0, 1.
    config.train_size = 10
    first = listops.batch(config, seed=1, split="train", step=0, batch_size=4)
    wrapped = listops.batch(config, seed=1, split="train", step=2, batch_size=4)
    np.testing.assert_array_equal(wrapped.inputs[2:], first.inputs[:2])
    np.testing.assert_array_equal(wrapped.targets[2:], first.targets[:2])
    # An example does not depend on the batch it lands in.
    single = listops.batch(config, seed=1, split="train", step=9, batch_size=1)  # example 9
    np.testing.assert_array_equal(single.inputs[0], wrapped.inputs[1])


def test_listops_spec_and_measured_majority_baseline():
    config = listops.small_config()
    spec = listops.spec(config)
    assert spec.name == "listops" and spec.input == "tokens" and spec.target == "sequence"
    assert spec.vocab_size == 16 and spec.num_outputs == 10 and spec.loss == "cross_entropy"
    assert spec.metric == "accuracy" and spec.baseline == listops.MAJORITY_SHARE_SMALL
    # Measure the majority share on 3000 fresh examples (standard error ≈ 0.007).
    measured = listops.majority_share(config, num_examples=3000, seed=11, split="test")
    assert abs(measured - listops.MAJORITY_SHARE_SMALL) < 0.025, measured
    assert listops.TASK.name == "listops" and listops.TASK.batch is listops.batch


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("min_length", 0, "config.min_length must be a positive integer"),
        ("max_length", 40, "config.max_length must be >= config.min_length"),
        ("padded_length", 400, "config.padded_length must be >= config.max_length"),
        ("max_args", 1, "config.max_args must be an integer >= 2"),
        ("leaf_prob", 1.5, "config.leaf_prob must be a float in"),
        ("train_size", 0, "config.train_size must be a positive integer"),
    ],
)
def test_listops_bad_configs_raise(field, value, match):
    config = listops.small_config()
    config[field] = value
    with pytest.raises(ValueError, match=match):
        listops.spec(config)
    with pytest.raises(ValueError, match=match):
        listops.batch(config, 0, "train", 0, 2)


def test_listops_bad_arguments_raise():
    config = listops.small_config()
    config.min_length, config.max_length = 2, 3
    with pytest.raises(ValueError, match="no expression has 2 or 3 tokens"):
        listops.spec(config)
    config = listops.small_config()
    with pytest.raises(ValueError, match="split must be one of"):
        listops.batch(config, 0, "dev", 0, 2)
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        listops.batch(config, 0, "train", -1, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        listops.batch(config, 0, "train", 0, 0)


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_fn, split, low, high",
    [
        (state_tracking.small_config, "train", 1, 40),
        (state_tracking.small_config, "valid", 41, 256),
        (state_tracking.small_config, "test", 41, 256),
        (state_tracking.full_config, "train", 1, 40),
        (state_tracking.full_config, "test", 41, 1000),
    ],
)
def test_parity_batch(config_fn, split, low, high):
    config = config_fn()
    batch = state_tracking.parity_batch(config, seed=0, split=split, step=3, batch_size=64)
    assert batch.inputs.shape == (64, high) and batch.inputs.dtype == np.int32
    assert batch.targets.shape == (64,) and batch.targets.dtype == np.int32
    assert batch.lengths.dtype == np.int32 and batch.loss_mask is None
    assert np.all((batch.lengths >= low) & (batch.lengths <= high))
    for row, length, target in zip(batch.inputs, batch.lengths, batch.targets, strict=True):
        ones = 0
        for t in range(high):
            if t < length:
                assert row[t] in (0, 1)
                ones += int(row[t] == 1)
            else:
                assert row[t] == state_tracking.PARITY_PAD
        assert target == ones % 2


def test_parity_labels_are_balanced_and_lengths_spread():
    config = state_tracking.small_config()
    batch = state_tracking.parity_batch(config, seed=0, split="train", step=0, batch_size=2000)
    assert 0.45 < batch.targets.mean() < 0.55
    assert set(batch.lengths.tolist()) == set(range(1, 41))


def test_parity_valid_lengths_option():
    config = state_tracking.small_config()
    config.valid_lengths = "train"
    batch = state_tracking.parity_batch(config, seed=0, split="valid", step=0, batch_size=16)
    assert batch.inputs.shape == (16, 40) and batch.lengths.max() <= 40
    assert state_tracking.length_range(config, "valid") == (1, 40)


def test_parity_determinism():
    config = state_tracking.small_config()
    a = state_tracking.parity_batch(config, 4, "train", 7, 32)
    b = state_tracking.parity_batch(config, 4, "train", 7, 32)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert not np.array_equal(
        a.inputs, state_tracking.parity_batch(config, 4, "train", 8, 32).inputs
    )
    valid = state_tracking.parity_batch(config, 4, "valid", 7, 32)
    test = state_tracking.parity_batch(config, 4, "test", 7, 32)
    assert not np.array_equal(valid.inputs, test.inputs)


def test_parity_spec():
    spec = state_tracking.parity_spec(state_tracking.full_config())
    assert spec.name == "parity" and spec.input == "tokens" and spec.vocab_size == 3
    assert spec.target == "sequence" and spec.loss == "cross_entropy" and spec.num_outputs == 2
    assert spec.metric == "accuracy" and spec.baseline == 0.5
    assert state_tracking.PARITY_TASK.name == "parity"


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("train_min_length", 0, "config.train_min_length must be a positive integer"),
        ("train_max_length", 0, "config.train_max_length must be a positive integer"),
        ("test_max_length", 30, "config.test_max_length must be >= config.test_min_length"),
        ("valid_lengths", "dev", "config.valid_lengths must be one of"),
    ],
)
def test_state_tracking_bad_configs_raise(field, value, match):
    config = state_tracking.small_config()
    config[field] = value
    for spec_fn, batch_fn in (
        (state_tracking.parity_spec, state_tracking.parity_batch),
        (state_tracking.s5_spec, state_tracking.s5_batch),
    ):
        with pytest.raises(ValueError, match=match):
            spec_fn(config)
        with pytest.raises(ValueError, match=match):
            batch_fn(config, 0, "train", 0, 2)


def test_state_tracking_bad_arguments_raise():
    config = state_tracking.small_config()
    with pytest.raises(ValueError, match="split must be one of"):
        state_tracking.s5_batch(config, 0, "dev", 0, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        state_tracking.parity_batch(config, 0, "train", 0, 0)
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        state_tracking.parity_batch(config, 0, "train", -1, 2)


# --------------------------------------------------------------------------------------------
# S5 word problem
# --------------------------------------------------------------------------------------------

PERMS = sorted(itertools.permutations(range(5)))  # lexicographic, as tuples
INDEX = {p: i for i, p in enumerate(PERMS)}
IDENTITY = (0, 1, 2, 3, 4)


def then(new, old):
    """The permutation that applies ``old`` and then ``new``: j -> new[old[j]]."""
    return tuple(new[old[j]] for j in range(5))


def test_s5_enumeration_and_composition_table():
    assert len(PERMS) == 120
    assert tuple(state_tracking.PERMUTATIONS) == tuple(PERMS)
    assert INDEX[IDENTITY] == 0
    assert state_tracking.COMPOSE.shape == (120, 120) and state_tracking.COMPOSE.dtype == np.int32
    for a in range(0, 120, 7):
        for b in range(0, 120, 5):
            assert state_tracking.COMPOSE[a, b] == INDEX[then(PERMS[a], PERMS[b])]


def test_s5_composition_convention_on_a_worked_example():
    swap01 = INDEX[(1, 0, 2, 3, 4)]
    swap12 = INDEX[(0, 2, 1, 3, 4)]
    product = state_tracking.running_product(np.array([[swap01, swap12]], np.int32))
    # Apply swap01 first, then swap12: 0 -> 1 -> 2, 1 -> 0 -> 0, 2 -> 2 -> 1.
    assert product[0, 0] == swap01
    assert product[0, 1] == INDEX[(2, 0, 1, 3, 4)]
    assert product[0, 1] != INDEX[(1, 2, 0, 3, 4)]  # the other order


@pytest.mark.parametrize("length", [1, 2, 5, 37, 64])
def test_s5_running_product_matches_a_python_loop(length):
    tokens = np.random.default_rng(length).integers(0, 120, (3, length)).astype(np.int32)
    product = state_tracking.running_product(tokens)
    for row, out in zip(tokens, product, strict=True):
        state = IDENTITY
        for t in range(length):
            state = then(PERMS[row[t]], state)
            assert out[t] == INDEX[state]


@pytest.mark.parametrize(
    "config_fn, split, low, high",
    [
        (state_tracking.small_config, "train", 1, 40),
        (state_tracking.small_config, "valid", 41, 256),
        (state_tracking.small_config, "test", 41, 256),
        (state_tracking.full_config, "test", 41, 1000),
    ],
)
def test_s5_batch(config_fn, split, low, high):
    config = config_fn()
    batch = state_tracking.s5_batch(config, seed=2, split=split, step=1, batch_size=8)
    assert batch.inputs.shape == (8, high) and batch.inputs.dtype == np.int32
    assert batch.targets.shape == (8, high) and batch.targets.dtype == np.int32
    assert batch.loss_mask.shape == (8, high) and batch.loss_mask.dtype == np.bool_
    assert batch.lengths.shape == (8,) and batch.lengths.dtype == np.int32
    assert np.all((batch.lengths >= low) & (batch.lengths <= high))
    np.testing.assert_array_equal(
        batch.loss_mask, np.arange(high)[None, :] < batch.lengths[:, None]
    )
    for row, target, length in zip(batch.inputs, batch.targets, batch.lengths, strict=True):
        state = IDENTITY
        for t in range(high):
            if t < length:
                assert 0 <= row[t] < 120
                state = then(PERMS[row[t]], state)
                assert target[t] == INDEX[state]
            else:
                assert row[t] == state_tracking.S5_PAD
                assert target[t] == 0


def test_s5_determinism():
    config = state_tracking.small_config()
    a = state_tracking.s5_batch(config, 9, "test", 2, 16)
    b = state_tracking.s5_batch(config, 9, "test", 2, 16)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, state_tracking.s5_batch(config, 9, "test", 3, 16).inputs)
    assert not np.array_equal(a.inputs, state_tracking.s5_batch(config, 9, "valid", 2, 16).inputs)


def test_s5_spec():
    spec = state_tracking.s5_spec(state_tracking.small_config())
    assert spec.name == "s5_word" and spec.input == "tokens" and spec.vocab_size == 121
    assert spec.target == "step" and spec.loss == "cross_entropy" and spec.num_outputs == 120
    # The baseline copies the first input (always right) and guesses after it (1/120).
    assert spec.metric == "accuracy" and spec.baseline == pytest.approx(0.0150, abs=5e-5)
    config = state_tracking.small_config()
    config.test_min_length = config.test_max_length = 41
    assert state_tracking.s5_spec(config).baseline == pytest.approx((1 + 40 / 120) / 41)
    assert state_tracking.S5_TASK.name == "s5_word"
    assert state_tracking.S5_TASK.batch is state_tracking.s5_batch
