"""The long short-term memory cell, with optional peepholes and layer normalisation."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import (
    Cell,
    ProjectedForm,
    gated_param_count,
    projected_step,
    split_blocks,
    zeros_carry,
)
from recurrax.cells.initializers import check_inits, input_kernel, recurrent_kernel
from recurrax.validation import check_positive_int

GATES = "ifgo"
# The params read inside the time loop (all optional): peepholes and the layer norms of h W_h and c.
GATE_PARAMS = ("w_ci", "w_cf", "w_co", "ln_h_scale", "ln_c_scale", "ln_c_bias")
LAYER_NORM_EPS = 1e-5


class LSTMState(NamedTuple):
    """Carry of :func:`lstm`: hidden state ``h`` and memory cell ``c``, both ``(H,)``."""

    h: Array
    c: Array


def _normalise(v: Array) -> Array:
    """Zero-mean, unit-variance over the feature axis (no gain or shift)."""
    mean = jnp.mean(v, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(v - mean), axis=-1, keepdims=True)
    return (v - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS)


def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    peepholes: bool = False,
    layer_norm: bool = False,
    kernel_init: str = "lecun",
    param_dtype=jnp.float32,
) -> Cell:
    r"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    Gate order is ``i, f, g, o``; the packed pre-activation is
    :math:`z_t = x_t W_x + h_{t-1} W_h + b \in \mathbb{R}^{4H}`, split into blocks :math:`z^i, z^f,
    z^g, z^o`:

    .. math::

        i_t = \sigma(z^i_t + w_{ci} \odot c_{t-1}), \quad
        f_t = \sigma(z^f_t + w_{cf} \odot c_{t-1}), \quad
        g_t = \tanh(z^g_t),

        c_t = f_t \odot c_{t-1} + i_t \odot g_t, \quad
        o_t = \sigma(z^o_t + w_{co} \odot c_t), \quad
        h_t = o_t \odot \tanh(c_t), \quad y_t = h_t.

    The peephole terms :math:`w_{c\cdot}` (Gers & Schmidhuber 2000) are present only with
    ``peepholes=True``: input and forget gates see :math:`c_{t-1}`, the output gate sees :math:`c_t`.

    With ``layer_norm=True`` (Ba et al. 2016) the two projections are normalised separately over
    their 4H features and the cell is normalised before the output squashing:
    :math:`z_t = \gamma_x \odot \mathrm{LN}(x_t W_x) + \gamma_h \odot \mathrm{LN}(h_{t-1} W_h) + b`,
    :math:`h_t = o_t \odot \tanh(\gamma_c \odot \mathrm{LN}(c_t) + \beta_c)`; the carry keeps the
    un-normalised :math:`c_t`. ``LN`` uses epsilon 1e-5.

    Params (D = input size, H = ``hidden_size``; gate blocks packed in the order i, f, g, o)::

        W_x  (D, 4H)   input kernel, lecun | glorot | he per gate block
        W_h  (H, 4H)   recurrent kernel, each (H, H) gate block orthogonal
        b    (4H,)     bias: zeros, except b[H:2H] (forget gate) = forget_bias
        w_ci, w_cf, w_co  (H,)    peepholes, zeros (only with peepholes)
        ln_x_scale, ln_h_scale  (4H,)  ones; ln_c_scale (H,) ones; ln_c_bias (H,) zeros
                                      (only with layer_norm)

    Parameter count: ``4H*(D+H) + 4H`` (+ ``3H`` with peepholes, + ``10H`` with layer norm).
    PyTorch's ``nn.LSTM`` and cuDNN keep two bias vectors: ``4H*(D+H) + 8H``
    (``param_count(..., biases="two")``). ``forget_bias`` only sets the initial value of the forget
    gate's bias (Jozefowicz et al. 2015); it is not added at every step, so the params alone determine
    the function.

    Shapes: one step maps an input ``(D,)`` to an output ``(H,)``; :func:`recurrax.unroll` maps
    inputs ``(B, T, D)`` to outputs ``(B, T, H)`` and a final carry ``LSTMState(h, c)``, both
    ``(B, H)``.

    Example:
        >>> cell = recurrax.lstm(32)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))                      # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs, lengths=jnp.array([5, 3]))
        >>> ys.shape, carry.h.shape, carry.c.shape
        ((2, 5, 32), (2, 32), (2, 32))
        >>> bool(jnp.all(ys[1, 3:] == 0))               # padding steps output zeros
        True
    """
    check_positive_int("hidden_size", hidden_size)
    check_inits(kernel_init, "orthogonal")
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k_x, k_h = jax.random.split(key)
        bias = jnp.zeros((4 * H,), param_dtype).at[H : 2 * H].set(forget_bias)
        params = {
            "W_x": input_kernel(k_x, kernel_init, input_size, H, 4, param_dtype),
            "W_h": recurrent_kernel(k_h, "orthogonal", H, 4, param_dtype),
            "b": bias,
        }
        if peepholes:
            params |= {name: jnp.zeros((H,), param_dtype) for name in ("w_ci", "w_cf", "w_co")}
        if layer_norm:
            params |= {
                "ln_x_scale": jnp.ones((4 * H,), param_dtype),
                "ln_h_scale": jnp.ones((4 * H,), param_dtype),
                "ln_c_scale": jnp.ones((H,), param_dtype),
                "ln_c_bias": jnp.zeros((H,), param_dtype),
            }
        return params

    def project(params, x):
        zx = x @ params["W_x"]
        if layer_norm:
            zx = params["ln_x_scale"] * _normalise(zx)
        return zx + params["b"]

    def gate_params(params):
        return {name: params[name] for name in GATE_PARAMS if name in params}

    def gates(gate_params, carry, hW, zx):
        c = carry.c
        if layer_norm:
            hW = gate_params["ln_h_scale"] * _normalise(hW)
        z_i, z_f, z_g, z_o = jnp.split(zx + hW, 4, axis=-1)
        if peepholes:
            z_i = z_i + gate_params["w_ci"] * c
            z_f = z_f + gate_params["w_cf"] * c
        c_new = jax.nn.sigmoid(z_f) * c + jax.nn.sigmoid(z_i) * jnp.tanh(z_g)
        if peepholes:
            z_o = z_o + gate_params["w_co"] * c_new
        c_out = c_new
        if layer_norm:
            c_out = gate_params["ln_c_scale"] * _normalise(c_new) + gate_params["ln_c_bias"]
        h_new = jax.nn.sigmoid(z_o) * jnp.tanh(c_out)
        return LSTMState(h_new, c_new)

    form = ProjectedForm(
        project=project,
        kernel=lambda params: params["W_h"],
        hidden=lambda carry: carry.h,
        gate_params=gate_params,
        gates=gates,
    )

    def param_count(input_size, biases=None):
        extra = 3 * H * peepholes + 10 * H * layer_norm
        return gated_param_count(4, H, input_size, 4 * H, biases) + extra

    return Cell(
        name="lstm",
        hidden_size=H,
        output_size=H,
        init=init,
        initial_carry=zeros_carry(LSTMState, ("h", "c"), H),
        step=projected_step(form),
        input_size=lambda params: params["W_x"].shape[0],
        param_count=param_count,
        recurrent_matrices=lambda params: split_blocks(params["W_h"], GATES),
        projected=form,
    )
