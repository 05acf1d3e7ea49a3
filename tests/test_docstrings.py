"""Every public function documents itself with an example, and every example runs as written.

The examples are doctests (``>>>`` lines with the output they print), run here with ``jax``,
``jnp``, ``np`` and ``recurrax`` in scope and JAX's default settings (float32, standard dtype
promotion: what a reader has, not the strict float64 mode of the other tests), so a docstring
cannot drift from the code.
"""

import contextlib
import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
import recurrax.nn


@contextlib.contextmanager
def default_jax_settings():
    settings = {
        "jax_enable_x64": False,
        "jax_numpy_dtype_promotion": "standard",
        "jax_numpy_rank_promotion": "allow",
    }
    saved = {name: getattr(jax.config, name) for name in settings}
    try:
        for name, value in settings.items():
            jax.config.update(name, value)
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


def public_functions():
    """(qualified name, function) for every function in ``recurrax.__all__`` and ``recurrax.nn``."""
    found = []
    for module in (recurrax, recurrax.nn):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                found.append((f"{module.__name__}.{name}", obj))
    return found


FUNCTIONS = public_functions()


def test_the_public_api_is_covered():
    names = {name for name, _ in FUNCTIONS}
    assert {
        "recurrax.unroll",
        "recurrax.lstm",
        "recurrax.embedding",
        "recurrax.custom_cell",
    } <= names
    assert len(FUNCTIONS) >= 30


@pytest.mark.parametrize("name, function", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_public_function_has_a_runnable_example(name, function):
    doc = inspect.getdoc(function) or ""
    assert doc, f"{name} has no docstring"
    tests = doctest.DocTestFinder(recurse=False).find(
        function, name, globs={"jax": jax, "jnp": jnp, "np": np, "recurrax": recurrax}
    )
    examples = [t for t in tests if t.examples]
    assert examples, f"{name}'s docstring has no example (>>> lines)"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with default_jax_settings():
        for test in examples:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed"
