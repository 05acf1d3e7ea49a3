"""The bucketing benchmark (``experiments/bucketing.py``): its compilation counts, padding shares
and epochs on a tiny corpus, and its refusal of bad settings."""

import pytest
from experiments import bucketing

from recurrax.text import bucket_for

EXAMPLES, BATCH_SIZE, BUCKETS, SEED = 96, 16, (12, 20, 32), 0


def test_each_strategy_compiles_once_per_shape_and_sees_every_example_once():
    rows = bucketing.measure(
        examples=EXAMPLES, batch_size=BATCH_SIZE, buckets=BUCKETS, width=8, seed=SEED
    )
    by_name = {row["strategy"]: row for row in rows}
    assert list(by_name) == list(bucketing.STRATEGIES)
    sources, _, _, _ = bucketing.corpus(EXAMPLES, SEED)

    # buckets: one compilation per bucket length that some source falls in.
    used = {bucket_for(len(s), BUCKETS) for s in sources}
    assert by_name["buckets"]["compilations"] == len(used) <= len(BUCKETS)
    assert by_name["buckets"]["shapes"] == len(used)

    # longest: one compilation per distinct batch length (batches taken in corpus order).
    lengths = {
        max(len(s) for s in sources[i : i + BATCH_SIZE]) for i in range(0, EXAMPLES, BATCH_SIZE)
    }
    longest = by_name["longest"]
    assert longest["compilations"] == longest["shapes"] == len(lengths)
    assert longest["compilations"] > by_name["buckets"]["compilations"]
    assert longest["batches"] == EXAMPLES // BATCH_SIZE

    # max: one shape, one compilation.
    assert by_name["max"]["compilations"] == by_name["max"]["shapes"] == 1

    # Padding to the corpus' longest source pads the most. (Buckets against longest depends on
    # the corpus: buckets group similar lengths, but fill partial batches with empty rows.)
    assert by_name["max"]["padding_share"] >= by_name["buckets"]["padding_share"]
    assert by_name["max"]["padding_share"] >= longest["padding_share"]
    for row in rows:
        assert 0.0 < row["padding_share"] < 1.0
        assert row["seconds"] > 0.0

    # Each epoch sees every example exactly once: its source and target tokens, no more.
    for row in rows:
        assert row["examples"] == EXAMPLES, row["strategy"]
        assert row["source_tokens"] == sum(len(s) for s in sources), row["strategy"]
        assert row["target_tokens"] == EXAMPLES * 11, row["strategy"]

    table = bucketing.table(rows)
    assert table.count("\n") == 1 + len(rows)
    assert "| buckets |" in table


def test_a_largest_bucket_shorter_than_the_longest_source_is_refused():
    sources, _, _, _ = bucketing.corpus(EXAMPLES, SEED)
    longest = max(len(s) for s in sources)
    with pytest.raises(ValueError, match=rf"buckets must .* longest source \({longest} tokens\)"):
        bucketing.measure(examples=EXAMPLES, buckets=(8, longest - 1), width=8, seed=SEED)


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"buckets": (16, 8, 32)}, "buckets"),
        ({"buckets": (0, 32)}, "buckets"),
        ({"buckets": ()}, "buckets"),
        ({"batch_size": 0}, "batch_size"),
        ({"width": 0}, "width"),
        ({"seed": -1}, "seed"),
        ({"examples": 0}, "examples"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, name):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        bucketing.measure(**{"examples": EXAMPLES, "width": 8, **settings})
