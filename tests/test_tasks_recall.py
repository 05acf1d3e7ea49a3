"""Tests for the recall tasks: copy memory, selective copying, induction heads and MQAR."""

import hashlib
import math
import time

import ml_collections
import numpy as np
import pytest

from recurrax.tasks import copy_memory, induction_heads, mqar, selective_copy
from recurrax.tasks.spec import Batch, Task, TaskSpec

MODULES = (copy_memory, selective_copy, induction_heads, mqar)
NAMES = ("copy_memory", "selective_copy", "induction_heads", "mqar")


def _config(module, **overrides):
    """The small config with fields replaced (built afresh: ConfigDict refuses type changes)."""
    return ml_collections.ConfigDict({**module.small_config().to_dict(), **overrides})


def _length(module, config):
    if module is copy_memory:
        return config.delay + 20
    return config.length


# ----------------------------------------------------------------------------- common contract


@pytest.mark.parametrize("module,name", list(zip(MODULES, NAMES, strict=True)))
def test_task_value(module, name):
    assert isinstance(module.TASK, Task)
    assert module.TASK.name == name
    for make in (module.small_config, module.full_config):
        config = make()
        assert isinstance(config, ml_collections.ConfigDict)
        spec = module.spec(config)
        assert isinstance(spec, TaskSpec)
        assert spec.name == name
        assert spec.input == "tokens" and spec.target == "step" and spec.loss == "cross_entropy"
        assert spec.num_outputs == spec.vocab_size


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_shapes_and_dtypes(module, split):
    config = module.small_config()
    spec = module.spec(config)
    length = _length(module, config)
    b = module.batch(config, 0, split, 3, 5)
    assert isinstance(b, Batch)
    assert b.inputs.shape == (5, length) and b.inputs.dtype == np.int32
    assert b.targets.shape == (5, length) and b.targets.dtype == np.int32
    assert b.loss_mask.shape == (5, length) and b.loss_mask.dtype == np.bool_
    assert b.lengths is None
    assert b.inputs.min() >= 0 and b.inputs.max() < spec.vocab_size
    assert b.targets.min() >= 0 and b.targets.max() < spec.num_outputs
    # Targets that do not count are 0, so a careless loss cannot pick up garbage.
    assert np.all(b.targets[~b.loss_mask] == 0)


@pytest.mark.parametrize("module", MODULES)
def test_determinism(module):
    config = module.small_config()
    a = module.batch(config, 7, "train", 11, 4)
    b = module.batch(config, 7, "train", 11, 4)
    for x, y in zip(a, b, strict=True):
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
    for other in (
        module.batch(config, 7, "train", 12, 4),
        module.batch(config, 7, "valid", 11, 4),
        module.batch(config, 8, "train", 11, 4),
    ):
        assert not np.array_equal(a.inputs, other.inputs)


@pytest.mark.parametrize("module", MODULES)
def test_small_batch_is_fast(module):
    config = module.small_config()
    module.batch(config, 0, "train", 0, 32)
    start = time.perf_counter()
    for step in range(5):
        module.batch(config, 0, "train", step, 32)
    assert (time.perf_counter() - start) / 5 < 0.05


@pytest.mark.parametrize("module", MODULES)
def test_bad_batch_arguments(module):
    config = module.small_config()
    with pytest.raises(ValueError, match="batch_size"):
        module.batch(config, 0, "train", 0, 0)
    with pytest.raises(ValueError, match="split"):
        module.batch(config, 0, "dev", 0, 2)
    with pytest.raises(ValueError, match="step"):
        module.batch(config, 0, "train", -1, 2)


# ----------------------------------------------------------------------------- copy memory


@pytest.mark.parametrize("delay", [1, 2, 50, 100, 200])
def test_copy_memory_layout(delay):
    config = _config(copy_memory, delay=delay)
    b = copy_memory.batch(config, 1, "train", 0, 16)
    length = delay + 20
    assert b.inputs.shape == (16, length)
    for x, y, m in zip(b.inputs, b.targets, b.loss_mask, strict=True):
        x, y = x.tolist(), y.tolist()
        symbols = x[:10]
        assert all(1 <= s <= 8 for s in symbols)
        expected_x = symbols + [0] * (delay - 1) + [9] + [0] * 10
        expected_y = [0] * (delay + 10) + symbols
        assert x == expected_x
        assert y == expected_y
        assert m.all()


def test_copy_memory_symbols_uniform():
    b = copy_memory.batch(copy_memory.small_config(), 0, "train", 0, 2000)
    counts = np.bincount(b.inputs[:, :10].ravel(), minlength=10)
    assert counts[0] == 0 and counts[9] == 0
    np.testing.assert_allclose(counts[1:9] / counts.sum(), 1 / 8, atol=0.01)


@pytest.mark.parametrize("delay", [50, 100, 200, 500, 1000])
def test_copy_memory_baseline(delay):
    spec = copy_memory.spec(_config(copy_memory, delay=delay))
    assert spec.metric == "cross_entropy"
    assert spec.vocab_size == 10
    assert spec.baseline == pytest.approx(10 * math.log(8) / (delay + 20), rel=1e-12)
    # The baseline is the memoryless predictor's mean cross-entropy over a batch: blank with
    # certainty for the first T+10 steps, uniform over the 8 symbols for the last 10.
    b = copy_memory.batch(_config(copy_memory, delay=delay), 0, "test", 0, 3)
    probs = np.zeros((delay + 20, 10))
    probs[: delay + 10, 0] = 1.0
    probs[delay + 10 :, 1:9] = 1 / 8
    nll = -np.log(np.take_along_axis(probs[None], b.targets[..., None], axis=-1))[..., 0]
    assert nll[b.loss_mask].mean() == pytest.approx(spec.baseline, rel=1e-12)


def test_copy_memory_configs():
    assert copy_memory.small_config().delay == 100
    assert tuple(copy_memory.small_config().delays) == (50, 100, 200)
    assert copy_memory.full_config().delay == 1000
    assert tuple(copy_memory.full_config().delays) == (500, 1000)


@pytest.mark.parametrize("delay", [0, -3, 2.5, True, "100"])
def test_copy_memory_bad_delay(delay):
    config = _config(copy_memory, delay=delay)
    with pytest.raises(ValueError, match=r"config\.delay"):
        copy_memory.spec(config)
    with pytest.raises(ValueError, match=r"config\.delay"):
        copy_memory.batch(config, 0, "train", 0, 2)


# ----------------------------------------------------------------------------- selective copy


@pytest.mark.parametrize("length,num_tokens", [(256, 8), (40, 16), (33, 16), (32, 16), (5, 1)])
def test_selective_copy_brute_force(length, num_tokens):
    config = _config(selective_copy, length=length, num_tokens=num_tokens)
    b = selective_copy.batch(config, 2, "train", 5, 20)
    field = length - num_tokens
    for x, y, m in zip(b.inputs, b.targets, b.loss_mask, strict=True):
        x = x.tolist()
        data = [t for t in x[:field] if t != 0]  # read the field in order, skipping noise
        assert len(data) == num_tokens
        assert all(2 <= t <= 15 for t in data)
        assert x[:field].count(0) == length - 2 * num_tokens
        assert x[field:] == [1] * num_tokens
        assert 1 not in x[:field]
        assert m.tolist() == [False] * field + [True] * num_tokens
        assert y[m].tolist() == data


def test_selective_copy_positions_vary_and_cover_field():
    config = selective_copy.small_config()
    b = selective_copy.batch(config, 0, "train", 0, 500)
    field = config.length - config.num_tokens
    occupied = (b.inputs[:, :field] >= 2).mean(axis=0)
    # Every field position holds data sometimes, at about M / (L + M) of the rows.
    assert occupied.min() > 0
    np.testing.assert_allclose(occupied.mean(), config.num_tokens / field)
    data = b.targets[b.loss_mask]
    np.testing.assert_allclose(np.bincount(data, minlength=16)[2:] / data.size, 1 / 14, atol=0.01)


def test_selective_copy_spec_and_configs():
    for make in (selective_copy.small_config, selective_copy.full_config):
        spec = selective_copy.spec(make())
        assert spec.vocab_size == 16 and spec.num_outputs == 16
        assert spec.metric == "accuracy"
        assert spec.baseline == pytest.approx(1 / 14)
    small, full = selective_copy.small_config(), selective_copy.full_config()
    assert (small.length, small.num_tokens) == (256, 8)
    assert (full.length, full.num_tokens) == (4096, 16)
    assert (full.model_hint.num_layers, full.model_hint.hidden_size) == (2, 64)
    b = selective_copy.batch(full, 0, "train", 0, 2)
    assert b.inputs.shape == (2, 4096) and b.loss_mask.sum() == 32


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("length", 0, r"config\.length"),
        ("length", 15, r"config\.length must be at least 16"),
        ("num_tokens", 0, r"config\.num_tokens"),
        ("num_tokens", 1.5, r"config\.num_tokens"),
    ],
)
def test_selective_copy_bad_config(field, value, match):
    config = _config(selective_copy, **{"length": 64, "num_tokens": 8, field: value})
    with pytest.raises(ValueError, match=match):
        selective_copy.spec(config)
    with pytest.raises(ValueError, match=match):
        selective_copy.batch(config, 0, "train", 0, 2)


# ----------------------------------------------------------------------------- induction heads


@pytest.mark.parametrize("length", [3, 4, 64, 128, 1000])
def test_induction_heads_brute_force(length):
    config = _config(induction_heads, length=length)
    b = induction_heads.batch(config, 3, "valid", 2, 50)
    for x, y, m in zip(b.inputs, b.targets, b.loss_mask, strict=True):
        x = x.tolist()
        triggers = [i for i, t in enumerate(x) if t == 0]
        assert len(triggers) == 2
        first, last = triggers
        assert last == length - 1
        assert first <= length - 3
        assert all(1 <= t <= 15 for i, t in enumerate(x) if i not in triggers)
        assert m.tolist() == [False] * (length - 1) + [True]
        assert y[-1] == x[first + 1]


def test_induction_heads_trigger_position_uniform():
    config = _config(induction_heads, length=8)
    b = induction_heads.batch(config, 0, "train", 0, 6000)
    first = np.argmax(b.inputs == 0, axis=1)
    counts = np.bincount(first, minlength=8)
    assert counts[6:].sum() == 0
    np.testing.assert_allclose(counts[:6] / counts.sum(), 1 / 6, atol=0.02)
    answers = b.targets[:, -1]
    np.testing.assert_allclose(np.bincount(answers, minlength=16)[1:] / 6000, 1 / 15, atol=0.02)


def test_induction_heads_configs_and_test_lengths():
    small, full = induction_heads.small_config(), induction_heads.full_config()
    assert small.length == 128 and full.length == 256
    assert tuple(small.test_lengths) == (64, 128, 256, 512, 1024, 2048, 4096)
    assert tuple(full.test_lengths) == tuple(2**k for k in range(6, 21))
    for make in (induction_heads.small_config, induction_heads.full_config):
        spec = induction_heads.spec(make())
        assert spec.vocab_size == 16 and spec.num_outputs == 16 and spec.metric == "accuracy"
        assert spec.baseline == pytest.approx(1 / 15)
    # Evaluation at another length overrides config.length; the original is untouched.
    at = induction_heads.at_length(small, 4096)
    assert at.length == 4096 and small.length == 128
    assert induction_heads.batch(at, 0, "test", 0, 2).inputs.shape == (2, 4096)


@pytest.mark.parametrize("length", [0, 2, -5, 64.0])
def test_induction_heads_bad_length(length):
    config = _config(induction_heads, length=length)
    with pytest.raises(ValueError, match=r"config\.length"):
        induction_heads.spec(config)
    with pytest.raises(ValueError, match=r"config\.length"):
        induction_heads.batch(config, 0, "train", 0, 2)


# ----------------------------------------------------------------------------- MQAR


def _mqar_tables(b, num_pairs):
    """Per row: the key -> value dictionary rebuilt from the key-value block."""
    return [
        dict(zip(x[0 : 2 * num_pairs : 2].tolist(), x[1 : 2 * num_pairs : 2].tolist(), strict=True))
        for x in b.inputs
    ]


@pytest.mark.parametrize(
    "vocab_size,length,num_pairs",
    [(512, 64, 4), (512, 128, 8), (64, 40, 10), (8, 12, 3), (16, 17, 3), (8192, 256, 16)],
)
def test_mqar_zoology_brute_force(vocab_size, length, num_pairs):
    config = _config(mqar, vocab_size=vocab_size, length=length, num_pairs=num_pairs)
    b = mqar.batch(config, 4, "test", 9, 30)
    half = vocab_size // 2
    for x, y, m in zip(b.inputs, b.targets, b.loss_mask, strict=True):
        x, y = x.tolist(), y.tolist()
        keys, values = x[0 : 2 * num_pairs : 2], x[1 : 2 * num_pairs : 2]
        # Keys distinct, from the lower half without 0; values distinct, from the upper half.
        assert len(set(keys)) == num_pairs and all(1 <= k < half for k in keys)
        assert len(set(values)) == num_pairs and all(half <= v < vocab_size for v in values)
        table = dict(zip(keys, values, strict=True))
        queries = [i for i, mm in enumerate(m.tolist()) if mm]
        # One query per key, each at a slot 2P + 2g after the block, none inside it.
        assert len(queries) == num_pairs
        assert all(i >= 2 * num_pairs and (i - 2 * num_pairs) % 2 == 0 for i in queries)
        assert max(queries) <= 2 * num_pairs + 2 * ((length - 2 * num_pairs) // 2 - 1)
        assert sorted(x[i] for i in queries) == sorted(keys)
        for i in range(length):
            assert y[i] == (table[x[i]] if i in queries else 0)


def test_mqar_zoology_filler_is_uniform_over_the_vocabulary():
    vocab_size, num_pairs = 16, 2
    config = _config(mqar, vocab_size=vocab_size, length=64, num_pairs=num_pairs)
    b = mqar.batch(config, 0, "train", 0, 1000)
    filler = ~b.loss_mask
    filler[:, : 2 * num_pairs] = False
    tokens = b.inputs[filler]
    assert tokens.size == 1000 * (64 - 3 * num_pairs)
    # Every token of the vocabulary, 0 and the keys and values included, is equally likely.
    np.testing.assert_allclose(
        np.bincount(tokens, minlength=vocab_size) / tokens.size, 1 / 16, atol=0.004
    )
    # Random per position: no row is one repeated token.
    rows = [np.unique(x[f]).size for x, f in zip(b.inputs, filler, strict=True)]
    assert min(rows) > 5
    # random_non_queries=False: the filler of the released Fig. 2 configuration, 0.
    zero = mqar.batch(_config(mqar, random_non_queries=False), 0, "train", 0, 50)
    assert np.all(zero.inputs[:, 8:][~zero.loss_mask[:, 8:]] == 0)
    assert np.all(zero.inputs[zero.loss_mask] >= 1)


def _chi_square(counts, expected):
    """Pearson's statistic and its degrees of freedom, the bins with expected < 5 merged."""
    keep = expected >= 5
    counts = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    if expected[-1] == 0:
        counts, expected = counts[:-1], expected[:-1]
    return float(((counts - expected) ** 2 / expected).sum()), counts.size - 1


def _chi_square_bound(df):
    """Far above the 99.9% point of chi-square(df) (59.7 at df = 30), far below a wrong law's."""
    return df + 5 * math.sqrt(2 * df)


def test_mqar_query_gaps_follow_the_power_law():
    n, num_pairs, length = 4000, 3, 64
    config = _config(mqar, length=length, num_pairs=num_pairs)
    b = mqar.batch(config, 1, "train", 0, n)
    num_slots = (length - 2 * num_pairs) // 2  # 29
    # p_g ∝ (g + 1)^(a - 1), a = 0.01, computed here from the definition.
    p = np.array([(g + 1.0) ** (0.01 - 1.0) for g in range(num_slots)])
    p /= p.sum()
    np.testing.assert_allclose(mqar.gap_probabilities(num_slots, 0.01), p, rtol=1e-12)
    keys = b.inputs[:, 0 : 2 * num_pairs : 2]
    query_at = np.argmax(
        b.loss_mask[:, None, :] & (b.inputs[:, None, :] == keys[:, :, None]), axis=2
    )
    slots = (query_at - 2 * num_pairs) // 2  # (n, P): the slot of key j
    # Pair 1's slot is drawn from p itself.
    first = np.bincount(slots[:, 0], minlength=num_slots)
    stat, df = _chi_square(first, n * p)
    assert stat < _chi_square_bound(df), (stat, df)
    # Pair 2's slot is drawn from p without pair 1's slot: P(g) = Σ_{i≠g} p_i p_g / (1 - p_i).
    second_p = np.array(
        [
            sum(p[i] * p[g] / (1 - p[i]) for i in range(num_slots) if i != g)
            for g in range(num_slots)
        ]
    )
    np.testing.assert_allclose(second_p.sum(), 1.0)
    second = np.bincount(slots[:, 1], minlength=num_slots)
    stat, df = _chi_square(second, n * second_p)
    assert stat < _chi_square_bound(df), (stat, df)
    # ... which is not p: drawing with replacement, or every pair from p, would fail here.
    stat_p, _ = _chi_square(second, n * p)
    assert stat_p > _chi_square_bound(df)
    # Short gaps dominate: the nearest slot holds ~25% of the first queries, and it is
    # 29^0.99 ≈ 28 times as likely as the farthest one (uniform slots would give 1/29 and 1).
    assert first[0] / n == pytest.approx(p[0], abs=0.03) and p[0] > 0.24
    assert 15 < first[0] / first[-1] < 50
    # power_a = 1 is uniform over the slots.
    flat = mqar.batch(_config(mqar, length=length, num_pairs=1, power_a=1.0), 1, "train", 0, n)
    flat_slots = (np.argmax(flat.loss_mask, axis=1) - 2) // 2
    stat, df = _chi_square(np.bincount(flat_slots, minlength=31), np.full(31, n / 31))
    assert stat < _chi_square_bound(df), (stat, df)


def test_mqar_vocab_8192():
    config = mqar.full_config()
    assert config.vocab_size == 8192 and config.variant == "zoology"
    b = mqar.batch(config, 2, "train", 5, 4)
    assert b.inputs.shape == (4, 512) and b.inputs.dtype == np.int32
    num_pairs = config.num_pairs
    keys, values = b.inputs[:, 0:128:2], b.inputs[:, 1:128:2]
    assert keys.min() >= 1 and keys.max() < 4096 and values.min() >= 4096 and values.max() < 8192
    assert all(np.unique(k).size == num_pairs for k in keys)
    assert all(np.unique(v).size == num_pairs for v in values)
    assert np.all(b.loss_mask.sum(axis=1) == num_pairs)
    tables = _mqar_tables(b, num_pairs)
    for x, y, m, table in zip(b.inputs, b.targets, b.loss_mask, tables, strict=True):
        assert [table[k] for k in x[m].tolist()] == y[m].tolist()
    filler = b.inputs[:, 128:][~b.loss_mask[:, 128:]]
    assert filler.min() < 200 and filler.max() > 8000  # the whole vocabulary


@pytest.mark.parametrize("variant", ["zoology", "uniform"])
def test_mqar_determinism_per_seed_split_step(variant):
    config = _config(mqar, vocab_size=8192, length=128, num_pairs=8, variant=variant)
    a = mqar.batch(config, 3, "valid", 4, 6)
    again = mqar.batch(config, 3, "valid", 4, 6)
    for x, y in zip(a[:3], again[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    for seed, split, step in ((3, "valid", 5), (3, "test", 4), (4, "valid", 4)):
        assert not np.array_equal(a.inputs, mqar.batch(config, seed, split, step, 6).inputs)


def test_mqar_configs_without_the_new_fields_are_the_zoology_default():
    # A config saved before `variant` existed reads as the default.
    old = ml_collections.ConfigDict({"vocab_size": 512, "length": 64, "num_pairs": 4})
    new = mqar.small_config()
    assert (new.variant, new.power_a, new.random_non_queries) == ("zoology", 0.01, True)
    for x, y in zip(
        mqar.batch(old, 0, "train", 1, 8)[:3], mqar.batch(new, 0, "train", 1, 8)[:3], strict=True
    ):
        np.testing.assert_array_equal(x, y)


# The earlier generator (variant="uniform"), recorded before the Zoology default was added: one
# small batch in full and the SHA-256 (first 16 hex digits) of the inputs, targets and loss_mask.
UNIFORM_INPUTS = [[5, 11, 4, 13, 3, 11, 4, 0, 0, 3, 0, 5], [5, 13, 2, 8, 6, 14, 2, 0, 0, 0, 5, 6]]
UNIFORM_TARGETS = [[0, 0, 0, 0, 0, 0, 13, 0, 0, 11, 0, 11], [0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 13, 14]]
UNIFORM_DIGESTS = {
    "small": ((0, "train", 0, 8), ("f3650cf5cadf1964", "e81a152d13721191", "02c7ebb6e6f5a2b7")),
    "full": ((3, "test", 7, 4), ("eef6c82f5a166299", "82de67ad327a29a9", "be1a1fc411f1e52b")),
}


def test_mqar_uniform_variant_is_unchanged():
    config = ml_collections.ConfigDict(
        {"vocab_size": 16, "length": 12, "num_pairs": 3, "variant": "uniform"}
    )
    b = mqar.batch(config, 5, "valid", 2, 2)
    assert b.inputs.tolist() == UNIFORM_INPUTS
    assert b.targets.tolist() == UNIFORM_TARGETS
    np.testing.assert_array_equal(b.loss_mask, np.array(UNIFORM_TARGETS) != 0)
    for size, make in (("small", mqar.small_config), ("full", mqar.full_config)):
        config = make()
        config.variant = "uniform"
        args, digests = UNIFORM_DIGESTS[size]
        b = mqar.batch(config, *args)
        got = tuple(
            hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16] for a in b[:3]
        )
        assert got == digests, size


@pytest.mark.parametrize(
    "vocab_size,length,num_pairs", [(512, 64, 4), (512, 128, 8), (64, 30, 10), (8, 9, 3)]
)
def test_mqar_uniform_brute_force(vocab_size, length, num_pairs):
    config = _config(
        mqar, vocab_size=vocab_size, length=length, num_pairs=num_pairs, variant="uniform"
    )
    b = mqar.batch(config, 4, "test", 9, 30)
    half = vocab_size // 2
    for x, y, m in zip(b.inputs, b.targets, b.loss_mask, strict=True):
        x = x.tolist()
        # Rebuild the key -> value dictionary from the prefix.
        table = {}
        for i in range(num_pairs):
            key, value = x[2 * i], x[2 * i + 1]
            assert 1 <= key < half and half <= value < vocab_size
            assert key not in table
            table[key] = value
        queries = [(i, t) for i, t in enumerate(x) if i >= 2 * num_pairs and t != 0]
        assert sorted(t for _, t in queries) == sorted(table)  # every key exactly once
        assert sorted(i for i, mm in enumerate(m.tolist()) if mm) == [i for i, _ in queries]
        for i, key in queries:
            assert y[i] == table[key]


def test_mqar_uniform_query_order_and_positions_random():
    config = _config(mqar, variant="uniform")
    b = mqar.batch(config, 0, "train", 0, 400)
    num_pairs = config.num_pairs
    keys = b.inputs[:, 0 : 2 * num_pairs : 2]
    query_keys = b.inputs[b.loss_mask].reshape(400, num_pairs)  # in position order
    same_order = np.all(query_keys == keys, axis=1).mean()
    assert same_order < 0.2  # 1/24 for 4 pairs if the order is uniform
    hits = b.loss_mask[:, 2 * num_pairs :].mean(axis=0)
    assert hits.min() > 0  # every query slot is used sometimes


def test_mqar_spec_and_configs():
    small, full = mqar.small_config(), mqar.full_config()
    assert (small.vocab_size, small.length, small.num_pairs) == (512, 64, 4)
    assert [tuple(s) for s in small.settings] == [(64, 4), (128, 8)]
    assert (full.vocab_size, full.length, full.num_pairs) == (8192, 512, 64)
    assert (256, 16) in [tuple(s) for s in full.settings]
    for config, values in ((small, 256), (full, 4096)):
        assert (config.variant, config.power_a, config.random_non_queries) == (
            "zoology",
            0.01,
            True,
        )
        spec = mqar.spec(config)
        assert spec.vocab_size == config.vocab_size == spec.num_outputs
        assert spec.metric == "accuracy"
        assert spec.baseline == pytest.approx(1 / values)
    for variant in mqar.VARIANTS:
        for length, num_pairs in full.settings:
            config = _config(
                mqar, vocab_size=8192, length=length, num_pairs=num_pairs, variant=variant
            )
            b = mqar.batch(config, 0, "train", 0, 2)
            assert b.inputs.shape == (2, length) and b.loss_mask.sum() == 2 * num_pairs


def test_mqar_gap_probabilities():
    p = mqar.gap_probabilities(100)
    assert p.shape == (100,) and p.dtype == np.float64
    assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p) < 0)
    assert p[0] / p[9] == pytest.approx(10**0.99)
    np.testing.assert_allclose(mqar.gap_probabilities(7, 1.0), np.full(7, 1 / 7))
    with pytest.raises(ValueError, match="num_slots"):
        mqar.gap_probabilities(0)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"num_pairs": 0}, r"config\.num_pairs"),
        ({"length": 15, "num_pairs": 4}, r"config\.length must be at least 16"),
        (
            {"length": 11, "num_pairs": 4, "variant": "uniform"},
            r"config\.length must be at least 12",
        ),
        ({"vocab_size": 8, "num_pairs": 4}, r"config\.num_pairs must be at most 3"),
        ({"vocab_size": 0}, r"config\.vocab_size"),
        ({"length": "64"}, r"config\.length"),
        ({"variant": "zoo"}, r"config\.variant"),
        ({"power_a": 0.0}, r"config\.power_a"),
        ({"power_a": -0.5}, r"config\.power_a"),
        ({"power_a": math.inf}, r"config\.power_a"),
        ({"power_a": True}, r"config\.power_a"),
        ({"power_a": "0.01"}, r"config\.power_a"),
        ({"random_non_queries": 1}, r"config\.random_non_queries"),
    ],
)
def test_mqar_bad_config(overrides, match):
    config = _config(mqar, **overrides)
    with pytest.raises(ValueError, match=match):
        mqar.spec(config)
    with pytest.raises(ValueError, match=match):
        mqar.batch(config, 0, "train", 0, 2)
