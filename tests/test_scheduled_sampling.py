"""Schedules of the teacher probability: the paper's formulas, jit, validation."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
import recurrax.scheduled_sampling
from recurrax.scheduled_sampling import (
    exponential_decay,
    inverse_sigmoid_decay,
    linear_decay,
    teacher_schedule,
)

STEPS = (0, 1, 7, 100, 1000, 5000)


def close(actual, expected):
    np.testing.assert_allclose(
        np.asarray(actual), expected, rtol=1e-5, atol=1e-7
    )  # float32 schedules


def test_linear_equals_the_formula():
    k, c, minimum = 0.9, 3e-4, 0.2
    schedule = teacher_schedule("linear", k=k, c=c, minimum=minimum)
    for i in STEPS:
        close(schedule(i), max(minimum, k - c * i))
        close(linear_decay(i, k=k, c=c, minimum=minimum), max(minimum, k - c * i))
    # k > 1 keeps full teacher forcing for (k - 1) / c steps
    close(linear_decay(10, k=1.5, c=0.01), 1.0)
    close(linear_decay(100, k=1.5, c=0.01), 0.5)


def test_linear_from_start_end_and_num_steps():
    schedule = teacher_schedule("linear", start=1.0, end=0.25, num_steps=300)
    for i, expected in ((0, 1.0), (100, 0.75), (300, 0.25), (301, 0.25), (10_000, 0.25)):
        close(schedule(i), expected)


def test_exponential_equals_the_formula():
    k = 0.997
    schedule = teacher_schedule("exponential", k=k)
    for i in STEPS:
        close(schedule(i), k**i)
        close(exponential_decay(i, k=k), k**i)


def test_inverse_sigmoid_equals_the_formula():
    for k in (1.0, 50.0, 400.0):
        schedule = teacher_schedule("inverse_sigmoid", k=k)
        for i in STEPS:
            expected = k / (k + math.exp(i / k)) if i / k < 700 else 0.0
            close(schedule(i), expected)
            close(inverse_sigmoid_decay(i, k=k), expected)


def test_constant():
    schedule = teacher_schedule("constant", probability=0.75)
    for i in STEPS:
        close(schedule(i), 0.75)


@pytest.mark.parametrize(
    "kind, params",
    [
        ("constant", {"probability": 0.5}),
        ("linear", {"k": 1.0, "c": 1e-3}),
        ("exponential", {"k": 0.99}),
        ("inverse_sigmoid", {"k": 20.0}),
    ],
)
def test_schedules_are_jit_compatible_and_float32(kind, params):
    schedule = teacher_schedule(kind, **params)
    jitted = jax.jit(schedule)
    for i in (0, 3, 250):
        value = jitted(jnp.asarray(i, jnp.int32))
        assert value.shape == () and value.dtype == jnp.float32
        close(value, schedule(i))
        assert 0.0 <= float(value) <= 1.0


def test_bad_schedules_raise_clear_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        teacher_schedule("cosine", k=1.0)
    with pytest.raises(ValueError, match=r"k must lie in \(0, 1\)"):
        teacher_schedule("exponential", k=1.0)
    with pytest.raises(ValueError, match=r"k must lie in \(0, 1\)"):
        teacher_schedule("exponential", k=0.0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        teacher_schedule("inverse_sigmoid", k=0.5)
    with pytest.raises(ValueError, match="c must be >= 0"):
        teacher_schedule("linear", k=1.0, c=-0.1)
    with pytest.raises(ValueError, match=r"minimum must lie in \[0, 1\]"):
        teacher_schedule("linear", c=0.1, minimum=1.5)
    with pytest.raises(ValueError, match="start, end and num_steps"):
        teacher_schedule("linear", start=1.0, end=0.0)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        teacher_schedule("linear", start=1.0, end=0.0, num_steps=0)
    with pytest.raises(ValueError, match="0 <= end <= start <= 1"):
        teacher_schedule("linear", start=0.2, end=0.5, num_steps=10)
    with pytest.raises(ValueError, match="params must be"):
        teacher_schedule("linear", k=1.0, start=1.0)
    with pytest.raises(ValueError, match=r"params must be exactly \['k'\]"):
        teacher_schedule("exponential", base=0.5)
    with pytest.raises(ValueError, match=r"probability must lie in \[0, 1\]"):
        teacher_schedule("constant", probability=1.2)
    with pytest.raises(TypeError, match="k must be a real number"):
        teacher_schedule("exponential", k="0.5")
    with pytest.raises(ValueError, match="step must be a scalar"):
        teacher_schedule("exponential", k=0.5)(jnp.arange(3))


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"jax": jax, "jnp": jnp, "np": np, "recurrax": recurrax}
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for test in finder.find(recurrax.scheduled_sampling, globs=globs):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
