"""Padding and truncation by hand and against a list-slicing reference; bucketing keeps every
example once in a fixed set of shapes; a jitted step traces once per bucket, not once per length."""

import random
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax.text import (
    PAD,
    bucket_batches,
    bucket_for,
    bucket_indices,
    pad_sequences,
    trace_counter,
)

HAND = [[1, 2, 3, 4, 5], [6, 7], []]


@pytest.mark.parametrize(
    "padding, truncating, expected",
    [
        ("post", "post", [[1, 2, 3], [6, 7, 0], [0, 0, 0]]),
        ("post", "pre", [[3, 4, 5], [6, 7, 0], [0, 0, 0]]),
        ("pre", "post", [[1, 2, 3], [0, 6, 7], [0, 0, 0]]),
        ("pre", "pre", [[3, 4, 5], [0, 6, 7], [0, 0, 0]]),
    ],
)
def test_pad_and_truncate_by_hand(padding, truncating, expected):
    array, lengths = pad_sequences(HAND, max_length=3, padding=padding, truncating=truncating)
    assert array.tolist() == expected
    assert lengths.tolist() == [3, 2, 0]  # the kept lengths, in both layouts
    assert array.dtype == np.int32 and lengths.dtype == np.int32


def test_pad_defaults_value_dtype_and_empty_inputs():
    array, lengths = pad_sequences(HAND)
    assert array.tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert lengths.tolist() == [5, 2, 0]
    array, _ = pad_sequences([np.array([9, 8], np.int64), (7,)], value=-1, dtype=np.int64)
    assert array.tolist() == [[9, 8], [7, -1]] and array.dtype == np.int64
    array, _ = pad_sequences([[1, 2]], max_length=4, padding="pre", value=PAD)
    assert array.tolist() == [[0, 0, 1, 2]]
    for seqs, max_length, shape in [([], None, (0, 0)), ([], 3, (0, 3)), ([[], []], None, (2, 0))]:
        array, lengths = pad_sequences(seqs, max_length=max_length)
        assert array.shape == shape and lengths.shape == (shape[0],)


def reference_pad(seqs, width, padding, truncating, value):
    rows, lengths = [], []
    for seq in seqs:
        seq = list(seq)
        while len(seq) > width:
            seq = seq[:-1] if truncating == "post" else seq[1:]
        fill = [value] * (width - len(seq))
        rows.append(seq + fill if padding == "post" else fill + seq)
        lengths.append(len(seq))
    return rows, lengths


@pytest.mark.parametrize("padding", ["post", "pre"])
@pytest.mark.parametrize("truncating", ["post", "pre"])
def test_pad_matches_a_list_reference(padding, truncating):
    rng = random.Random(3)
    seqs = [[rng.randint(4, 99) for _ in range(rng.randint(0, 9))] for _ in range(25)]
    for max_length in (None, 1, 4, 9, 12):
        array, lengths = pad_sequences(
            seqs, max_length=max_length, padding=padding, truncating=truncating, value=-7
        )
        width = max_length if max_length is not None else max(len(s) for s in seqs)
        rows, expected_lengths = reference_pad(seqs, width, padding, truncating, -7)
        assert array.tolist() == rows
        assert lengths.tolist() == expected_lengths


def test_pad_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"padding must be one of .* got 'left'"):
        pad_sequences(HAND, padding="left")
    with pytest.raises(ValueError, match=r"truncating must be one of .* got 'start'"):
        pad_sequences(HAND, truncating="start")
    with pytest.raises(ValueError, match="max_length must be a positive integer; got 0"):
        pad_sequences(HAND, max_length=0)
    with pytest.raises(TypeError, match=r"seqs\[1\] must hold integer ids; got dtype float64"):
        pad_sequences([[1], [1.5]])
    with pytest.raises(ValueError, match=r"seqs\[0\] must be 1-D; got shape \(1, 2\)"):
        pad_sequences([[[1, 2]]])
    with pytest.raises(TypeError, match=r"seqs\[0\] must be a sequence of integer ids; got a str"):
        pad_sequences(["abc"])
    with pytest.raises(ValueError, match=r"seqs\[0\] must fit in int8"):
        pad_sequences([[1, 300]], dtype=np.int8)
    with pytest.raises(ValueError, match="value must fit in uint8"):
        pad_sequences([[1]], value=-1, dtype=np.uint8)
    with pytest.raises(TypeError, match="dtype must be an integer dtype; got float32"):
        pad_sequences(HAND, dtype=np.float32)


def test_bucket_for():
    buckets = (4, 8, 16)
    expected = {0: 4, 1: 4, 4: 4, 5: 8, 8: 8, 9: 16, 16: 16}
    for length, bucket in expected.items():
        assert bucket_for(length, buckets) == bucket
    assert bucket_for(17, buckets, truncate=True) == 16
    with pytest.raises(
        ValueError, match=r"length must be at most the largest bucket \(16\); got 17"
    ):
        bucket_for(17, buckets)
    with pytest.raises(ValueError, match=r"buckets must be strictly increasing; got \(8, 4\)"):
        bucket_for(3, (8, 4))
    with pytest.raises(ValueError, match="buckets must be strictly increasing"):
        bucket_for(3, (4, 4))
    with pytest.raises(ValueError, match="buckets must be a non-empty sequence"):
        bucket_for(3, ())
    with pytest.raises(ValueError, match=r"buckets must hold positive integers; got \(0, 4\)"):
        bucket_for(3, (0, 4))
    with pytest.raises(ValueError, match="length must be a non-negative integer; got -1"):
        bucket_for(-1, buckets)


def examples_with_ids(count, max_length, seed):
    """Each example starts with its own id (>= 4), so a batch row says which example it is."""
    rng = random.Random(seed)
    return [
        [4 + i] + [rng.randint(4, 50) for _ in range(rng.randint(0, max_length - 1))]
        for i in range(count)
    ]


def rows_of(batches):
    """(example id, row tokens, row length, bucket) for every non-empty row of every batch."""
    found = []
    for array, lengths in batches:
        for row, length in zip(array.tolist(), lengths.tolist(), strict=True):
            if length:
                found.append((row[0] - 4, row[:length], length, array.shape[1], row[length:]))
    return found


@pytest.mark.parametrize("shuffle_seed", [None, 0, 7])
def test_bucket_batches_shapes_coverage_and_smallest_bucket(shuffle_seed):
    buckets, batch_size = (4, 8, 16, 32), 3
    examples = examples_with_ids(50, 30, seed=1)
    batches = list(bucket_batches(examples, buckets, batch_size, shuffle_seed=shuffle_seed))
    for array, lengths in batches:
        assert array.shape[1] in buckets and 1 <= array.shape[0] <= batch_size
        assert lengths.shape == (array.shape[0],)
    # Each bucket has at most one partial batch.
    partial = Counter(array.shape[1] for array, _ in batches if array.shape[0] < batch_size)
    assert max(partial.values(), default=0) <= 1
    rows = rows_of(batches)
    assert sorted(r[0] for r in rows) == list(range(len(examples)))  # every example exactly once
    for i, tokens, length, bucket, padding in rows:
        assert tokens == examples[i] and length == len(examples[i])
        assert padding == [PAD] * (bucket - length)
        smaller = [b for b in buckets if b < bucket]
        assert length <= bucket and (not smaller or length > smaller[-1])


def test_bucket_batches_order_without_and_with_a_seed():
    examples = examples_with_ids(40, 16, seed=2)
    plain = list(bucket_batches(examples, (4, 8, 16), 4))
    # No seed: buckets shortest first, examples in input order within each.
    order = [i for i, *_ in rows_of(plain)]
    by_bucket = sorted(range(40), key=lambda i: (bucket_for(len(examples[i]), (4, 8, 16)), i))
    assert order == by_bucket
    first = list(bucket_batches(examples, (4, 8, 16), 4, shuffle_seed=3))
    again = list(bucket_batches(examples, (4, 8, 16), 4, shuffle_seed=3))
    other = list(bucket_batches(examples, (4, 8, 16), 4, shuffle_seed=4))
    assert len(first) == len(again) == len(plain)
    for (a, la), (b, lb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert [i for i, *_ in rows_of(first)] != order
    assert [i for i, *_ in rows_of(first)] != [i for i, *_ in rows_of(other)]


def test_bucket_remainders_dropped_or_padded():
    examples = examples_with_ids(23, 16, seed=4)
    buckets, batch_size = (4, 8, 16), 4
    counts = Counter(bucket_for(len(e), buckets) for e in examples)
    assert any(c % batch_size for c in counts.values())  # the data has partial batches

    dropped = list(bucket_batches(examples, buckets, batch_size, drop_remainder=True))
    assert all(array.shape[0] == batch_size for array, _ in dropped)
    kept = sum(c // batch_size * batch_size for c in counts.values())
    ids = [i for i, *_ in rows_of(dropped)]
    assert len(ids) == len(set(ids)) == kept

    padded = list(bucket_batches(examples, buckets, batch_size, pad_remainder=True))
    assert {array.shape for array, _ in padded} <= {(batch_size, b) for b in buckets}
    assert sorted(i for i, *_ in rows_of(padded)) == list(range(len(examples)))
    filler = [(a, l) for array, lengths in padded for a, l in zip(array, lengths, strict=True)]
    empty = [a for a, l in filler if l == 0]
    assert len(empty) == sum(-c % batch_size for c in counts.values())
    assert all(np.all(a == PAD) for a in empty)
    with pytest.raises(ValueError, match="drop_remainder and pad_remainder must not both be True"):
        bucket_batches(examples, buckets, batch_size, drop_remainder=True, pad_remainder=True)


def test_bucket_long_examples_raise_or_are_cut():
    examples = [[5] * 3, list(range(4, 14))]  # lengths 3 and 10
    with pytest.raises(
        ValueError, match=r"length must be at most the largest bucket \(8\); got 10"
    ):
        bucket_batches(examples, (4, 8), 2)  # raised at the call, before any batch is asked for
    batches = list(bucket_batches(examples, (4, 8), 2, truncate=True))
    assert [(a.tolist(), l.tolist()) for a, l in batches] == [
        ([[5, 5, 5, 0]], [3]),
        ([[4, 5, 6, 7, 8, 9, 10, 11]], [8]),
    ]
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        bucket_batches(examples, (4, 8), 0)
    with pytest.raises(ValueError, match="shuffle_seed must be None or a non-negative int"):
        bucket_batches(examples, (16,), 2, shuffle_seed=-1)
    plan = bucket_indices([3, 9, 2, 4, 7], (4, 8, 16), 2, drop_remainder=True)
    assert [(bucket, indices.tolist()) for bucket, indices in plan] == [(4, [0, 2])]


def masked_sums(tokens, lengths):
    """Per-example sum of the real tokens: padding must not change it."""
    steps = jnp.arange(tokens.shape[1], dtype=lengths.dtype)
    return jnp.sum(jnp.where(steps[None, :] < lengths[:, None], tokens, 0), axis=1)


def test_one_trace_per_bucket_against_one_per_length():
    examples = examples_with_ids(60, 24, seed=5)
    buckets, batch_size = (8, 16, 24), 4
    expected = np.array([sum(e) for e in examples])

    bucketed = trace_counter(masked_sums)
    step = jax.jit(bucketed)
    sums = np.zeros(len(examples), np.int64)
    used = set()
    for array, lengths in bucket_batches(
        examples, buckets, batch_size, shuffle_seed=0, pad_remainder=True
    ):
        result = np.asarray(step(jnp.asarray(array), jnp.asarray(lengths)))
        for row, length, value in zip(array, lengths, result, strict=True):
            if length:
                sums[row[0] - 4] = value
        used.add(array.shape)
    np.testing.assert_array_equal(sums, expected)
    assert bucketed.count == len(used) == len({bucket_for(len(e), buckets) for e in examples})
    assert step._cache_size() == bucketed.count

    # The same examples in batches padded to each batch's own longest sequence.
    unbucketed = trace_counter(masked_sums)
    step = jax.jit(unbucketed)
    widths = set()
    for start in range(0, len(examples), batch_size):
        array, lengths = pad_sequences(examples[start : start + batch_size])
        np.testing.assert_array_equal(
            step(jnp.asarray(array), jnp.asarray(lengths)), expected[start : start + batch_size]
        )
        widths.add(array.shape)
    assert unbucketed.count == len(widths) > bucketed.count
    assert step._cache_size() == unbucketed.count
