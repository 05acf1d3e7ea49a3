"""The Linear Recurrent Unit (LRU): a diagonal complex linear recurrence with a stable exponential
parameterisation and a normalised input (Orvieto et al. 2023)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import Cell, LinearForm, complex_dtype, computed_once, real_dtype
from recurrax.cells.complex_diagonal import complex_input, real_output
from recurrax.validation import check_choice, check_input_size, check_positive_int


class LRUState(NamedTuple):
    """Carry of :func:`lru`: the complex state ``h`` ``(N,)`` (complex64, or complex128 for float64)."""

    h: Array


def lru(
    state_size: int,
    features: int,
    *,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    param_dtype=jnp.float32,
) -> Cell:
    r"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
    Long Sequences").

    A diagonal complex linear recurrence of ``N = state_size`` states over inputs and outputs of
    ``H = features`` channels (the input size must equal ``features``):

    .. math::

        \lambda = \exp(-e^{\nu^{\log}} + i\, e^{\theta^{\log}}) \in \mathbb{C}^N, \qquad
        \gamma = e^{\gamma^{\log}} \in \mathbb{R}^N,

        h_t = \lambda \odot h_{t-1} + \gamma \odot (B x_t), \qquad
        y_t = \mathrm{Re}(C h_t) + D \odot x_t,

    with :math:`B = B^{re} + i B^{im} \in \mathbb{C}^{N \times H}` and
    :math:`C = C^{re} + i C^{im} \in \mathbb{C}^{H \times N}`. Since
    :math:`|\lambda| = \exp(-e^{\nu^{\log}}) < 1` for every finite :math:`\nu^{\log}`, the
    recurrence is stable by construction (the paper's exponential parameterisation; in float32
    :math:`|\lambda|` rounds to 1 only once :math:`e^{\nu^{\log}} < 6 \cdot 10^{-8}`).

    Initialisation (the paper's Sec. 3.2 and Appendix A):

    * ring initialisation: :math:`|\lambda|^2` uniform in :math:`[r_{\min}^2, r_{\max}^2]`, i.e.
      :math:`\lambda` uniform in area on the ring :math:`r_{\min} \le |\lambda| \le r_{\max}`:
      :math:`\nu^{\log} = \log(-\tfrac12 \log(u_1 (r_{\max}^2 - r_{\min}^2) + r_{\min}^2))`;
      phase :math:`\arg\lambda = e^{\theta^{\log}}` uniform in :math:`[0, \text{max\_phase}]`:
      :math:`\theta^{\log} = \log(\text{max\_phase}\, u_2)`, with :math:`u_1, u_2 \sim U[0, 1)`
      (clamped away from the values that would give infinite logarithms);
    * normalisation :math:`\gamma = \sqrt{1 - |\lambda|^2}` (so that a white-noise input gives a
      state of the same variance whatever :math:`|\lambda|`);
    * :math:`B^{re}, B^{im} \sim \mathcal N(0, \tfrac{1}{2H})` (Glorot-like: :math:`E|B_{nj}|^2 =
      1/H`); :math:`C^{re}, C^{im} \sim \mathcal N(0, \tfrac1N)` — the paper's scaling (its
      Appendix A code divides by :math:`\sqrt N`, not :math:`\sqrt{2N}`): with a unit-variance
      state, half of it in each of the real and imaginary parts, :math:`\mathrm{Re}(C h)` has unit
      variance; :math:`D \sim \mathcal N(0, 1)`.

    Params (N = ``state_size``, H = ``features``)::

        nu_log     (N,)     log of -log|λ|              (recurrence)
        theta_log  (N,)     log of the phase arg λ      (recurrence)
        gamma_log  (N,)     log of the input normalisation γ   (recurrence)
        B_re, B_im (N, H)   input matrix B = B_re + i B_im
        C_re, C_im (H, N)   output matrix C = C_re + i C_im
        D          (H,)     feedthrough

    Parameter count: ``3N + 4NH + H``. The cell has no gate biases, so ``biases="one"`` and
    ``"two"`` give the same count.

    The carry is :class:`LRUState` ``(h,)`` with ``h`` complex ``(N,)``: complex64, or complex128
    when the params are float64 (``initial_carry(dtype=float32)`` means complex64). Inputs are cast
    to the state's real dtype (bfloat16 inputs run in float32). ``cell.hidden_size`` is ``N``;
    ``cell.output_size`` is ``H``. ``recurrent_matrices`` returns ``{"abs_lambda": diag(|λ|)}``
    ``(N, N)``: real, with the same singular values and spectral radius as the complex transition
    ``diag(λ)`` (the phases are in ``theta_log``). The recurrence params ``nu_log``, ``theta_log``
    and ``gamma_log`` are those the paper trains with a smaller learning rate and no weight decay.

    The linear form runs the state recurrence in parallel over time (``a_t = λ``,
    ``b_t = γ ⊙ B x_t``), so ``recurrax.unroll`` can use the sequential, associative or chunked
    scans; all give the numbers of ``step``.

    Shapes: :func:`recurrax.unroll` maps inputs ``(B, T, H)`` to outputs ``(B, T, H)`` and a
    final carry ``LRUState(h (B, N))``.

    Example:
        >>> cell = recurrax.lru(16, 4, r_min=0.9, r_max=0.999, max_phase=np.pi / 10)
        >>> params = cell.init(jax.random.key(0), 4)      # input size must equal features
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 4))
        >>> carry, ys = recurrax.unroll(cell, params, xs, method="associative")
        >>> ys.shape, carry.h.shape, carry.h.dtype
        ((2, 5, 4), (2, 16), dtype('complex64'))
        >>> r = jnp.diag(cell.recurrent_matrices(params)["abs_lambda"])   # |λ| on the ring
        >>> bool(jnp.all((r >= 0.9) & (r <= 0.999)))
        True
    """
    check_positive_int("state_size", state_size)
    check_positive_int("features", features)
    for name, value in (("r_min", r_min), ("r_max", r_max), ("max_phase", max_phase)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a real number; got {value!r}")
    if not 0.0 <= r_min <= r_max <= 1.0 or r_min >= 1.0:
        raise ValueError(
            "r_min and r_max must satisfy 0 <= r_min <= r_max <= 1 with r_min < 1; "
            f"got r_min={r_min!r}, r_max={r_max!r}"
        )
    if not max_phase > 0.0:
        raise ValueError(f"max_phase must be positive; got {max_phase!r}")
    N, H = state_size, features

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        check_input_size(input_size, H, "lru")
        k_nu, k_theta, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
        tiny = jnp.finfo(param_dtype).tiny
        u1 = jax.random.uniform(k_nu, (N,), param_dtype)
        u2 = jax.random.uniform(k_theta, (N,), param_dtype)
        # |λ|² uniform on [r_min², r_max²]. Clamp into (0, 1): |λ|² = 0 (r_min = 0, u1 = 0) or a
        # value rounded up to 1 (r_max = 1, u1 -> 1) would give infinite logarithms.
        modulus2 = u1 * (r_max**2 - r_min**2) + r_min**2
        below_one = jnp.nextafter(jnp.ones((), param_dtype), jnp.zeros((), param_dtype))
        modulus2 = jnp.clip(modulus2, tiny, below_one)
        nu = -0.5 * jnp.log(modulus2)
        nu_log = jnp.log(nu)
        theta_log = jnp.log(max_phase * jnp.maximum(u2, tiny))
        # γ = sqrt(1 - |λ|²) = sqrt(-expm1(-2ν)): expm1 keeps its relative accuracy for |λ| near 1,
        # where 1 - |λ|² would cancel.
        gamma_log = 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))

        def normal(k, shape, variance):
            return math.sqrt(variance) * jax.random.normal(k, shape, param_dtype)

        return {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": normal(k_bre, (N, H), 1.0 / (2 * H)),
            "B_im": normal(k_bim, (N, H), 1.0 / (2 * H)),
            "C_re": normal(k_cre, (H, N), 1.0 / N),
            "C_im": normal(k_cim, (H, N), 1.0 / N),
            "D": jax.random.normal(k_d, (H,), param_dtype),
        }

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return LRUState(jnp.zeros((*tuple(batch_shape), N), complex_dtype(dtype)))

    def coefficients(params, rdt):
        """λ (N,) complex and γ (N,) real, in the state's dtype."""
        nu = jnp.exp(params["nu_log"].astype(rdt))
        theta = jnp.exp(params["theta_log"].astype(rdt))
        lam = jnp.exp(jax.lax.complex(-nu, theta))
        gamma = jnp.exp(params["gamma_log"].astype(rdt))
        return lam, gamma

    def step(params, carry, x):
        h = carry.h
        rdt = real_dtype(h.dtype)
        x = x.astype(rdt)
        lam, gamma = coefficients(params, rdt)
        h = lam * h + complex_input(params, x, gamma, rdt)
        return LRUState(h), real_output(params, h, x, rdt)

    def prepare(params, xs, valid, starts, carry0, reset_carry):
        del reset_carry  # all of the state is h, which the engine resets
        del valid, starts  # the only state is h, which the engine freezes and resets itself
        rdt = real_dtype(carry0.h.dtype)
        xs = xs.astype(rdt)
        lam, gamma = computed_once(coefficients(params, rdt))  # not once per element of a and b
        a = jnp.broadcast_to(lam, (xs.shape[0], N))
        b = complex_input(params, xs, gamma, rdt)
        return a, b, xs

    def finish(params, hs, xs):
        rdt = real_dtype(hs.dtype)
        return real_output(params, hs, xs, rdt), LRUState(hs)

    def param_count(input_size, biases=None):
        check_choice("biases", biases, (None, "one", "two"))
        check_input_size(input_size, H, "lru")
        return 3 * N + 4 * N * H + H

    def recurrent_matrices(params):
        modulus = jnp.exp(-jnp.exp(params["nu_log"]))
        return {"abs_lambda": jnp.diag(modulus)}

    return Cell(
        name="lru",
        hidden_size=N,
        output_size=H,
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_size=lambda params: params["B_re"].shape[1],
        param_count=param_count,
        recurrent_matrices=recurrent_matrices,
        linear=LinearForm(prepare, finish, lambda carry: carry.h),
        recurrence_params=("nu_log", "theta_log", "gamma_log"),
    )
