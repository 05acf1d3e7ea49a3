"""The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin (De et al. 2024)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import Cell, LinearForm, zeros_carry
from recurrax.cells.initializers import input_kernel
from recurrax.validation import check_input_size, check_positive_int

# The derivative of sqrt(u) is 1 / (2 sqrt(u)), infinite at u = 0. The normaliser sqrt(1 - a_t^2)
# reaches u = 1 - a_t^2 = 0 whenever a_t rounds to exactly 1 (the gate r_t underflows to 0, or
# softplus(-Λ) underflows for a very large Λ), and the chain rule then multiplies inf by the zero
# derivative of log a_t: NaN. We therefore bound the derivative of the square root by
# MAX_SQRT_DERIVATIVE, i.e. evaluate it at max(u, 1 / (4 MAX^2)) = max(u, 2.5e-7). The forward
# value stays exact. The bound only binds when 1 - a_t^2 < 2.5e-7, i.e. a_t > 1 - 1.25e-7: a memory
# of more than ~8 million steps, longer than any sequence trained on and within about two float32
# ulps of 1. Griffin's released code (recurrentgemma, `SqrtBoundDerivative`) bounds this
# derivative at the same scale (1000) for the same reason.
MAX_SQRT_DERIVATIVE = 1000.0


@jax.custom_jvp
def sqrt_bounded_derivative(u: Array) -> Array:
    """``sqrt(u)`` for ``u >= 0`` whose derivative is clipped to at most ``MAX_SQRT_DERIVATIVE``."""
    return jnp.sqrt(u)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_derivative_jvp(primals, tangents):
    (u,), (du,) = primals, tangents
    floor = 1.0 / (4.0 * MAX_SQRT_DERIVATIVE**2)
    return jnp.sqrt(u), du / (2.0 * jnp.sqrt(jnp.maximum(u, floor)))


class RGLRUState(NamedTuple):
    """Carry of :func:`rglru`: ``h`` is ``(D,)``."""

    h: Array


def _check_float(name: str, value, low: float, high: float, low_open: bool, high_open: bool):
    """``value`` must be a real number in the interval given by ``low``/``high``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a real number in {interval}; got {value!r}")


def rglru(
    features: int,
    *,
    c: float = 8.0,
    a_min: float = 0.9,
    a_max: float = 0.999,
    negative_transitions: bool = False,
    param_dtype=jnp.float32,
) -> Cell:
    r"""RG-LRU cell: the Real-Gated Linear Recurrent Unit of Griffin (De et al. 2024).

    A diagonal linear recurrence whose decay is gated by the input. The state has the size of
    the input (``input_size == features``); every product below is elementwise:

    .. math::

        r_t = \sigma(x_t W_a + b_a), \qquad i_t = \sigma(x_t W_x + b_x),

        a_t = \sigma(\Lambda)^{c\, r_t}, \qquad
        \log a_t = -c\, r_t\, \mathrm{softplus}(-\Lambda),

        h_t = a_t \odot h_{t-1} + \sqrt{1 - a_t^2} \odot (i_t \odot x_t), \qquad y_t = h_t.

    :math:`r_t` is the recurrence gate and :math:`i_t` the input gate; :math:`a_t \in (0, 1]`
    always, so the recurrence is stable by construction. :math:`a_t` is computed in log space
    (as the paper recommends for stability) and the normaliser as :math:`\sqrt{1 - a_t^2} =
    \sqrt{-\mathrm{expm1}(2 \log a_t)}`, exact even when :math:`a_t` is within rounding of 1.
    The derivative of that square root is clipped to at most 1000
    (:data:`MAX_SQRT_DERIVATIVE`; see the comment there): without it the gradient is NaN as
    soon as :math:`a_t` rounds to 1. :math:`\Lambda` is initialised so that
    :math:`\sigma(\Lambda)^c` (the decay with the gate fully open) is uniform in
    ``[a_min, a_max]``.

    ``negative_transitions=True`` maps the decay :math:`a_t \in (0, 1]` to
    :math:`\tilde a_t = 2 a_t - 1 \in (-1, 1]`, after Grazzi et al. 2024 ("Unlocking
    State-Tracking in Linear RNNs Through Negative Eigenvalues", ICLR 2025), and normalises the
    input by the new decay:

    .. math::

        h_t = \tilde a_t \odot h_{t-1} + \sqrt{1 - \tilde a_t^2} \odot (i_t \odot x_t),
        \qquad \sqrt{1 - \tilde a_t^2} = 2 \sqrt{a_t (1 - a_t)},

    with :math:`\tilde a_t = 1 + 2\,\mathrm{expm1}(\log a_t)` and
    :math:`1 - a_t = -\mathrm{expm1}(\log a_t)`, exact near both ends. With decays in
    :math:`[0, 1]` a diagonal linear recurrence cannot solve parity; a decay near :math:`-1`
    flips the sign of the state, which lets it. The normaliser keeps its role (for a constant
    decay of either sign it makes the state's stationary variance that of :math:`i_t \odot x_t`),
    and its square root has the same bounded derivative. The range at initialisation becomes
    :math:`2\sigma(\Lambda)^c - 1 \in [2 a_{min} - 1, 2 a_{max} - 1]` with the gate fully open
    (a decay below 0 needs :math:`\sigma(\Lambda)^{c r_t} < 1/2`: learnt, or ``a_min < 0.5``).
    Every method (the linear scan and the step) applies unchanged. The default ``False`` is the
    cell above, number for number.

    Deviations from the paper (and from Griffin's released code): the gate kernels are dense
    ``(D, D)`` matrices, where Griffin uses block-diagonal ones (one block per head; a dense
    matrix contains that as a special case). Griffin's code also skips the normaliser (uses 1)
    on the first token of a document; here every step is normalised, so that a step does not
    depend on its position and the step form equals the parallel form under resets.

    Params (D = ``features``)::

        W_a     (D, D)  recurrence-gate kernel, lecun normal
        b_a     (D,)    recurrence-gate bias, zeros
        W_x     (D, D)  input-gate kernel, lecun normal
        b_x     (D,)    input-gate bias, zeros
        Lambda  (D,)    Λ: σ(Λ)^c uniform in [a_min, a_max]   (recurrence param)

    Parameter count: ``2D*(D+1) + D``. There are no recurrent matrices and each gate has one bias,
    so ``biases="one"`` and ``biases="two"`` give the same count. ``recurrent_matrices`` returns
    ``{"a": diag(σ(Λ)^c)}``, the recurrence weight with the gate fully open (``r_t = 1``, the
    strongest decay; ``2σ(Λ)^c - 1`` with ``negative_transitions=True``); with the gate closed
    (``r_t = 0``) it is the identity.

    Args:
      features: D, the size of the input, the state and the output.
      c: the constant :math:`c > 0` scaling the gate in the exponent (8 in the paper).
      a_min, a_max: the range ``0 < a_min <= a_max < 1`` of :math:`\sigma(\Lambda)^c` at
        initialisation (0.9 and 0.999 in the paper).
      negative_transitions: map every decay :math:`a_t` to :math:`2 a_t - 1` (see above).
      param_dtype: the dtype of the params.

    Shapes: :func:`recurrax.unroll` maps inputs ``(B, T, D)`` to outputs ``(B, T, D)`` and a
    final carry ``RGLRUState(h (B, D))``.

    Example:
        >>> cell = recurrax.rglru(8)
        >>> params = cell.init(jax.random.key(0), 8)      # input size must equal features
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 8))   # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs, method="associative")
        >>> ys.shape, carry.h.shape
        ((2, 5, 8), (2, 8))
        >>> bool(jnp.allclose(ys[:, -1], carry.h))      # y_t = h_t
        True
        >>> signed = recurrax.rglru(8, a_min=0.1, a_max=0.9, negative_transitions=True)
        >>> params = signed.init(jax.random.key(0), 8)    # decays 2a - 1 in [-0.8, 0.8] at r = 1
        >>> _, ys = recurrax.unroll(signed, params, xs, method="associative")
        >>> _, ys_step = recurrax.unroll(signed, params, xs, method="step")
        >>> bool(jnp.allclose(ys, ys_step, atol=1e-5))
        True
    """
    check_positive_int("features", features)
    _check_float("c", c, 0.0, math.inf, low_open=True, high_open=True)
    _check_float("a_min", a_min, 0.0, 1.0, low_open=True, high_open=True)
    _check_float("a_max", a_max, 0.0, 1.0, low_open=True, high_open=True)
    if a_min > a_max:
        raise ValueError(f"a_min must be <= a_max; got a_min={a_min!r}, a_max={a_max!r}")
    if not isinstance(negative_transitions, bool):
        raise TypeError(f"negative_transitions must be a bool; got {negative_transitions!r}")
    D = features

    def init(key, input_size):
        check_input_size(input_size, D, "rglru")
        k_a, k_x, k_lambda = jax.random.split(key, 3)
        # a^c = u ~ U[a_min, a_max]  =>  σ(Λ) = s = u^(1/c),  Λ = logit(s) = log s - log(1 - s),
        # with log s = log(u)/c and 1 - s = -expm1(log(u)/c), accurate while s is close to 1.
        work = jnp.float64 if jnp.dtype(param_dtype) == jnp.float64 else jnp.float32
        u = jax.random.uniform(k_lambda, (D,), work, minval=a_min, maxval=a_max)
        log_s = jnp.log(u) / c
        lam = log_s - jnp.log(-jnp.expm1(log_s))
        return {
            "W_a": input_kernel(k_a, "lecun", D, D, 1, param_dtype),
            "b_a": jnp.zeros((D,), param_dtype),
            "W_x": input_kernel(k_x, "lecun", D, D, 1, param_dtype),
            "b_x": jnp.zeros((D,), param_dtype),
            "Lambda": lam.astype(param_dtype),
        }

    def coefficients(params, x):
        """``(a_t, b_t)`` of ``h_t = a_t h_{t-1} + b_t`` for one step, ``x`` ``(D,)``."""
        r = jax.nn.sigmoid(x @ params["W_a"] + params["b_a"])
        i = jax.nn.sigmoid(x @ params["W_x"] + params["b_x"])
        # log σ(Λ) = -softplus(-Λ): no overflow for either sign of Λ, and a_t = exp(log a_t) is
        # never above 1.
        log_a = -c * r * jax.nn.softplus(-params["Lambda"])
        if negative_transitions:
            # ã = 2a - 1 and 1 - ã² = (1 - ã)(1 + ã) = 4a(1 - a), with 1 - a = -expm1(log a).
            a = jnp.exp(log_a)
            normaliser = sqrt_bounded_derivative(4.0 * a * -jnp.expm1(log_a))
            return 1.0 + 2.0 * jnp.expm1(log_a), normaliser * (i * x)
        normaliser = sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a))
        return jnp.exp(log_a), normaliser * (i * x)

    def step(params, carry, x):
        h = carry.h
        a, b = coefficients(params, x.astype(h.dtype))
        h_new = a * h + b
        return RGLRUState(h_new), h_new

    def prepare(params, xs, valid, starts, carry0, reset_carry):
        del reset_carry  # all of the state is h, which the engine resets
        # No state outside h: valid/starts are handled by the engine. vmap over time turns the
        # per-step matmuls into one (T, D) @ (D, D) product.
        xs = xs.astype(carry0.h.dtype)
        a, b = jax.vmap(coefficients, in_axes=(None, 0))(params, xs)
        return a, b, ()

    def finish(params, hs, aux):
        return hs, RGLRUState(hs)

    def param_count(input_size, biases=None):
        check_input_size(input_size, D, "rglru")
        return 2 * D * (D + 1) + D

    def recurrent_matrices(params):
        log_a = -c * jax.nn.softplus(-params["Lambda"])
        a = 1.0 + 2.0 * jnp.expm1(log_a) if negative_transitions else jnp.exp(log_a)
        return {"a": jnp.diag(a)}

    return Cell(
        name="rglru",
        hidden_size=D,
        output_size=D,
        init=init,
        initial_carry=zeros_carry(RGLRUState, ("h",), D),
        step=step,
        input_size=lambda params: params["W_a"].shape[0],
        param_count=param_count,
        recurrent_matrices=recurrent_matrices,
        linear=LinearForm(prepare, finish, lambda carry: carry.h),
        recurrence_params=("Lambda",),
    )
