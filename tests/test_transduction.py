"""Tests for the transduction tasks: reverse, sort, addition and date normalisation."""

import collections
import datetime
import itertools
import re

import ml_collections
import numpy as np
import pytest

from recurrax import tasks
from recurrax.tasks import dates, transduction
from recurrax.tasks.spec import Batch, Task, TaskSpec
from recurrax.text.special_tokens import EOS, PAD, SPECIAL_TOKENS

# (name, module, small config, full config) for every task.
TASKS = {
    "reverse": (transduction, transduction.small_config, transduction.full_config),
    "sort": (transduction, transduction.small_config, transduction.full_config),
    "addition": (
        transduction,
        transduction.addition_small_config,
        transduction.addition_full_config,
    ),
    "dates": (dates, dates.small_config, dates.full_config),
}
NAMES = tuple(TASKS)


def _task(name):
    return tasks.get(name)


def _config(make, **overrides):
    """A config with fields replaced (built afresh: ConfigDict refuses type changes)."""
    return ml_collections.ConfigDict({**make().to_dict(), **overrides})


def _rows(batch):
    """(source ids, target ids before <eos>) of every row, as lists."""
    rows = []
    for x, n, y in zip(batch.inputs, batch.lengths, batch.targets, strict=True):
        eos = int(np.flatnonzero(y == EOS)[0])
        rows.append((x[:n].tolist(), y[:eos].tolist()))
    return rows


# ----------------------------------------------------------------------------- registry and spec


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_a_transduction_spec(name):
    module, small, full = TASKS[name]
    assert name in tasks.names()
    task = _task(name)
    assert isinstance(task, Task) and task.name == name
    assert task.small_config is small and task.full_config is full
    for make in (small, full):
        config = make()
        spec = task.spec(config)
        assert isinstance(spec, TaskSpec) and spec.name == name
        assert spec.input == "tokens" and spec.target == "transduction"
        assert spec.loss == "cross_entropy" and spec.metric == "exact_match"
        assert spec.solved_above == 0.99 and 0.0 <= spec.baseline < 1.0
        sources, targets = module.source_symbols(config), module.target_symbols(config)
        assert spec.vocab_size == len(sources) and spec.num_outputs == len(targets)
        assert sources[:4] == SPECIAL_TOKENS and targets[:4] == SPECIAL_TOKENS
        assert len(set(sources)) == len(sources) and len(set(targets)) == len(targets)


def test_the_long_variant_reaches_length_50():
    config = transduction.full_config()
    assert config.max_length == config.eval_max_length == 50
    assert transduction.padded_lengths(config) == (50, 51)


# ----------------------------------------------------------------------------- layout


def _check_layout(batch, spec, source_length, target_length, batch_size):
    assert isinstance(batch, Batch) and batch.resets is None
    assert batch.inputs.shape == (batch_size, source_length) and batch.inputs.dtype == np.int32
    assert batch.lengths.shape == (batch_size,) and batch.lengths.dtype == np.int32
    assert batch.targets.shape == (batch_size, target_length) and batch.targets.dtype == np.int32
    assert batch.loss_mask.shape == (batch_size, target_length)
    assert batch.loss_mask.dtype == np.bool_
    # Sources: symbols (ids >= 4) up to the length, PAD after; the length counts the non-PAD ids.
    assert np.all(batch.lengths >= 1)
    np.testing.assert_array_equal(batch.lengths, np.sum(batch.inputs != PAD, axis=1))
    real = np.arange(source_length)[None, :] < batch.lengths[:, None]
    assert np.all(batch.inputs[real] >= 4) and np.all(batch.inputs[~real] == PAD)
    assert batch.inputs.max() < spec.vocab_size
    # Targets: symbols, exactly one EOS, PAD after it; the mask covers the symbols and the EOS.
    assert np.all(np.sum(batch.targets == EOS, axis=1) == 1)
    eos = np.argmax(batch.targets == EOS, axis=1)
    position = np.arange(target_length)[None, :]
    np.testing.assert_array_equal(batch.loss_mask, position <= eos[:, None])
    assert np.all(batch.targets[position < eos[:, None]] >= 4)
    assert np.all(batch.targets[position > eos[:, None]] == PAD)
    assert batch.targets.max() < spec.num_outputs


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", ["small", "full"])
def test_layout(name, size):
    module, small, full = TASKS[name]
    config = (small if size == "small" else full)()
    task = _task(name)
    spec = task.spec(config)
    source_length, target_length = module.padded_lengths(config)
    for split, step in (("train", 0), ("train", 5), ("valid", 1), ("test", 2)):
        batch = task.batch(config, 3, split, step, 16)
        # The shapes are the config's, whatever the split and step: a jitted step compiles once.
        _check_layout(batch, spec, source_length, target_length, 16)


@pytest.mark.parametrize("name", NAMES)
def test_determinism(name):
    task = _task(name)
    config = task.small_config()
    a = task.batch(config, 7, "train", 11, 8)
    b = task.batch(config, 7, "train", 11, 8)
    for x, y in zip(a, b, strict=True):
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
    for other in (
        task.batch(config, 7, "train", 12, 8),
        task.batch(config, 7, "valid", 11, 8),
        task.batch(config, 7, "test", 11, 8),
        task.batch(config, 8, "train", 11, 8),
    ):
        assert not np.array_equal(a.inputs, other.inputs)


@pytest.mark.parametrize("name", NAMES)
def test_bad_batch_arguments(name):
    task = _task(name)
    config = task.small_config()
    with pytest.raises(ValueError, match="batch_size"):
        task.batch(config, 0, "train", 0, 0)
    with pytest.raises(ValueError, match="split"):
        task.batch(config, 0, "dev", 0, 2)
    with pytest.raises(ValueError, match="step"):
        task.batch(config, 0, "train", -1, 2)


def test_pack_layout_by_hand_and_its_errors():
    b = transduction.pack([[7], [4, 5, 6]], [[], [6, 5, 4]], 4, 5)
    assert b.inputs.tolist() == [[7, 0, 0, 0], [4, 5, 6, 0]]
    assert b.lengths.tolist() == [1, 3]
    assert b.targets.tolist() == [[3, 0, 0, 0, 0], [6, 5, 4, 3, 0]]
    assert b.loss_mask.tolist() == [[True] + [False] * 4, [True] * 4 + [False]]
    with pytest.raises(ValueError, match=r"sources\[0\]"):
        transduction.pack([[]], [[4]], 4, 5)
    with pytest.raises(ValueError, match=r"sources\[0\]"):
        transduction.pack([[4] * 5], [[4]], 4, 5)
    with pytest.raises(ValueError, match=r"targets\[1\]"):
        transduction.pack([[4], [4]], [[4], [4] * 5], 4, 5)
    with pytest.raises(ValueError, match="same positive number"):
        transduction.pack([[4]], [[4], [5]], 4, 5)


# ----------------------------------------------------------------------------- reverse and sort


@pytest.mark.parametrize("name", ["reverse", "sort"])
def test_string_targets_against_python(name):
    config = transduction.small_config()
    task = _task(name)
    for split in ("train", "test"):
        batch = task.batch(config, 0, split, 4, 64)
        for b, (source, target) in enumerate(_rows(batch)):
            expected = source[::-1] if name == "reverse" else sorted(source)
            assert target == expected
            assert all(4 <= s < 4 + config.num_symbols for s in source)
            text = transduction.decode_source(config, batch.inputs[b])
            out = transduction.decode_target(config, batch.targets[b])
            assert out == (text[::-1] if name == "reverse" else "".join(sorted(text)))


@pytest.mark.parametrize("name", ["reverse", "sort"])
def test_eval_lengths_are_honoured(name):
    config = _config(
        transduction.small_config, min_length=1, max_length=5, eval_min_length=8, eval_max_length=12
    )
    task = _task(name)
    assert transduction.padded_lengths(config) == (12, 13)
    seen = {}
    for split in ("train", "valid", "test"):
        lengths = np.concatenate([task.batch(config, 1, split, s, 128).lengths for s in range(4)])
        seen[split] = set(lengths.tolist())
        batch = task.batch(config, 1, split, 0, 4)
        assert batch.inputs.shape == (4, 12) and batch.targets.shape == (4, 13)
    # Every length of each range appears (512 draws over 5 values), and none outside it.
    assert seen["train"] == {1, 2, 3, 4, 5}
    assert seen["valid"] == seen["test"] == {8, 9, 10, 11, 12}


def test_symbols_are_uniform():
    config = _config(transduction.small_config, num_symbols=4, min_length=20, max_length=20)
    batch = transduction.reverse_batch(config, 0, "train", 0, 200)
    counts = np.bincount(batch.inputs.ravel(), minlength=8)[4:]
    # 4000 draws: each share within 0.03 of 1/4 (about 4 standard deviations).
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.03)


def _brute_force_copy_baseline(k, low, high, correct):
    shares = []
    for length in range(low, high + 1):
        strings = list(itertools.product(range(k), repeat=length))
        shares.append(sum(correct(s) for s in strings) / len(strings))
    return float(np.mean(shares))


@pytest.mark.parametrize("k,low,high", [(2, 1, 6), (3, 2, 5), (5, 1, 4)])
def test_copy_baselines_by_brute_force(k, low, high):
    config = _config(
        transduction.small_config,
        num_symbols=k,
        min_length=1,
        max_length=1,
        eval_min_length=low,
        eval_max_length=high,
    )
    palindrome = _brute_force_copy_baseline(k, low, high, lambda s: s == s[::-1])
    ordered = _brute_force_copy_baseline(k, low, high, lambda s: list(s) == sorted(s))
    assert transduction.reverse_baseline(config) == pytest.approx(palindrome, rel=1e-12)
    assert transduction.sort_baseline(config) == pytest.approx(ordered, rel=1e-12)
    assert transduction.reverse_spec(config).baseline == transduction.reverse_baseline(config)
    assert transduction.sort_spec(config).baseline == transduction.sort_baseline(config)


def test_copy_baseline_matches_the_generator():
    config = _config(transduction.small_config, num_symbols=2, eval_min_length=1, eval_max_length=4)
    batch = transduction.reverse_batch(config, 0, "test", 0, 4000)
    copies = [source == target for source, target in _rows(batch)]
    # Exact value (1 + 1/2 + 1/2 + 1/4) / 4 = 0.5625; 4000 draws: standard deviation 0.008.
    assert transduction.reverse_baseline(config) == 0.5625
    assert abs(np.mean(copies) - 0.5625) < 0.035


def test_many_symbols_print_with_spaces():
    config = _config(transduction.small_config, num_symbols=30)
    symbols = transduction.source_symbols(config)
    assert symbols[4:7] == ("s0", "s1", "s2") and len(symbols) == 34
    assert transduction.decode_target(config, [4, 33, EOS, 5]) == "s0 s29"
    letters = transduction.source_symbols(transduction.small_config())
    assert letters[4:] == tuple("abcdefghij")


def test_decode_stops_and_checks():
    config = transduction.small_config()
    assert transduction.decode_target(config, np.array([6, 5, 4, EOS, 7, 0])) == "cba"
    assert transduction.decode_target(config, [6, 5, PAD, 7]) == "cb"
    assert transduction.decode_source(config, [6, EOS, 5, PAD]) == "c<eos>b"
    with pytest.raises(ValueError, match="ids"):
        transduction.decode_target(config, [4, 14])
    with pytest.raises(ValueError, match="ids"):
        transduction.decode_target(config, [-1])


# ----------------------------------------------------------------------------- addition


def test_addition_targets_against_python():
    config = transduction.addition_small_config()
    batch = transduction.addition_batch(config, 0, "train", 0, 256)
    for b in range(256):
        source = transduction.decode_source(config, batch.inputs[b])
        a, c = source.split("+")
        assert transduction.decode_target(config, batch.targets[b]) == str(int(a) + int(c))
        for operand in (a, c):
            assert 1 <= len(operand) <= 5 and operand.isdigit()
            assert operand == "0" or not operand.startswith("0")


def test_addition_token_ids():
    config = transduction.addition_small_config()
    assert transduction.source_symbols(config)[4:] == tuple("0123456789+")
    assert transduction.target_symbols(config)[4:] == tuple("0123456789")
    assert transduction.padded_lengths(config) == (11, 7)
    batch = transduction.addition_batch(config, 2, "test", 0, 32)
    for source, target in _rows(batch):
        assert source.count(14) == 1  # one '+'
        assert all(4 <= t <= 13 for t in target)


def test_addition_operand_distribution():
    config = _config(transduction.addition_small_config, max_digits=3)
    operands = []
    for step in range(4):
        batch = transduction.addition_batch(config, 0, "train", step, 500)
        for b in range(500):
            operands += transduction.decode_source(config, batch.inputs[b]).split("+")
    digits = collections.Counter(len(x) for x in operands)
    # 4000 operands, digit counts uniform over 1..3: each share within 0.04 of 1/3.
    assert set(digits) == {1, 2, 3}
    assert all(abs(n / len(operands) - 1 / 3) < 0.04 for n in digits.values())
    singles = collections.Counter(x for x in operands if len(x) == 1)
    assert set(singles) == set("0123456789")
    leading = collections.Counter(x[0] for x in operands if len(x) > 1)
    assert set(leading) == set("123456789")


def test_addition_past_int64():
    config = _config(transduction.addition_small_config, max_digits=30)
    assert transduction.padded_lengths(config) == (61, 32)
    batch = transduction.addition_batch(config, 0, "train", 0, 64)
    lengths = []
    for b in range(64):
        a, c = transduction.decode_source(config, batch.inputs[b]).split("+")
        assert int(transduction.decode_target(config, batch.targets[b])) == int(a) + int(c)
        lengths += [len(a), len(c)]
    assert max(lengths) > 19  # wider than any int64


def test_addition_one_digit_fills_the_shape():
    config = _config(transduction.addition_small_config, max_digits=1)
    batch = transduction.addition_batch(config, 0, "train", 0, 400)
    pairs = set()
    for source, target in _rows(batch):
        a, c = source[0] - 4, source[2] - 4
        assert int("".join(str(t - 4) for t in target)) == a + c
        pairs.add((a, c))
    assert len(pairs) > 90  # of the 100 pairs, in 400 draws


# ----------------------------------------------------------------------------- dates

# A parser independent of the generator: Python's strptime (case-insensitive, English in the C
# locale), one pattern per format, after dropping ordinal suffixes.
PATTERNS = (
    "%d %B %Y",
    "%B %d, %Y",
    "%b %d %Y",
    "%d-%b-%Y",
    "%d %b %Y",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%m/%d/%Y",
    "%Y%m%d",
    "%A, %d %B %Y",
    "%A, %B %d, %Y",
    "%a %b %d %Y",
    "%d of %B %Y",
)


def _parse(text):
    """Every date that some pattern reads in ``text``."""
    plain = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text, flags=re.IGNORECASE)
    found = set()
    for pattern in PATTERNS:
        try:
            found.add(datetime.datetime.strptime(plain, pattern).date())
        except ValueError:
            pass
    return found


def test_every_format_by_hand():
    day = datetime.date(2021, 3, 3)  # a Wednesday
    expected = {
        "d_month_yyyy": "3 March 2021",
        "month_d_yyyy": "March 3, 2021",
        "mon_d_yyyy": "Mar 3 2021",
        "d_mon_yyyy": "3-Mar-2021",
        "dd_mon_yyyy": "03 Mar 2021",
        "yyyy_mm_dd": "2021/03/03",
        "dd_mm_yyyy": "03.03.2021",
        "m_d_yyyy": "3/3/2021",
        "yyyymmdd": "20210303",
        "weekday_d_month_yyyy": "Wednesday, 3 March 2021",
        "weekday_month_d_yyyy": "Wednesday, March 3, 2021",
        "wdy_mon_d_yyyy": "Wed Mar 3 2021",
        "dth_of_month_yyyy": "3rd of March 2021",
        "month_dth_yyyy": "March 3rd, 2021",
    }
    assert set(dates.FORMATS) == set(expected) and len(dates.FORMATS) >= 10
    for name, text in expected.items():
        assert dates.render(day, name) == text
        assert dates.render(day, name, "upper") == text.upper()
        assert dates.render(day, name, "lower") == text.lower()
    # Day first with dots, month first with slashes: 11 December is not 12 November.
    late = datetime.date(1999, 12, 11)
    assert dates.render(late, "dd_mm_yyyy") == "11.12.1999"
    assert dates.render(late, "m_d_yyyy") == "12/11/1999"
    assert dates.render(late, "dth_of_month_yyyy", "upper") == "11TH OF DECEMBER 1999"
    with pytest.raises(ValueError, match="format"):
        dates.render(day, "iso")
    with pytest.raises(ValueError, match="case"):
        dates.render(day, "d_month_yyyy", "title")


def test_ordinal_suffixes():
    expected = {1: "st", 2: "nd", 3: "rd", 11: "th", 12: "th", 13: "th", 21: "st", 22: "nd"}
    expected |= {23: "rd", 31: "st", 4: "th", 10: "th", 20: "th", 30: "th"}
    for day, suffix in expected.items():
        assert dates.ordinal_day(day) == f"{day}{suffix}"


def test_dates_targets_sources_and_weekdays():
    config = dates.small_config()
    drawn = dates.examples(config, 0, "train", 0, 700)
    batch = dates.batch(config, 0, "train", 0, 700)
    formats, cases = collections.Counter(), collections.Counter()
    for b, example in enumerate(drawn):
        assert dates.decode_source(config, batch.inputs[b]) == example.source
        assert dates.decode_target(config, batch.targets[b]) == example.date.isoformat()
        assert config.min_year <= example.date.year <= config.max_year
        # The source names exactly one date, the example's, under every format's convention.
        assert _parse(example.source) == {example.date}, example.source
        if "weekday" in example.format or "wdy" in example.format:
            word = example.source.split()[0].rstrip(",").lower()
            weekday = example.date.strftime("%A").lower()
            assert word == (weekday if "weekday" in example.format else weekday[:3])
        formats[example.format] += 1
        cases[example.case] += 1
        if not any(c.isalpha() for c in example.source):
            assert example.case == "capitalised"
        assert example.source == dates.render(example.date, example.format, example.case)
    assert set(formats) == set(dates.FORMATS)
    assert set(cases) == set(dates.CASES)


def test_dates_fixed_case_and_chosen_formats():
    config = _config(dates.small_config, vary_case=False, formats=("m_d_yyyy", "wdy_mon_d_yyyy"))
    drawn = dates.examples(config, 0, "valid", 0, 200)
    assert {e.case for e in drawn} == {"capitalised"}
    assert {e.format for e in drawn} == {"m_d_yyyy", "wdy_mon_d_yyyy"}
    assert dates.padded_lengths(config) == (len("Wed Sep 28 2021"), 11)


def test_dates_held_out_split():
    config = dates.small_config()
    seen = {}
    for split, steps in (("train", 40), ("valid", 10), ("test", 10)):
        seen[split] = set()
        for step in range(steps):
            seen[split] |= {e.date for e in dates.examples(config, 0, split, step, 64)}
    # The rule, checked directly on the ordinals: 0..7 train, 8 valid, 9 test.
    assert {d.toordinal() % 10 for d in seen["train"]} == set(range(8))
    assert {d.toordinal() % 10 for d in seen["valid"]} == {8}
    assert {d.toordinal() % 10 for d in seen["test"]} == {9}
    assert not seen["test"] & seen["train"] and not seen["valid"] & seen["train"]
    assert len(seen["train"]) > 2000 and len(seen["test"]) > 500
    # Across the whole range: 80/10/10 and num_dates agrees with a count by brute force.
    first = datetime.date(config.min_year, 1, 1)
    every = [first + datetime.timedelta(days=i) for i in range(73049)]
    assert every[-1] == datetime.date(config.max_year, 12, 31)
    counts = collections.Counter(dates.split_of(d) for d in every)
    for split in ("train", "valid", "test"):
        assert dates.num_dates(config, split) == counts[split]
        assert abs(counts[split] / len(every) - {"train": 0.8}.get(split, 0.1)) < 1e-3


def test_dates_year_range_is_covered():
    config = _config(dates.small_config, min_year=2000, max_year=2001)
    years = collections.Counter(e.date.year for e in dates.examples(config, 1, "test", 0, 400))
    assert set(years) == {2000, 2001}
    months = {e.date.month for e in dates.examples(config, 1, "train", 0, 400)}
    assert months == set(range(1, 13))


def test_dates_vocabulary_and_widths_by_enumeration():
    """All dates of 2020-2021 in every format and casing: the characters and the longest source."""
    every = [datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(731)]
    characters = set()
    for name in dates.FORMATS:
        texts = [dates.render(d, name, case) for d in every for case in dates.CASES]
        characters |= set("".join(texts))
        config = _config(dates.small_config, formats=(name,))
        assert dates.padded_lengths(config)[0] == max(map(len, texts)), name
    assert characters == set(dates.SOURCE_CHARACTERS)
    assert list(dates.SOURCE_CHARACTERS) == sorted(dates.SOURCE_CHARACTERS)
    assert dates.target_symbols(dates.small_config())[4:] == tuple("0123456789-")


def test_dates_copy_baseline_is_zero():
    config = dates.small_config()
    for example in dates.examples(config, 0, "test", 0, 300):
        assert example.source != example.date.isoformat()
    assert dates.spec(config).baseline == 0.0


# ----------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    "field,overrides",
    [
        ("config.max_length", {"min_length": 6, "max_length": 5}),
        ("config.eval_max_length", {"eval_min_length": 30, "eval_max_length": 29}),
        ("config.num_symbols", {"num_symbols": 1}),
        ("config.min_length", {"min_length": 0}),
        ("config.eval_min_length", {"eval_min_length": 0}),
    ],
)
def test_bad_string_configs(field, overrides):
    config = _config(transduction.small_config, **overrides)
    for call in (
        lambda: transduction.reverse_spec(config),
        lambda: transduction.sort_batch(config, 0, "train", 0, 2),
        lambda: transduction.padded_lengths(config),
        lambda: transduction.source_symbols(config),
    ):
        with pytest.raises(ValueError, match=re.escape(field)):
            call()


def test_bad_addition_config():
    config = _config(transduction.addition_small_config, max_digits=0)
    with pytest.raises(ValueError, match=r"config\.max_digits"):
        transduction.addition_spec(config)
    with pytest.raises(ValueError, match=r"config\.max_digits"):
        transduction.addition_batch(config, 0, "train", 0, 2)


@pytest.mark.parametrize(
    "field,overrides",
    [
        ("config.max_year", {"min_year": 2000, "max_year": 1999}),
        ("config.min_year", {"min_year": 999}),
        ("config.max_year", {"max_year": 10000}),
        ("config.formats", {"formats": ()}),
        ("config.formats", {"formats": ("d_month_yyyy", "iso")}),
        ("config.formats", {"formats": ("yyyymmdd", "yyyymmdd")}),
        ("config.vary_case", {"vary_case": 1}),
    ],
)
def test_bad_dates_configs(field, overrides):
    config = _config(dates.small_config, **overrides)
    with pytest.raises(ValueError, match=re.escape(field)):
        dates.spec(config)
    with pytest.raises(ValueError, match=re.escape(field)):
        dates.batch(config, 0, "train", 0, 2)
