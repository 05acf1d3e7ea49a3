"""The Elman recurrent cell (vanilla RNN)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import Cell, ProjectedForm, gated_param_count, projected_step, zeros_carry
from recurrax.cells.initializers import check_inits, input_kernel, recurrent_kernel
from recurrax.validation import check_choice, check_positive_int

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "identity": lambda a: a}


class RNNState(NamedTuple):
    """Carry of :func:`rnn`: ``h`` is ``(H,)``."""

    h: Array


def rnn(
    hidden_size: int,
    *,
    activation: str = "tanh",
    use_bias: bool = True,
    kernel_init: str = "lecun",
    recurrent_init: str = "orthogonal",
    identity_scale: float = 1.0,
    param_dtype=jnp.float32,
) -> Cell:
    r"""Elman RNN cell (Elman 1990).

    .. math::

        h_t = \phi(x_t W_{xh} + h_{t-1} W_{hh} + b_h), \qquad y_t = h_t

    with :math:`\phi` = tanh (default), ReLU or the identity.

    Params (D = input size, H = ``hidden_size``)::

        W_xh  (D, H)   input kernel        (initialiser ``kernel_init``: lecun | glorot | he)
        W_hh  (H, H)   recurrent kernel    (``recurrent_init``: orthogonal | identity * identity_scale)
        b_h   (H,)     bias, zeros         (only when ``use_bias``)

    Parameter count: ``H*(D+H) + H`` (``H*(D+H)`` without bias). PyTorch's ``nn.RNN`` keeps two
    bias vectors (``b_ih``, ``b_hh``): ``H*(D+H) + 2H``, which ``param_count(..., biases="two")`` gives.

    ``recurrent_init="identity", activation="relu"`` is the IRNN of Le et al. (2015).

    Shapes: one step maps an input ``(D,)`` to an output ``(H,)``; :func:`recurrax.unroll` maps
    inputs ``(B, T, D)`` to outputs ``(B, T, H)`` and a final carry ``RNNState(h (B, H))``.

    Example:
        >>> cell = recurrax.rnn(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))                      # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs)
        >>> ys.shape, carry.h.shape, recurrax.param_count(cell, 8)   # H*(D+H) + H
        ((2, 5, 16), (2, 16), 400)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("activation", activation, ACTIVATIONS)
    check_inits(kernel_init, recurrent_init)
    phi = ACTIVATIONS[activation]

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k_x, k_h = jax.random.split(key)
        params = {
            "W_xh": input_kernel(k_x, kernel_init, input_size, hidden_size, 1, param_dtype),
            "W_hh": recurrent_kernel(
                k_h, recurrent_init, hidden_size, 1, param_dtype, identity_scale
            ),
        }
        if use_bias:
            params["b_h"] = jnp.zeros((hidden_size,), param_dtype)
        return params

    def project(params, x):
        zx = x @ params["W_xh"]
        return zx + params["b_h"] if use_bias else zx

    def gates(gate_params, carry, hW, zx):
        return RNNState(phi(zx + hW))

    form = ProjectedForm(
        project=project,
        kernel=lambda params: params["W_hh"],
        hidden=lambda carry: carry.h,
        gate_params=lambda params: {},
        gates=gates,
    )

    def param_count(input_size, biases=None):
        own = hidden_size if use_bias else 0
        return gated_param_count(1, hidden_size, input_size, own, biases)

    return Cell(
        name="rnn",
        hidden_size=hidden_size,
        output_size=hidden_size,
        init=init,
        initial_carry=zeros_carry(RNNState, ("h",), hidden_size),
        step=projected_step(form),
        input_size=lambda params: params["W_xh"].shape[0],
        param_count=param_count,
        recurrent_matrices=lambda params: {"h": params["W_hh"]},
        projected=form,
    )
