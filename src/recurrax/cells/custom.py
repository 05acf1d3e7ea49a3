"""A cell of your own: the few functions the driver needs, with defaults for the rest."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Carry, Key, Params
from recurrax.cells.base import Cell, check_cell
from recurrax.validation import check_positive_int


def custom_cell(
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]],
    init: Callable[[Key, int], Params],
    *,
    output_size: int,
    hidden_size: int | None = None,
    initial_carry: Callable[..., Carry] | None = None,
    input_size: Callable[[Params], int] | None = None,
    name: str = "custom",
    param_count: Callable[..., int] | None = None,
    recurrent_matrices: Callable[[Params], dict[str, Array]] | None = None,
) -> Cell:
    """Builds a :class:`recurrax.Cell` from its step, so that every driver semantic, layer, model
    and diagnostic works with it.

    The step sees one example: ``step(params, carry, x) -> (new_carry, y)`` with ``x`` ``(D,)``,
    carry leaves ``(H,)`` (any pytree of floating arrays) and ``y`` ``(output_size,)``. Write it
    for one example; :func:`recurrax.unroll` adds the batch (``vmap``), time (``lax.scan``),
    lengths, masks, resets, reversal and ``remat``, and runs it on the step path.

    Args:
      step: the update of one step.
      init: ``init(key, input_size) -> params``, any pytree of arrays.
      output_size: features of ``y``.
      hidden_size: ``H``. With no ``initial_carry``, the carry is one zero vector ``(H,)``.
      initial_carry: ``initial_carry(batch_shape=(), dtype=float32) -> carry`` of zeros with leaves
        ``(*batch_shape, ...)``, for carries other than one vector (e.g. an LSTM's ``(h, c)``).
      input_size: ``input_size(params) -> D``, so that inputs of the wrong width are rejected
        before any work; default: not checked.
      name: the cell's name in messages.
      param_count: ``param_count(input_size, biases) -> int``; default: the size of ``init``'s
        params (and only ``biases=None``).
      recurrent_matrices: ``recurrent_matrices(params) -> {name: (H, H)}`` for
        :func:`recurrax.recurrent_spectrum`; default: none.

    Raises:
      TypeError / ValueError: a piece is missing or has the wrong type, or ``initial_carry``
        does not return floating arrays; checked here, before the cell is used.

    Example:
        IndRNN (Li et al. 2018), :math:`h_t = \\mathrm{relu}(x_t W + u \\odot h_{t-1} + b)`:

        >>> def init(key, input_size):
        ...     return {"W": jax.random.normal(key, (input_size, 4)) / input_size**0.5,
        ...             "u": jnp.full((4,), 0.5), "b": jnp.zeros((4,))}
        >>> def step(params, h, x):
        ...     h = jax.nn.relu(x @ params["W"] + params["u"] * h + params["b"])
        ...     return h, h
        >>> cell = recurrax.custom_cell(step, init, hidden_size=4, output_size=4, name="indrnn")
        >>> params = cell.init(jax.random.key(0), 3)
        >>> h, ys = recurrax.unroll(cell, params, jnp.ones((2, 6, 3)), lengths=jnp.array([6, 2]))
        >>> ys.shape, h.shape, recurrax.param_count(cell, 3)
        ((2, 6, 4), (2, 4), 20)
    """
    if initial_carry is None:
        if hidden_size is None:
            raise ValueError(
                "hidden_size must be given when initial_carry is not (the carry is then one "
                "zero vector of hidden_size); got None"
            )
        check_positive_int("hidden_size", hidden_size)
        initial_carry = _zero_vector(hidden_size)
    elif not callable(initial_carry):
        raise TypeError(
            "initial_carry must be a function initial_carry(batch_shape=(), dtype=float32) -> "
            f"carry; got {initial_carry!r}"
        )
    check_positive_int("output_size", output_size)
    template = jax.eval_shape(lambda: initial_carry((), jnp.float32))
    leaves = jax.tree.leaves(template)
    if not leaves or not all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in leaves):
        raise TypeError(
            "initial_carry must return a pytree of floating (or complex) arrays; got "
            f"{jax.tree.map(lambda leaf: f'{leaf.dtype}{list(leaf.shape)}', template)}"
        )
    if hidden_size is None:
        hidden_size = leaves[0].shape[-1] if leaves[0].shape else 1
    check_positive_int("hidden_size", hidden_size)
    cell = Cell(
        name=name,
        hidden_size=hidden_size,
        output_size=output_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_size=input_size,
        param_count=param_count,
        recurrent_matrices=recurrent_matrices,
    )
    check_cell(cell, f"custom_cell {name!r}")
    return cell


def _zero_vector(hidden_size: int) -> Callable[..., Array]:
    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return jnp.zeros((*tuple(batch_shape), hidden_size), dtype)

    return initial_carry
