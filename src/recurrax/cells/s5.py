"""S4D/S5-style diagonal state-space model: a continuous-time diagonal SSM, discretised with a
learned timestep and run as a linear recurrence (Gu et al. 2022; Smith et al. 2023)."""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recurrax.array_types import Array
from recurrax.cells.base import Cell, LinearForm, complex_dtype, computed_once, real_dtype
from recurrax.cells.complex_diagonal import complex_input, real_output
from recurrax.validation import check_choice, check_input_size, check_positive_int

INITS = ("lin", "real", "legs")
DISCRETIZATIONS = ("zoh", "bilinear")


class S5State(NamedTuple):
    """Carry of :func:`s5`: the complex state ``h`` ``(P,)`` (complex64, or complex128 for float64)."""

    h: Array


def hippo_legs_normal(n: int) -> np.ndarray:
    r"""The normal part :math:`S = A + p p^\top` of the ``(n, n)`` HiPPO-LegS matrix, in float64.

    :math:`A_{jk} = -\sqrt{(2j+1)(2k+1)}` below the diagonal, :math:`-(j+1)` on it, 0 above
    (Gu et al. 2020), and :math:`p_j = \sqrt{j + 1/2}` (Gu et al. 2022, S4). Hence
    :math:`S = -\tfrac12 I + K` with :math:`K_{jk} = -\operatorname{sign}(j - k)\sqrt{(j+\tfrac12)
    (k+\tfrac12)}` skew-symmetric, so every eigenvalue of :math:`S` has real part :math:`-1/2`.
    """
    j = np.arange(n, dtype=np.float64)
    outer = np.sqrt(np.outer(2 * j + 1, 2 * j + 1))
    a = -np.tril(outer, -1) - np.diag(j + 1)
    p = np.sqrt(j + 0.5)
    return a + np.outer(p, p)


def legs_eigenbasis(n: int, conj_sym: bool) -> tuple[np.ndarray, np.ndarray]:
    r"""Eigenvalues ``(P,)`` and eigenvectors ``(n, P)`` (columns, orthonormal) of the LegS normal part.

    :math:`S = -\tfrac12 I + K` with :math:`K` real skew-symmetric, so :math:`-iK` is Hermitian:
    ``eigh`` gives :math:`K = V \operatorname{diag}(i\omega) V^H` with a unitary :math:`V`, and
    :math:`\Lambda = -\tfrac12 + i\omega`. The eigenvalues of a real matrix come in conjugate pairs
    (with conjugate eigenvectors); with ``conj_sym`` only the ``n/2`` with :math:`\omega > 0` are
    kept. Ordered by increasing :math:`\omega`.
    """
    skew = hippo_legs_normal(n) + 0.5 * np.eye(n)
    omega, v = np.linalg.eigh(-1j * skew)
    if conj_sym:
        keep = omega > 0
        if int(keep.sum()) != n // 2:  # n even: K is non-singular, so no eigenvalue pairs with 0
            raise ValueError(f"state_size={n}: the LegS eigenvalues do not pair up")
        omega, v = omega[keep], v[:, keep]
    return -0.5 + 1j * omega, v


def s5(
    state_size: int,
    features: int,
    *,
    init: str = "lin",
    discretization: str = "zoh",
    conj_sym: bool = True,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    param_dtype=jnp.float32,
) -> Cell:
    r"""Diagonal state-space model in the style of S4D and S5 (Gu et al. 2022, "On the
    parameterization and initialization of diagonal state space models"; Smith et al. 2023,
    "Simplified state space layers for sequence modeling").

    A MIMO (S5) diagonal SSM with a continuous-time diagonal state matrix
    :math:`A = \operatorname{diag}(\Lambda)`, :math:`\Lambda \in \mathbb{C}^P`, over inputs and
    outputs of ``H = features`` channels (the input size must equal ``features``), discretised with
    a learned timestep :math:`\Delta \in \mathbb{R}_{>0}^P` (one per state, as in S5):

    .. math::

        \Lambda = -e^{\Lambda^{re,\log}} + i\,\Lambda^{im}, \qquad \Delta = e^{\log\Delta},

        \text{zoh:}\quad \bar A = e^{\Delta\Lambda}, \quad
        \bar B = \Lambda^{-1}(\bar A - 1) \odot B;
        \qquad
        \text{bilinear:}\quad \bar A = \frac{1 + \Delta\Lambda/2}{1 - \Delta\Lambda/2}, \quad
        \bar B = \frac{\Delta}{1 - \Delta\Lambda/2} \odot B,

        h_t = \bar A \odot h_{t-1} + \bar B x_t, \qquad
        y_t = c\,\mathrm{Re}(C h_t) + D \odot x_t,

    with :math:`B = B^{re} + iB^{im} \in \mathbb{C}^{P \times H}`,
    :math:`C = C^{re} + iC^{im} \in \mathbb{C}^{H \times P}`, and :math:`c = 2` with ``conj_sym``,
    else 1. The real part of :math:`\Lambda` is negative by construction (the param is its log
    magnitude, as Mamba's ``A_log``; S5 instead clips it, which zeroes its gradient at the clip),
    so :math:`|\bar A| < 1` for both discretisations and every :math:`\Delta > 0` (exactly; in
    floating point :math:`|\bar A|` rounds to 1 where :math:`1 - |\bar A|` is below the
    resolution, i.e. for a tiny :math:`\Delta|\mathrm{Re}\,\Lambda|`, or, with the bilinear
    transform, which pushes high frequencies to the unit circle, a huge
    :math:`\Delta|\mathrm{Im}\,\Lambda|`). The ZOH coefficient :math:`(\bar A - 1)/\Lambda` is
    computed with ``expm1`` so that it stays accurate where :math:`|\Delta\Lambda|` is small.

    ``conj_sym=True`` (S5's conjugate symmetry): the ``state_size = N`` (even) states of a real
    system come in complex-conjugate pairs; only one of each pair is stored, ``P = N/2``, and
    :math:`2\,\mathrm{Re}(C h)` is exactly the output of the full system with
    :math:`\Lambda_{full} = [\Lambda, \bar\Lambda]`, :math:`B_{full} = [B; \bar B]`,
    :math:`C_{full} = [C, \bar C]`. ``conj_sym=False`` stores all ``P = N`` states and uses
    :math:`\mathrm{Re}(C h)`.

    Initialisations of :math:`\Lambda` (``init``), :math:`n = 0, \dots, P-1`:

    * ``"lin"`` — S4D-Lin: :math:`\Lambda_n = -\tfrac12 + i\pi n`;
    * ``"real"`` — S4D-Real: :math:`\Lambda_n = -(n+1)`;
    * ``"legs"`` — diagonal HiPPO-LegS (S4D-LegS / S5): the eigenvalues
      :math:`-\tfrac12 + i\omega` of the normal part of the ``N x N`` HiPPO-LegS matrix (see
      :func:`hippo_legs_normal`), computed with numpy; with ``conj_sym`` those with
      :math:`\omega > 0`.

    Input and output matrices: for ``"lin"`` and ``"real"``, :math:`B^{re}, B^{im} \sim
    \mathcal N(0, \tfrac{1}{2H})` and :math:`C^{re}, C^{im} \sim \mathcal N(0, \tfrac{1}{2N})`
    (so :math:`E|B_{pj}|^2 = 1/H`, :math:`E|C_{jp}|^2 = 1/N`). For ``"legs"`` they are set in the
    eigenbasis as in S5: :math:`B = V^H B_0`, :math:`C = C_0 V` with :math:`V` the (kept)
    eigenvectors and real :math:`B_0 \sim \mathcal N(0, \tfrac1H)^{N \times H}`,
    :math:`C_0 \sim \mathcal N(0, \tfrac1N)^{H \times N}`; so at init (and with one shared
    :math:`\Delta`) the cell is exactly the real system :math:`\dot h = S h + B_0 x`,
    :math:`y = C_0 h + Dx` written in the eigenbasis of :math:`S`, with or without ``conj_sym``.
    The S4D paper's SISO choice :math:`B = 1` does not apply to this MIMO cell.
    :math:`D \sim \mathcal N(0, 1)`; :math:`\log\Delta \sim U[\log dt_{min}, \log dt_{max}]`.

    Params (P = stored states, H = ``features``)::

        Lambda_re_log (P,)    log(-Re Λ)               (recurrence)
        Lambda_im     (P,)    Im Λ                     (recurrence)
        log_dt        (P,)    log Δ                    (recurrence)
        B_re, B_im    (P, H)  input matrix B = B_re + i B_im
        C_re, C_im    (H, P)  output matrix C = C_re + i C_im
        D             (H,)    feedthrough

    Parameter count: ``3P + 4PH + H`` (``P = state_size/2`` with ``conj_sym``). The cell has no
    gate biases, so ``biases="one"`` and ``"two"`` give the same count.

    The carry is :class:`S5State` ``(h,)`` with ``h`` complex ``(P,)``: complex64, or complex128
    when the params are float64. ``cell.hidden_size`` is ``P`` (the stored states);
    ``cell.output_size`` is ``H``. ``recurrent_matrices`` returns ``{"abs_A_bar": diag(|Ā|)}``
    ``(P, P)``: real, with the singular values and spectral radius of the complex transition
    ``diag(Ā)``. The recurrence params ``Lambda_re_log``, ``Lambda_im`` and ``log_dt`` are those
    S5 trains with a smaller learning rate and no weight decay.

    Shapes: :func:`recurrax.unroll` maps inputs ``(B, T, H)`` to outputs ``(B, T, H)`` and a
    final carry ``S5State(h (B, P))``.

    Example:
        >>> cell = recurrax.s5(8, 4, init="legs")         # 4 stored conjugate-pair states
        >>> params = cell.init(jax.random.key(0), 4)      # input size must equal features
        >>> xs = jnp.ones((2, 5, 4))                      # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs, method="associative")
        >>> ys.shape, carry.h.shape, carry.h.dtype, cell.hidden_size
        ((2, 5, 4), (2, 4), dtype('complex64'), 4)
    """
    check_positive_int("state_size", state_size)
    check_positive_int("features", features)
    check_choice("init", init, INITS)
    check_choice("discretization", discretization, DISCRETIZATIONS)
    check_choice("conj_sym", conj_sym, (True, False))
    if conj_sym and state_size % 2:
        raise ValueError(
            f"state_size must be even with conj_sym=True (states come in conjugate pairs); "
            f"got {state_size}"
        )
    for name, value in (("dt_min", dt_min), ("dt_max", dt_max)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a real number; got {value!r}")
    if not 0.0 < dt_min <= dt_max:
        raise ValueError(
            f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max; "
            f"got dt_min={dt_min!r}, dt_max={dt_max!r}"
        )
    N, H = state_size, features
    P = N // 2 if conj_sym else N
    scale = 2.0 if conj_sym else 1.0

    # Λ at init, in float64 numpy (only the sizes are needed, so this is done once, outside jit).
    n = np.arange(P, dtype=np.float64)
    basis = None
    if init == "lin":
        lambda0 = -0.5 + 1j * np.pi * n
    elif init == "real":
        lambda0 = -(n + 1) + 0j
    else:
        lambda0, basis = legs_eigenbasis(N, conj_sym)

    def init_params(key, input_size):
        check_positive_int("input_size", input_size)
        check_input_size(input_size, H, "s5")
        k_b, k_b2, k_c, k_c2, k_d, k_dt = jax.random.split(key, 6)

        def normal(k, shape, variance):
            return math.sqrt(variance) * jax.random.normal(k, shape, param_dtype)

        if basis is None:
            B_re, B_im = normal(k_b, (P, H), 1 / (2 * H)), normal(k_b2, (P, H), 1 / (2 * H))
            C_re, C_im = normal(k_c, (H, P), 1 / (2 * N)), normal(k_c2, (H, P), 1 / (2 * N))
        else:
            # B = V^H B0 and C = C0 V for real B0, C0: the real system in the eigenbasis.
            v_re = jnp.asarray(basis.real, param_dtype)
            v_im = jnp.asarray(basis.imag, param_dtype)
            B0, C0 = normal(k_b, (N, H), 1 / H), normal(k_c, (H, N), 1 / N)
            matmul = partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
            B_re, B_im = matmul(v_re.T, B0), -matmul(v_im.T, B0)
            C_re, C_im = matmul(C0, v_re), matmul(C0, v_im)
        log_dt = jax.random.uniform(
            k_dt, (P,), param_dtype, minval=math.log(dt_min), maxval=math.log(dt_max)
        )
        return {
            "Lambda_re_log": jnp.asarray(np.log(-lambda0.real), param_dtype),
            "Lambda_im": jnp.asarray(lambda0.imag, param_dtype),
            "log_dt": log_dt,
            "B_re": B_re,
            "B_im": B_im,
            "C_re": C_re,
            "C_im": C_im,
            "D": jax.random.normal(k_d, (H,), param_dtype),
        }

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return S5State(jnp.zeros((*tuple(batch_shape), P), complex_dtype(dtype)))

    def discretise(params, rdt):
        """Ā (P,) and the input coefficient κ (P,) with B̄ = κ ⊙ B, both complex."""
        lam = jax.lax.complex(
            -jnp.exp(params["Lambda_re_log"].astype(rdt)), params["Lambda_im"].astype(rdt)
        )
        dt = jnp.exp(params["log_dt"].astype(rdt))
        dt_c = jax.lax.complex(dt, jnp.zeros_like(dt))
        z = dt_c * lam
        if discretization == "zoh":
            expm1 = jnp.expm1(z)
            return expm1 + 1, expm1 / lam
        denom = 1 - z / 2
        return (1 + z / 2) / denom, dt_c / denom

    def step(params, carry, x):
        h = carry.h
        rdt = real_dtype(h.dtype)
        x = x.astype(rdt)
        a_bar, coef = discretise(params, rdt)
        h = a_bar * h + complex_input(params, x, coef, rdt)
        return S5State(h), real_output(params, h, x, rdt, scale)

    def prepare(params, xs, valid, starts, carry0, reset_carry):
        del reset_carry  # all of the state is h, which the engine resets
        del valid, starts  # the only state is h, which the engine freezes and resets itself
        rdt = real_dtype(carry0.h.dtype)
        xs = xs.astype(rdt)
        a_bar, coef = computed_once(discretise(params, rdt))  # not once per element of a and b
        a = jnp.broadcast_to(a_bar, (xs.shape[0], P))
        return a, complex_input(params, xs, coef, rdt), xs

    def finish(params, hs, xs):
        return real_output(params, hs, xs, real_dtype(hs.dtype), scale), S5State(hs)

    def param_count(input_size, biases=None):
        check_choice("biases", biases, (None, "one", "two"))
        check_input_size(input_size, H, "s5")
        return 3 * P + 4 * P * H + H

    def recurrent_matrices(params):
        rdt = real_dtype(params["log_dt"].dtype)
        a_bar, _ = discretise(params, rdt)
        return {"abs_A_bar": jnp.diag(jnp.abs(a_bar))}

    return Cell(
        name="s5",
        hidden_size=P,
        output_size=H,
        init=init_params,
        initial_carry=initial_carry,
        step=step,
        input_size=lambda params: params["B_re"].shape[1],
        param_count=param_count,
        recurrent_matrices=recurrent_matrices,
        linear=LinearForm(prepare, finish, lambda carry: carry.h),
        recurrence_params=("Lambda_re_log", "Lambda_im", "log_dt"),
    )
