"""Date normalisation: read a calendar date written in one of many styles, write it as ISO 8601.

The source is a date from ``min_year .. max_year`` rendered in one of the :data:`FORMATS`, read as
characters; the target is its ISO form ``YYYY-MM-DD``. For Wednesday 3 March 2021:

========================  ==================================  ============================
format                    template                            example
========================  ==================================  ============================
``d_month_yyyy``          ``{d} {month} {yyyy}``              ``3 March 2021``
``month_d_yyyy``          ``{month} {d}, {yyyy}``             ``March 3, 2021``
``mon_d_yyyy``            ``{mon} {d} {yyyy}``                ``Mar 3 2021``
``d_mon_yyyy``            ``{d}-{mon}-{yyyy}``                ``3-Mar-2021``
``dd_mon_yyyy``           ``{dd} {mon} {yyyy}``               ``03 Mar 2021``
``yyyy_mm_dd``            ``{yyyy}/{mm}/{dd}``                ``2021/03/03``
``dd_mm_yyyy``            ``{dd}.{mm}.{yyyy}``                ``03.03.2021`` (day first)
``m_d_yyyy``              ``{m}/{d}/{yyyy}``                  ``3/3/2021`` (month first)
``yyyymmdd``              ``{yyyy}{mm}{dd}``                  ``20210303``
``weekday_d_month_yyyy``  ``{weekday}, {d} {month} {yyyy}``   ``Wednesday, 3 March 2021``
``weekday_month_d_yyyy``  ``{weekday}, {month} {d}, {yyyy}``  ``Wednesday, March 3, 2021``
``wdy_mon_d_yyyy``        ``{wdy} {mon} {d} {yyyy}``          ``Wed Mar 3 2021``
``dth_of_month_yyyy``     ``{dth} of {month} {yyyy}``         ``3rd of March 2021``
``month_dth_yyyy``        ``{month} {dth}, {yyyy}``           ``March 3rd, 2021``
========================  ==================================  ============================

Fields: ``d`` / ``m`` the day / month without padding, ``dd`` / ``mm`` padded to two digits, ``dth``
the day with its English ordinal suffix (1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, …),
``month`` / ``mon`` the English month name / its first three letters (``Sep``), ``weekday`` /
``wdy`` the weekday name / its first three letters, ``yyyy`` the four-digit year. Every format has
one convention, so every source names exactly one date: the all-numeric formats are told apart by
their separators (``/`` after a leading year: year-month-day; ``.``: day-month-year; ``/`` with a
trailing year: month-day-year) and the year always has four digits. Weekdays are those of the
proleptic Gregorian calendar (Python's :mod:`datetime`), also before 1582.

Each example draws its format uniformly from ``config.formats`` (default all) and, for formats
with words, when ``config.vary_case``, a casing uniformly from :data:`CASES`: as written above
(``capitalised``), ``upper`` (``3RD OF MARCH 2021``) or ``lower`` (``wed mar 3 2021``).

Held-out dates: the dates themselves are split, so no valid or test date is ever a training
example. A date goes to a split by its proleptic Gregorian ordinal ``o`` (``date.toordinal()``):
``o mod 10`` in ``0..7`` train, ``8`` valid, ``9`` test (:func:`split_of`), 80/10/10 of every
year. Each example's date is uniform over its split's dates in the year range (:func:`num_dates`).

Token ids: ``<pad>`` 0, ``<unk>`` 1, ``<sos>`` 2, ``<eos>`` 3, then the source characters
(:data:`SOURCE_CHARACTERS`: every character a format can produce in any casing, sorted) or the
target characters ``0-9`` and ``-``. ``vocab_size = 4 + len(SOURCE_CHARACTERS)``,
``num_outputs = 15``. The batch layout is that of every transduction task
(:func:`recurrax.tasks.transduction.pack`): sources padded to ``S``, the longest rendering any
chosen format can give (:func:`padded_lengths`), targets ``YYYY-MM-DD`` plus ``<eos>``
(``T = 11``). Examples are drawn afresh at every ``(seed, split, step)``.

Metric ``"exact_match"``: the share of dates written exactly; solved above 0.99. Baseline 0: the
copy predictor never matches (no format is ISO 8601), and a predictor that ignores the source and
writes a training date never matches a held-out one.

Source: the translation of human-readable dates into ISO dates, a common first demonstration of
attention in encoder–decoders: the "Neural Machine Translation" programming assignment of the
deeplearning.ai Sequence Models course (A. Ng, Coursera, 2018) and Z. Ahmed 2017, "How to
Visualize Your Recurrent Neural Network with Attention in Keras" (Datalogue). Deliberate
differences: the formats above (English only, one convention each, no two-digit years) and the
casings are this module's; the dates are split into held-out sets rather than drawn from one
pool; the year range is a config field (small 1900..2099, full 1000..2999).
"""

from __future__ import annotations

import datetime
import string
import types
from typing import NamedTuple

import ml_collections
import numpy as np

from recurrax.tasks.spec import SPLITS, Batch, Task, TaskSpec, batch_rng
from recurrax.tasks.transduction import FIRST_SYMBOL, decode, pack
from recurrax.text.special_tokens import SPECIAL_TOKENS
from recurrax.validation import check_positive_int

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
"""Weekday names in the order of ``datetime.date.weekday()`` (Monday is 0)."""

TEMPLATES = types.MappingProxyType(
    {
        "d_month_yyyy": "{d} {month} {yyyy}",
        "month_d_yyyy": "{month} {d}, {yyyy}",
        "mon_d_yyyy": "{mon} {d} {yyyy}",
        "d_mon_yyyy": "{d}-{mon}-{yyyy}",
        "dd_mon_yyyy": "{dd} {mon} {yyyy}",
        "yyyy_mm_dd": "{yyyy}/{mm}/{dd}",
        "dd_mm_yyyy": "{dd}.{mm}.{yyyy}",
        "m_d_yyyy": "{m}/{d}/{yyyy}",
        "yyyymmdd": "{yyyy}{mm}{dd}",
        "weekday_d_month_yyyy": "{weekday}, {d} {month} {yyyy}",
        "weekday_month_d_yyyy": "{weekday}, {month} {d}, {yyyy}",
        "wdy_mon_d_yyyy": "{wdy} {mon} {d} {yyyy}",
        "dth_of_month_yyyy": "{dth} of {month} {yyyy}",
        "month_dth_yyyy": "{month} {dth}, {yyyy}",
    }
)
"""Format name -> template (``str.format`` fields as in the module docstring)."""

FORMATS = tuple(TEMPLATES)
CASES = ("capitalised", "upper", "lower")

MIN_YEAR, MAX_YEAR = 1000, 9999  # four-digit years, so that every ISO target has 10 characters
TARGET_CHARACTERS = string.digits + "-"
TARGET_LENGTH = len("YYYY-MM-DD") + 1  # and <eos>

_SPLIT_OF_RESIDUE = ("train",) * 8 + ("valid", "test")
_SUFFIXES = ("st", "nd", "rd", "th")


def _literal_text() -> str:
    return "".join(
        literal for t in TEMPLATES.values() for literal, *_ in string.Formatter().parse(t)
    )


def _source_characters() -> str:
    words = "".join((*MONTHS, *WEEKDAYS, *_SUFFIXES, _literal_text()))
    return "".join(sorted(set(string.digits + words + words.upper() + words.lower())))


SOURCE_CHARACTERS = _source_characters()
"""Every character a format can produce in any casing, sorted; source id = 4 + its index."""


# ----------------------------------------------------------------------------- rendering


def ordinal_day(day: int) -> str:
    """The day with its English ordinal suffix: 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st.

    Example:
      >>> [ordinal_day(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)]
      ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '23rd', '31st']
    """
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{('th', 'st', 'nd', 'rd', 'th', 'th', 'th', 'th', 'th', 'th')[day % 10]}"


def _fields(date: datetime.date) -> dict[str, str]:
    weekday = WEEKDAYS[date.weekday()]
    month = MONTHS[date.month - 1]
    return {
        "d": str(date.day),
        "dd": f"{date.day:02d}",
        "dth": ordinal_day(date.day),
        "m": str(date.month),
        "mm": f"{date.month:02d}",
        "month": month,
        "mon": month[:3],
        "weekday": weekday,
        "wdy": weekday[:3],
        "yyyy": f"{date.year:04d}",
    }


def render(date: datetime.date, format: str, case: str = "capitalised") -> str:
    """``date`` written in ``format`` (a name in :data:`FORMATS`) and ``case`` (in :data:`CASES`).

    Example:
      >>> day = datetime.date(2021, 3, 3)
      >>> render(day, "weekday_d_month_yyyy"), render(day, "dth_of_month_yyyy", "upper")
      ('Wednesday, 3 March 2021', '3RD OF MARCH 2021')
    """
    if format not in TEMPLATES:
        raise ValueError(f"format must be one of {FORMATS}; got {format!r}")
    if case not in CASES:
        raise ValueError(f"case must be one of {CASES}; got {case!r}")
    text = TEMPLATES[format].format(**_fields(date))
    if case == "upper":
        return text.upper()
    if case == "lower":
        return text.lower()
    return text


_FORMATS_WITH_WORDS = frozenset(
    f for f in FORMATS if any(c.isalpha() for c in render(datetime.date(2021, 3, 3), f))
)


# ----------------------------------------------------------------------------- configs and splits


def small_config() -> ml_collections.ConfigDict:
    """Dates of 1900..2099 in every format, with random casing."""
    return ml_collections.ConfigDict(
        {"min_year": 1900, "max_year": 2099, "formats": FORMATS, "vary_case": True}
    )


def full_config() -> ml_collections.ConfigDict:
    """Dates of 1000..2999 in every format, with random casing."""
    config = small_config()
    config.min_year, config.max_year = 1000, 2999
    return config


def _check_config(config) -> None:
    for field in ("min_year", "max_year"):
        value = config[field]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | np.integer)
            or not MIN_YEAR <= value <= MAX_YEAR
        ):
            raise ValueError(
                f"config.{field} must be an integer year in [{MIN_YEAR}, {MAX_YEAR}]; got {value!r}"
            )
    if config.max_year < config.min_year:
        raise ValueError(
            f"config.max_year must be >= config.min_year ({config.min_year}); got {config.max_year}"
        )
    formats = tuple(config.formats)
    if not formats or len(set(formats)) != len(formats) or not set(formats) <= set(FORMATS):
        raise ValueError(
            f"config.formats must be a non-empty tuple of distinct names from {FORMATS}; "
            f"got {formats!r}"
        )
    if not isinstance(config.vary_case, bool):
        raise ValueError(f"config.vary_case must be a bool; got {config.vary_case!r}")


def split_of(date: datetime.date) -> str:
    """The split that holds ``date``: ``toordinal() mod 10`` in 0..7 train, 8 valid, 9 test.

    Example:
      >>> [split_of(datetime.date(2021, 3, d)) for d in (8, 9, 10, 11)]
      ['train', 'valid', 'test', 'train']
    """
    return _SPLIT_OF_RESIDUE[date.toordinal() % 10]


def _ordinal_range(config) -> tuple[int, int]:
    _check_config(config)
    first = datetime.date(int(config.min_year), 1, 1).toordinal()
    last = datetime.date(int(config.max_year), 12, 31).toordinal()
    return first, last


def num_dates(config, split: str) -> int:
    """How many dates of the year range belong to ``split``.

    Example:
      >>> [num_dates(small_config(), s) for s in ("train", "valid", "test")]
      [58439, 7305, 7305]
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    first, last = _ordinal_range(config)
    residues = [r for r in range(10) if _SPLIT_OF_RESIDUE[r] == split]
    # The ordinals o in [first, last] with o ≡ r (mod 10), counted in closed form.
    return sum((last - r) // 10 - (first - 1 - r) // 10 for r in residues)


def padded_lengths(config) -> tuple[int, int]:
    """``(S, T)``: the longest rendering of any chosen format, and ``T = 11`` (ISO plus ``<eos>``).

    ``S`` renders each template with the widest value of every field (two-digit days, September,
    Wednesday), an upper bound that every date meets or stays under.

    Example:
      >>> padded_lengths(small_config())
      (29, 11)
    """
    _check_config(config)
    widest = {
        **_fields(datetime.date(2000, 12, 28)),
        "month": max(MONTHS, key=len),
        "weekday": max(WEEKDAYS, key=len),
    }
    return max(len(TEMPLATES[f].format(**widest)) for f in config.formats), TARGET_LENGTH


# ----------------------------------------------------------------------------- vocabularies


def source_symbols(config) -> tuple[str, ...]:
    """The string of every source id: the four reserved tokens, then :data:`SOURCE_CHARACTERS`."""
    _check_config(config)
    return SPECIAL_TOKENS + tuple(SOURCE_CHARACTERS)


def target_symbols(config) -> tuple[str, ...]:
    """The string of every target id: the four reserved tokens, then ``0-9`` and ``-``."""
    _check_config(config)
    return SPECIAL_TOKENS + tuple(TARGET_CHARACTERS)


def decode_source(config, ids) -> str:
    """The text of one source row (up to the first ``<pad>``)."""
    return decode(source_symbols(config), ids, stop_at_eos=False)


def decode_target(config, ids) -> str:
    """The text of one target or prediction row (up to the first ``<eos>`` or ``<pad>``).

    Example:
      >>> decode_target(small_config(), [6, 4, 6, 5, 14, 4, 7, 14, 4, 7, 3])
      '2021-03-03'
    """
    return decode(target_symbols(config), ids, stop_at_eos=True)


def spec(config) -> TaskSpec:
    _check_config(config)
    return TaskSpec(
        name="dates",
        input="tokens",
        vocab_size=FIRST_SYMBOL + len(SOURCE_CHARACTERS),
        target="transduction",
        loss="cross_entropy",
        num_outputs=FIRST_SYMBOL + len(TARGET_CHARACTERS),
        metric="exact_match",
        baseline=0.0,
        solved_above=0.99,
    )


# ----------------------------------------------------------------------------- examples and batches


class DateExample(NamedTuple):
    """One example as drawn: the date, its format and casing, and the source text."""

    date: datetime.date
    format: str
    case: str
    source: str


def examples(config, seed: int, split: str, step: int, batch_size: int) -> list[DateExample]:
    """The ``batch_size`` examples of batch ``(seed, split, step)``, as :func:`batch` encodes them.

    Example:
      >>> [e] = examples(small_config(), 0, "test", 0, 1)
      >>> split_of(e.date), e.source == render(e.date, e.format, e.case)
      ('test', True)
    """
    first, last = _ordinal_range(config)
    check_positive_int("batch_size", batch_size)
    rng = batch_rng(seed, split, step)
    # Uniform over the split's dates: uniform ordinals of the range, keeping those of the split
    # (a share of 0.8 or 0.1 of every draw) until there are enough.
    ordinals: list[int] = []
    while len(ordinals) < batch_size:
        draws = rng.integers(first, last + 1, 16 * batch_size)
        keep = [o for o in draws.tolist() if _SPLIT_OF_RESIDUE[o % 10] == split]
        ordinals.extend(keep[: batch_size - len(ordinals)])
    formats = tuple(config.formats)
    format_ids = rng.integers(0, len(formats), batch_size)
    case_ids = rng.integers(0, len(CASES), batch_size)
    drawn = []
    for ordinal, f, c in zip(ordinals, format_ids, case_ids, strict=True):
        date = datetime.date.fromordinal(ordinal)
        format = formats[f]
        case = CASES[c] if config.vary_case and format in _FORMATS_WITH_WORDS else "capitalised"
        drawn.append(DateExample(date, format, case, render(date, format, case)))
    return drawn


def _encode(text: str, characters: str) -> list[int]:
    return [FIRST_SYMBOL + characters.index(c) for c in text]


def batch(config, seed: int, split: str, step: int, batch_size: int) -> Batch:
    """One batch, deterministic given ``(seed, split, step)``; layout as in
    :func:`recurrax.tasks.transduction.pack`.

    Returns:
      ``Batch(inputs (B, S) int32 characters, targets (B, 11) int32 ISO date and <eos>,
      loss_mask (B, 11) bool all true, lengths (B,) int32)``.
    """
    drawn = examples(config, seed, split, step, batch_size)
    sources = [_encode(e.source, SOURCE_CHARACTERS) for e in drawn]
    targets = [_encode(e.date.isoformat(), TARGET_CHARACTERS) for e in drawn]
    return pack(sources, targets, *padded_lengths(config))


TASK = Task("dates", spec, batch, small_config, full_config)
