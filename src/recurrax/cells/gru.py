"""The gated recurrent unit, in the cuDNN/PyTorch/Flax form (default) or the textbook form."""

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

GATES = "rzn"


class GRUState(NamedTuple):
    """Carry of :func:`gru`: ``h`` is ``(H,)``."""

    h: Array


def gru(
    hidden_size: int,
    *,
    reset_after: bool = True,
    kernel_init: str = "lecun",
    param_dtype=jnp.float32,
) -> Cell:
    r"""GRU cell (Cho et al. 2014). Gate blocks are packed in the order ``r, z, n``.

    Default, ``reset_after=True`` — the cuDNN / PyTorch / ``flax.linen.GRUCell`` form, where the reset
    gate multiplies the recurrent projection *after* the matmul:

    .. math::

        r_t = \sigma(x_t W_x^r + h_{t-1} W_h^r + b^r), \quad
        z_t = \sigma(x_t W_x^z + h_{t-1} W_h^z + b^z),

        n_t = \tanh(x_t W_x^n + b^n + r_t \odot (h_{t-1} W_h^n + b_{hn})), \quad
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}.

    ``reset_after=False`` — the textbook form, reset applied to the state *before* the matmul:

    .. math::

        \tilde h_t = \tanh(x_t W_x^n + (r_t \odot h_{t-1}) W_h^n + b^n), \quad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t.

    Mapping between the two: the update gates are mirror images, :math:`z^{\text{textbook}} = 1 -
    z^{\text{default}}`, which is exact by negating the z blocks of ``W_x``, ``W_h`` and ``b``
    (:math:`\sigma(-a) = 1 - \sigma(a)`). The reset placement is a genuine difference:
    :math:`r \odot (h W^n_h + b_{hn})` versus :math:`(r \odot h) W^n_h`; the two agree only when
    ``r`` is constant across units (e.g. r = 1) and ``b_hn = 0``. The default form is the faster one
    (all three recurrent projections come from one matmul before r is known) and matches Flax,
    PyTorch and cuDNN weights.

    Params (D = input size, H = ``hidden_size``)::

        W_x   (D, 3H)  input kernel [r | z | n], lecun | glorot | he per block
        W_h   (H, 3H)  recurrent kernel [r | z | n], each (H, H) block orthogonal
        b     (3H,)    input-side biases [b^r | b^z | b^n], zeros
        b_hn  (H,)     recurrent bias of the candidate, zeros (only when reset_after)

    Parameter count: ``3H*(D+H) + 4H`` (default) or ``3H*(D+H) + 3H`` (textbook). The recurrent
    biases of r and z are summed with the input ones, so they are folded into ``b``; ``b_hn`` is kept
    because r multiplies it. PyTorch's ``nn.GRU`` keeps all six: ``3H*(D+H) + 6H``
    (``param_count(..., biases="two")``); Keras without ``reset_after``: ``biases="one"``.

    Shapes: one step maps an input ``(D,)`` to an output ``(H,)``; :func:`recurrax.unroll` maps
    inputs ``(B, T, D)`` to outputs ``(B, T, H)`` and a final carry ``GRUState(h (B, H))``.

    Example:
        >>> cell = recurrax.gru(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))                      # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs, reverse=True, lengths=jnp.array([5, 3]))
        >>> ys.shape, carry.h.shape
        ((2, 5, 16), (2, 16))
        >>> bool(jnp.allclose(carry.h, ys[:, 0]))       # in reverse, step 0 is processed last
        True
    """
    check_positive_int("hidden_size", hidden_size)
    check_inits(kernel_init, "orthogonal")
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k_x, k_h = jax.random.split(key)
        params = {
            "W_x": input_kernel(k_x, kernel_init, input_size, H, 3, param_dtype),
            "W_h": recurrent_kernel(k_h, "orthogonal", H, 3, param_dtype),
            "b": jnp.zeros((3 * H,), param_dtype),
        }
        if reset_after:
            params["b_hn"] = jnp.zeros((H,), param_dtype)
        return params

    def project(params, x):
        return x @ params["W_x"] + params["b"]

    def gates(gate_params, carry, hW, zx):
        gx_r, gx_z, gx_n = jnp.split(zx, 3, axis=-1)
        gh_r, gh_z, gh_n = jnp.split(hW, 3, axis=-1)
        r = jax.nn.sigmoid(gx_r + gh_r)
        z = jax.nn.sigmoid(gx_z + gh_z)
        n = jnp.tanh(gx_n + r * (gh_n + gate_params["b_hn"]))
        return GRUState((1.0 - z) * n + z * carry.h)

    form = ProjectedForm(
        project=project,
        kernel=lambda params: params["W_h"],
        hidden=lambda carry: carry.h,
        gate_params=lambda params: {"b_hn": params["b_hn"]},
        gates=gates,
    )

    def textbook_step(params, carry, x):
        # The reset gate multiplies h before W_h^n, so only r and z share one matmul with W_h.
        h = carry.h
        gx_r, gx_z, gx_n = jnp.split(x.astype(h.dtype) @ params["W_x"] + params["b"], 3, axis=-1)
        W_hr, W_hz, W_hn = jnp.split(params["W_h"], 3, axis=-1)
        r = jax.nn.sigmoid(gx_r + h @ W_hr)
        z = jax.nn.sigmoid(gx_z + h @ W_hz)
        h_tilde = jnp.tanh(gx_n + (r * h) @ W_hn)
        h_new = (1.0 - z) * h + z * h_tilde
        return GRUState(h_new), h_new

    def param_count(input_size, biases=None):
        own = 4 * H if reset_after else 3 * H
        return gated_param_count(3, H, input_size, own, biases)

    return Cell(
        name="gru",
        hidden_size=H,
        output_size=H,
        init=init,
        initial_carry=zeros_carry(GRUState, ("h",), H),
        step=projected_step(form) if reset_after else textbook_step,
        input_size=lambda params: params["W_x"].shape[0],
        param_count=param_count,
        recurrent_matrices=lambda params: split_blocks(params["W_h"], GATES),
        projected=form if reset_after else None,
    )
