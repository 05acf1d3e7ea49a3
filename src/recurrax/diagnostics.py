r"""Gradient diagnostics: how much the loss depends on the state at each step, and why.

Two views of the vanishing / exploding gradient problem (Bengio et al. 1994; Pascanu et al. 2013):

* :func:`state_gradient_norms` measures it: :math:`\lVert \partial L / \partial s_t \rVert` for
  every example and step, where :math:`s_t` is a field of the carry after step ``t``. A curve that
  falls geometrically as ``t`` moves away from where the loss is taken is a vanishing gradient.
* :func:`recurrent_spectrum` explains part of it: the state-to-state Jacobian of a cell contains its
  recurrent matrices. For the Elman RNN :math:`h_t = \phi(a_t)`, :math:`a_t = x_t W_{xh} + h_{t-1}
  W_{hh} + b`, it is :math:`\partial h_t / \partial h_{t-1} = \operatorname{diag}(\phi'(a_t))
  W_{hh}^\top`, so :math:`\lVert \partial h_t / \partial h_k \rVert \le (\sigma_{\max}(W_{hh})
  \max|\phi'|)^{t-k}`: for tanh (:math:`|\phi'| \le 1`) a top singular value below one forces the
  gradient to vanish geometrically, and one above one is necessary for it to explode. The
  spectral radius :math:`\rho` is the long-run growth rate of the linearised recurrence,
  :math:`\lVert W^k \rVert^{1/k} \to \rho(W)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Carry, Params
from recurrax.cells.base import Cell, check_cell
from recurrax.driver import unroll
from recurrax.validation import check_choice, check_floating, check_rank

# The arguments of recurrax.unroll that hold arrays (all others are Python values).
_ARRAY_KWARGS = ("initial_carry", "lengths", "mask", "resets")


class Spectrum(NamedTuple):
    """Spectrum of one ``(H, H)`` recurrent matrix ``W``.

    Attributes:
      singular_values: ``(H,)`` singular values of ``W``, in descending order.
      spectral_radius: ``()`` the largest modulus of an eigenvalue of ``W``.
    """

    singular_values: Array
    spectral_radius: Array


def state_gradient_norms(
    cell: Cell,
    params: Params,
    xs: Array,
    loss_fn: Callable[[Array, Carry], Array],
    *,
    field: str = "h",
    **unroll_kwargs: Any,
) -> Array:
    r"""Norm of the gradient of a loss with respect to the state after every step.

    With :math:`(c_T, y) = \text{unroll}(\text{cell}, \theta, x)` and the scalar loss
    :math:`L = \text{loss\_fn}(y, c_T)`, returns for every example ``b`` and step ``t``

    .. math::

        G_{b,t} = \Bigl\lVert \frac{\partial L}{\partial s_{b,t}} \Bigr\rVert_2 ,

    where :math:`s_{b,t}` is the carry field ``field`` (e.g. ``h``, or ``c`` of an LSTM) after
    step ``t`` of example ``b``. It is computed exactly, in one backward pass, by the perturbation
    trick: the cell is wrapped so that its step returns :math:`s_t + e_t` in place of :math:`s_t`,
    and since :math:`L(e)` depends on :math:`e_t` only through :math:`s_t + e_t`,

    .. math::

        \frac{\partial L}{\partial e_t}\Big|_{e=0} = \frac{\partial L}{\partial s_t} .

    The perturbations ride along with the inputs through :func:`recurrax.unroll`, so lengths, mask,
    resets, reverse and ``remat`` behave exactly as in training.

    What "the state" includes: the other carry fields are held fixed (for ``field="c"`` of an LSTM,
    :math:`h_t` is held fixed, so the gradient is the one the memory cell passes on to later steps
    and to the final carry). When the step returns the field itself as its output (``y_t = h_t`` in
    ``rnn``, ``lstm`` and ``gru``), the output is the same variable and gets the same perturbation,
    so the direct path :math:`s_t \to y_t \to L` is included; a loss on the last output alone
    gives a nonzero gradient at the last step. Steps that the driver skips (padding at or after
    ``lengths``, masked steps) give exactly zero, as do states that a reset cuts off from the loss.

    Args:
      cell: a :class:`recurrax.Cell`.
      params: the cell's params.
      xs: ``(B, T, D)`` floating inputs (``(T, B, D)`` with ``time_major=True``).
      loss_fn: ``loss_fn(ys, final_carry) -> ()`` a real scalar; ``ys`` is ``(B, T, output_size)``
        and ``final_carry`` has ``(B, H)`` leaves, as returned by :func:`recurrax.unroll`.
      field: the name of the carry field to differentiate with respect to (``"h"``; ``"c"`` for an
        LSTM's memory cell).
      **unroll_kwargs: passed on to :func:`recurrax.unroll` (``initial_carry``, ``lengths``,
        ``mask``, ``resets``, ``reverse``, ``time_major``, ``unroll``, ``remat``); not
        ``return_carries``.

    Returns:
      ``(B, T)`` norms (``(T, B)`` with ``time_major=True``), in the carry's dtype (float32, or
      float64 for float64 inputs).

    Example:
        An Elman RNN with :math:`W_{hh} = 0.5 I`: each step back from the loss scales the gradient
        by at most 0.5, so it vanishes geometrically.

        >>> cell = recurrax.rnn(16, recurrent_init="identity", identity_scale=0.5)
        >>> params = cell.init(jax.random.key(0), 4)
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 4))   # (batch, time, features)
        >>> loss_fn = lambda ys, carry: jnp.sum(ys[:, -1] ** 2)   # loss on the last output only
        >>> g = recurrax.state_gradient_norms(cell, params, xs, loss_fn)
        >>> g.shape, bool(jnp.all(g[:, 0] <= 0.5**4 * g[:, -1]))  # (B, T); 4 steps back: <= 0.5^4
        ((2, 5), True)
    """
    check_cell(cell)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a callable loss_fn(ys, final_carry) -> scalar; "
            f"got {type(loss_fn).__name__}"
        )
    if "return_carries" in unroll_kwargs:
        raise ValueError(
            "state_gradient_norms does not take return_carries; loss_fn receives "
            f"(ys, final_carry); got return_carries={unroll_kwargs['return_carries']!r}"
        )
    time_major = unroll_kwargs.get("time_major", False)
    check_floating("xs", xs)
    check_rank("xs", xs, 3, "(time, batch, features)" if time_major else "(batch, time, features)")
    xs = jnp.asarray(xs)
    template = cell.initial_carry()
    fields = getattr(template, "_fields", None)
    if fields is None:
        raise TypeError(
            f"cell.initial_carry() must return a NamedTuple with named fields; "
            f"got {type(template).__name__}"
        )
    check_choice("field", field, fields)

    # Ask the driver itself for the field's per-example shape and dtype (it keeps carries in at
    # least float32), so the perturbation matches the state it is added to. This only traces, with
    # concrete arguments, so the driver also validates them here (e.g. lengths within [0, T]).
    final_shape, _ = jax.eval_shape(lambda: unroll(cell, params, xs, **unroll_kwargs))
    state = getattr(final_shape, field)
    check_floating(f"carry field {field!r}", state)
    state_shape, state_dtype = state.shape[1:], state.dtype  # drop the batch axis
    n = math.prod(state_shape)
    input_size = cell.input_size(params)
    perturbed = _perturbed_cell(cell, field, input_size, state_shape, xs.dtype)

    # Array-valued driver arguments become jit arguments (no constants baked into the program);
    # the rest (reverse, time_major, unroll, remat) are Python values that shape the program.
    arrays = {
        k: jax.tree.map(jnp.asarray, v) if k == "initial_carry" else jnp.asarray(v)
        for k, v in unroll_kwargs.items()
        if k in _ARRAY_KWARGS and v is not None
    }
    static = {k: v for k, v in unroll_kwargs.items() if k not in arrays}

    # One jit around forward and backward: compiling one program is much faster than dispatching
    # (and compiling) every small op of the driver eagerly; under an outer jit it simply inlines.
    @jax.jit
    def norms(params, xs, arrays):
        def loss_of_perturbation(e):
            # The perturbations travel as extra input features; the wrapped step splits them off.
            # xs is cast up to the state's dtype to concatenate, and back (exactly) in the step.
            inputs = jnp.concatenate([xs.astype(state_dtype), e], axis=-1)
            final, ys = unroll(perturbed, params, inputs, **arrays, **static)
            loss = loss_fn(ys, final)
            if jnp.shape(loss) != ():
                raise ValueError(f"loss_fn must return a scalar; got shape {jnp.shape(loss)}")
            check_floating("loss_fn's result", loss)
            return loss

        zeros = jnp.zeros((*xs.shape[:2], n), state_dtype)
        grads = jax.grad(loss_of_perturbation)(zeros)
        return jnp.linalg.norm(grads, axis=-1)

    return norms(params, xs, arrays)


def _perturbed_cell(
    cell: Cell, field: str, input_size: int, state_shape: tuple[int, ...], x_dtype
) -> Cell:
    """``cell`` whose input is ``[x_t, e_t]`` and whose step returns ``field`` plus ``e_t``."""
    n = math.prod(state_shape)

    def step(params, carry, xe):
        x = xe[:input_size].astype(x_dtype)
        new_carry, y = cell.step(params, carry, x)
        state = getattr(new_carry, field)
        bumped = state + xe[input_size:].reshape(state_shape).astype(state.dtype)
        # If the output is the state itself (y_t = h_t), it is the same variable s_t: perturbing
        # only the carry would drop the direct path s_t -> y_t -> L from the gradient.
        if y is state:
            y = bumped
        return new_carry._replace(**{field: bumped}), y

    # init and param_count stay the inner cell's: the wrapper is only ever run with its params.
    return cell._replace(
        name=f"{cell.name}+perturbed_{field}",
        step=step,
        input_size=lambda params: input_size + n,
        linear=None,  # the perturbation lives in the step: never take the parallel or fused form
        projected=None,
    )


def recurrent_spectrum(cell: Cell, params: Params) -> dict[str, Spectrum]:
    r"""Singular values and spectral radius of each of a cell's recurrent matrices.

    For every ``(H, H)`` matrix :math:`W` in ``cell.recurrent_matrices(params)`` (one per gate
    block: ``{"h"}`` for ``rnn``, ``{"i", "f", "g", "o"}`` for ``lstm``, ``{"r", "z", "n"}`` for
    ``gru``):

    .. math::

        \sigma_1 \ge \dots \ge \sigma_H \ge 0 \ \text{the singular values of } W, \qquad
        \rho(W) = \max_i |\lambda_i(W)| \le \sigma_1 .

    Cells multiply row vectors, :math:`h W`, so the Jacobian holds :math:`W^\top`; it has the same
    singular values and eigenvalue moduli. An orthogonal matrix has all :math:`\sigma_i = 1`; the
    IRNN's :math:`W = a I` has :math:`\rho = a`.

    Args:
      cell: a :class:`recurrax.Cell`.
      params: the cell's params.

    Returns:
      ``{name: Spectrum(singular_values (H,), spectral_radius ())}``, keyed like
      ``cell.recurrent_matrices(params)``, in the params' dtype.

    Example:
        >>> cell = recurrax.lstm(8)
        >>> spectra = recurrax.recurrent_spectrum(cell, cell.init(jax.random.key(0), 4))
        >>> sorted(spectra), spectra["f"].singular_values.shape, spectra["f"].spectral_radius.shape
        (['f', 'g', 'i', 'o'], (8,), ())
        >>> bool(jnp.allclose(spectra["f"].singular_values, 1.0, atol=1e-5))   # orthogonal init
        True
    """
    check_cell(cell)
    if cell.recurrent_matrices is None:
        raise ValueError(
            f"cell must define recurrent_matrices for a spectrum; {cell.name} has none (None)"
        )
    spectra = {}
    for name, w in cell.recurrent_matrices(params).items():
        label = f"recurrent matrix {name!r}"
        check_floating(label, w)
        check_rank(label, w, 2, "(H, H)")
        if w.shape[0] != w.shape[1]:
            raise ValueError(f"{label} must be square (H, H); got shape {w.shape}")
        spectra[name] = Spectrum(
            singular_values=jnp.linalg.svd(w, compute_uv=False),  # LAPACK order: descending
            spectral_radius=jnp.max(jnp.abs(jnp.linalg.eigvals(w))),
        )
    return spectra
