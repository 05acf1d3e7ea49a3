"""Argument checks that raise before any work, naming the argument, what was expected and what came.

Every public entry point validates its inputs with these helpers so that errors read the same
everywhere: ``<name> must be <expected>; got <actual>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x: Any) -> bool:
    """True when ``x`` is an abstract value inside ``jit``/``grad``/``vmap`` (its values are unknown)."""
    return isinstance(x, jax.core.Tracer)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def check_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive float; got {value!r}")


def check_probability(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1); got {value!r}")


def check_floating(name: str, x: Any) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array; got dtype {dtype}")


def check_rank(name: str, x: Any, rank: int, layout: str) -> None:
    shape = jnp.shape(x)
    if len(shape) != rank:
        raise ValueError(f"{name} must have rank {rank} {layout}; got shape {shape}")


def check_shape(name: str, x: Any, expected: tuple[int, ...], layout: str) -> None:
    shape = tuple(jnp.shape(x))
    if shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} {layout}; got shape {shape}")


def check_bool(name: str, x: Any) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.bool_):
        raise TypeError(
            f"{name} must be a boolean array; got dtype {dtype} (compare it, e.g. {name} > 0)"
        )


def check_integer(name: str, x: Any) -> None:
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array; got dtype {dtype}")


def check_range(name: str, x: Any, low: int, high: int) -> None:
    """Checks ``low <= x <= high`` elementwise when the values are known (not under ``jit``)."""
    if is_traced(x):
        return
    values = np.asarray(x)
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(
            f"{name} must lie in [{low}, {high}]; got values in [{values.min()}, {values.max()}]"
        )


def check_input_size(input_size: Any, features: int, cell_name: str) -> None:
    """For cells whose output is added to their input: ``input_size`` must equal ``features``."""
    check_positive_int("input_size", input_size)
    if input_size != features:
        raise ValueError(
            f"input_size must equal features ({features}) for {cell_name}; got {input_size!r}"
        )


@contextmanager
def forward_mode_hint(what: str):
    """Re-raises JAX's error for forward-mode autodiff of a custom VJP with the way out.

    The fused, sequential and selective paths of :func:`recurrax.unroll` are differentiated by custom VJPs, which JAX can
    transpose (reverse mode) but not push tangents through; ``what`` names the path.
    """
    try:
        yield
    except TypeError as error:
        if "forward-mode autodiff" not in str(error):
            raise
        raise TypeError(
            f"{what} has a custom VJP, which supports reverse-mode autodiff only (jax.grad, "
            "jax.vjp); forward mode (jax.jvp, jax.jacfwd, jax.hessian, forward-over-reverse) "
            "needs method='step', which every cell has"
        ) from error
