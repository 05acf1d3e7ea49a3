"""The Mamba-2 block: a short causal convolution followed by a selective state space with one scalar
decay per head, the form that the chunked state-space-dual algorithm runs (:mod:`recurrax.kernels.ssd`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Params
from recurrax.cells.base import Cell, SelectiveForm, SelectiveInputs
from recurrax.cells.causal_conv import causal_conv
from recurrax.cells.initializers import inverse_softplus
from recurrax.validation import check_input_size, check_positive_float, check_positive_int

RMS_EPS = 1e-5
"""The gated RMSNorm's epsilon (the reference block's default)."""


@jax.custom_vjp
def dense(x: Array, w: Array) -> Array:
    """``x (T, K) @ w (K, M)`` over a whole sequence.

    Its weight gradient is formed as ``xᵀ ḡ`` from an explicit transpose of the narrow ``x``:
    left to itself XLA:CPU transposes the wide cotangent ``ḡ`` over the long time axis instead,
    fused into the elementwise work that produces it, which made the Mamba-2 block's
    in-projection gradient several times slower than its products (and a batched product over
    row blocks, :mod:`recurrax.kernels.blocked_dense`, transposes as badly under ``vmap``).
    """
    return x @ w


def _dense_fwd(x, w):
    return x @ w, (x, w)


def _dense_bwd(residuals, g):
    x, w = residuals
    return g @ w.T, x.T @ g


dense.defvjp(_dense_fwd, _dense_bwd)


class Mamba2State(NamedTuple):
    """Carry of :func:`mamba2`.

    Attributes:
      h: ``(H, P, N)`` the SSM state, one ``(P, N)`` matrix per head.
      conv: ``(K-1, E + 2GN)`` the last ``K-1`` inputs ``(x, B, C)`` of the causal convolution,
        oldest first (its streaming state, so that decoding token by token equals the whole
        sequence).
    """

    h: Array
    conv: Array


def mamba2(
    features: int,
    *,
    d_state: int = 128,
    d_conv: int = 4,
    expand: int = 2,
    headdim: int = 64,
    ngroups: int = 1,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init_floor: float = 1e-4,
    A_init_range: tuple[float, float] = (1, 16),
    negative_transitions: bool = False,
    param_dtype=jnp.float32,
) -> Cell:
    r"""Mamba-2 block (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
    Algorithms Through Structured State Space Duality", Section 7 and Figure 6).

    With ``D = features``, ``E = expand*D`` inner channels in ``H = E/headdim`` heads of
    ``P = headdim`` channels, ``G = ngroups`` groups of ``H/G`` heads sharing ``B`` and ``C``,
    ``N = d_state`` and ``K = d_conv``, for an input :math:`x_t \in \mathbb{R}^D`:

    .. math::

        (z_t, \xi_t, \delta_t) = x_t W_{in}, \qquad z_t \in \mathbb{R}^E,\;
        \xi_t \in \mathbb{R}^{E + 2GN},\; \delta_t \in \mathbb{R}^H

        (v_t, B_t, C_t) = \mathrm{silu}\Big(\textstyle\sum_{k=0}^{K-1} w^{conv}_k \odot
              \xi_{t-K+1+k} + b^{conv}\Big) \qquad \text{(causal depthwise convolution)}

        \Delta_t = \mathrm{softplus}(\delta_t + b_\Delta) \in \mathbb{R}^H_{>0}, \qquad
        A = -\exp(A_{\log}) \in \mathbb{R}^H_{<0}

        h^{(h)}_t = e^{\Delta_{t,h} A_h}\, h^{(h)}_{t-1} + \Delta_{t,h}\, v^{(h)}_t \otimes
              B_{t,g(h)} \qquad (h^{(h)}_t \in \mathbb{R}^{P \times N})

        y^{(h)}_t = h^{(h)}_t C_{t,g(h)} + \mathcal{D}_h v^{(h)}_t, \qquad
        \text{out}_t = \mathrm{RMSNorm}_G\big(y_t \odot \mathrm{silu}(z_t)\big) W_{out}

    where :math:`v^{(h)}_t \in \mathbb{R}^P` are head ``h``'s channels ``hP .. hP+P-1`` and
    :math:`g(h)` its group. The differences from Mamba (:func:`recurrax.cells.mamba.mamba`):
    the decay is one scalar per head (:math:`A` is scalar times identity, shared by the head's
    ``P`` channels and ``N`` state entries), :math:`\Delta`, :math:`B` and :math:`C` come
    straight out of the input projection (in parallel with :math:`z` and :math:`v`, not from
    :math:`v`), and the gated output is normalised. ``B`` and ``C`` are convolved with ``v``.
    The scalar decay per head is what makes the recurrence a *semiseparable matrix* that the
    chunked state-space-dual algorithm computes with matrix products (:mod:`recurrax.kernels.ssd`).

    :math:`\mathrm{RMSNorm}_G` normalises each group's ``E/G`` consecutive channels by their root
    mean square (:math:`\epsilon = 10^{-5}`) and multiplies by the weight ``norm_w``; the gate is
    applied before the normalisation, as in the reference block.

    The convolution window at the start is the initial carry's ``conv`` (zeros by default, the
    usual left zero padding). Under the driver's semantics a masked or padding step leaves both
    ``h`` and the window unchanged, and a reset returns both to the initial carry: the window at
    step ``t`` holds the ``(x, B, C)`` inputs of the last ``K-1`` *valid* steps of the current
    segment, preceded by the initial window.

    Params (D = ``features``, ``C_in = E + 2GN`` the convolved channels; shapes as above)::

        W_in     (D, 2E + 2GN + H)  input projection to (z, x, B, C, δ), packed in that order
                                    (B and C group-major, g*N + n), no bias; lecun normal
        conv_w   (K, C_in)          depthwise causal conv; conv_w[K-1] multiplies the current
                                    input; uniform(±1/sqrt(K)) (PyTorch Conv1d's default, fan-in K)
        conv_b   (C_in,)            conv bias, uniform(±1/sqrt(K))
        dt_bias  (H,)               inverse softplus of Δ drawn log-uniform in [dt_min, dt_max],
                                    floored at dt_init_floor
        A_log    (H,)               log of A drawn uniform in A_init_range, so A = -(1..16)
        D        (H,)               skip connection per head, ones
        norm_w   (E,)               gated RMSNorm weight, ones
        W_out    (E, D)             output projection, no bias; lecun normal

    Parameter count: ``D*(2E + 2GN + H) + (K+1)*(E + 2GN) + 3H + E + E*D``. The block has no gate
    biases, so ``param_count(..., biases="one" | "two")`` gives the same number.

    The carry is :class:`Mamba2State` ``(h (H, P, N), conv (K-1, E + 2GN))``; ``hidden_size =
    E*N`` is the size of the state. ``recurrence_params`` are ``A_log`` and ``dt_bias`` (no weight
    decay, own learning rate, as in the reference training setup). ``recurrent_matrices`` returns
    ``{"A_bar": diag(exp(softplus(dt_bias) * A))}`` ``(H, H)``: the decay of each head at the time
    step the bias alone gives (``δ_t = 0``); the state's transition is this decay repeated over the
    head's ``P*N`` entries (the same spectral radius, each value ``P*N`` times).

    The cell carries a :class:`recurrax.cells.base.SelectiveForm` with ``heads=H``: ``prepare``
    gives the state space's coefficients of every step (``delta`` and ``A`` repeated over each
    head's channels and state entries, ``u = v``), with the convolution of all steps computed in
    parallel under the driver's masks and resets (:func:`causal_conv`), and ``finish`` the block's
    outputs from the state space's outputs. There is no ``linear`` form, which would store a
    ``(T, E*N)`` array.

    ``negative_transitions=True`` maps each head's decay :math:`e^{\Delta_{t,h} A_h} \in (0, 1)` to
    :math:`2 e^{\Delta_{t,h} A_h} - 1 \in (-1, 1)` (computed as :math:`1 + 2\,\mathrm{expm1}`),
    the parameterisation of Grazzi et al. 2024 ("Unlocking State-Tracking in Linear RNNs Through
    Negative Eigenvalues", ICLR 2025): with decays in :math:`[0, 1]` a diagonal linear recurrence
    cannot solve parity, with decays reaching :math:`-1` it can. Both the fused selective scan and
    the state-space-dual chunks assume the decay :math:`e^{\Delta A}` (the chunks work with its
    logarithm, which a negative decay does not have), so such a cell has no ``selective`` form
    (``cell.selective is None``) and runs by its step alone (``method="step"``, a ``lax.scan``
    over time; slower than the default paths, same numbers otherwise). ``recurrent_matrices``
    maps its decays the same way. The default ``False`` is the block above, number for number.

    Deviations from the reference block: the normalisation and residual connection around the
    block belong to the layer stacking this cell; the input and output projections are initialised
    lecun normal, like :func:`recurrax.cells.mamba.mamba` (the reference uses PyTorch's
    ``nn.Linear`` default, uniform with a third of the variance); no ``dt_limit`` clamp (the
    reference default does not clamp either).

    Shapes: :func:`recurrax.unroll` maps inputs ``(B, T, D)`` to outputs ``(B, T, D)`` and a
    final carry ``Mamba2State(h (B, H, P, N), conv (B, K-1, E + 2GN))``.

    Example:
        >>> cell = recurrax.mamba2(8, d_state=4, headdim=8)   # E = 16, H = 2, P = 8, N = 4
        >>> params = cell.init(jax.random.key(0), 8)      # input size must equal features
        >>> xs = jax.random.normal(jax.random.key(1), (2, 5, 8))   # (batch, time, features)
        >>> carry, ys = recurrax.unroll(cell, params, xs)
        >>> ys.shape, carry.h.shape, carry.conv.shape
        ((2, 5, 8), (2, 2, 8, 4), (2, 3, 24))
        >>> signed = recurrax.mamba2(8, d_state=4, headdim=8, negative_transitions=True)
        >>> recurrax.paths.methods(signed)                 # decays 2 exp(ΔA) - 1: the step only
        ('step',)
        >>> recurrax.unroll(signed, params, xs)[1].shape
        (2, 5, 8)
    """
    check_positive_int("features", features)
    check_positive_int("d_state", d_state)
    check_positive_int("d_conv", d_conv)
    check_positive_int("expand", expand)
    check_positive_int("headdim", headdim)
    check_positive_int("ngroups", ngroups)
    Dm, E, N, K, P, G = features, expand * features, d_state, d_conv, headdim, ngroups
    if E % P:
        raise ValueError(f"headdim must divide expand*features ({E}); got {headdim!r}")
    H = E // P
    if H % G:
        raise ValueError(
            f"ngroups must divide the number of heads expand*features/headdim ({H}); "
            f"got {ngroups!r}"
        )
    check_positive_float("dt_min", dt_min)
    check_positive_float("dt_max", dt_max)
    if dt_max < dt_min:
        raise ValueError(f"dt_max must be >= dt_min ({dt_min!r}); got {dt_max!r}")
    if isinstance(dt_init_floor, bool) or not isinstance(dt_init_floor, int | float):
        raise ValueError(f"dt_init_floor must be a non-negative float; got {dt_init_floor!r}")
    if dt_init_floor < 0:
        raise ValueError(f"dt_init_floor must be a non-negative float; got {dt_init_floor!r}")
    if (
        not isinstance(A_init_range, tuple | list)
        or len(A_init_range) != 2
        or any(isinstance(a, bool) or not isinstance(a, int | float) for a in A_init_range)
        or not 0 < A_init_range[0] <= A_init_range[1]
    ):
        raise ValueError(
            f"A_init_range must be a pair (low, high) with 0 < low <= high; got {A_init_range!r}"
        )

    if not isinstance(negative_transitions, bool):
        raise TypeError(f"negative_transitions must be a bool; got {negative_transitions!r}")

    J = H // G  # heads per group
    GN = G * N
    C_in = E + 2 * GN  # convolved channels: x, B, C

    def init(key, input_size):
        check_input_size(input_size, Dm, "mamba2")
        k_in, k_cw, k_cb, k_dt, k_a, k_out = jax.random.split(key, 6)
        lecun = jax.nn.initializers.lecun_normal()
        conv_bound = 1.0 / math.sqrt(K)
        # Δ at init log-uniform in [dt_min, dt_max], floored (as in Mamba, Section 3.6).
        log_dt = jax.random.uniform(k_dt, (H,), param_dtype, math.log(dt_min), math.log(dt_max))
        dt = jnp.maximum(jnp.exp(log_dt), jnp.asarray(dt_init_floor, param_dtype))
        a = jax.random.uniform(k_a, (H,), param_dtype, *map(float, A_init_range))
        return {
            "W_in": lecun(k_in, (Dm, 2 * E + 2 * GN + H), param_dtype),
            "conv_w": jax.random.uniform(k_cw, (K, C_in), param_dtype, -conv_bound, conv_bound),
            "conv_b": jax.random.uniform(k_cb, (C_in,), param_dtype, -conv_bound, conv_bound),
            "dt_bias": inverse_softplus(dt),
            "A_log": jnp.log(a),
            "D": jnp.ones((H,), param_dtype),
            "norm_w": jnp.ones((E,), param_dtype),
            "W_out": lecun(k_out, (E, Dm), param_dtype),
        }

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        batch_shape = tuple(batch_shape)
        return Mamba2State(
            h=jnp.zeros((*batch_shape, H, P, N), dtype),
            conv=jnp.zeros((*batch_shape, K - 1, C_in), dtype),
        )

    # --- the maths, shared by the step (T = 1) and the selective form (all T steps at once) ---

    def cast(params: Params, dtype) -> Params:
        # All arithmetic in the carry's dtype: float32 for bfloat16 inputs, float64 in grad checks.
        return jax.tree.map(lambda w: jnp.asarray(w).astype(dtype), params)

    def project(p, xs, matmul):
        """``xs (T, D) -> (z (T, E), ξ (T, E + 2GN), δ (T, H))``: three products with the
        column blocks of ``W_in``, so that no ``(T, 2E + 2GN + H)`` array and its cotangent are
        assembled from the pieces."""
        w = p["W_in"]
        return matmul(xs, w[:, :E]), matmul(xs, w[:, E : E + C_in]), matmul(xs, w[:, E + C_in :])

    def convolve(p, window):
        """``window (K, E + 2GN)`` of ξ, oldest first -> ``silu(conv) (E + 2GN,)``."""
        return jax.nn.silu(jnp.sum(p["conv_w"] * window, axis=0) + p["conv_b"])

    def step_size(p, delta):
        """``δ (T, H) -> Δ (T, H) > 0``."""
        return jax.nn.softplus(delta + p["dt_bias"][None, :])

    def decay_rate(p):
        """``A (H,) < 0``."""
        return -jnp.exp(p["A_log"])

    def transition(dt_A):
        """The decay from ``Δ A <= 0``: ``exp(Δ A)``, or ``2 exp(Δ A) - 1`` with
        ``negative_transitions`` (as ``1 + 2 expm1``, exact near 1)."""
        if negative_transitions:
            return 1.0 + 2.0 * jnp.expm1(dt_A)
        return jnp.exp(dt_A)

    def gated_norm(p, y, v, z):
        """State space outputs ``y (T, E)`` -> the out-projection's inputs ``(T, E)``: skip,
        gate, normalisation."""
        T = y.shape[0]
        y = y + (p["D"][None, :, None] * v.reshape(T, H, P)).reshape(T, E)
        g = (y * jax.nn.silu(z)).reshape(T, G, E // G)
        g = g * jax.lax.rsqrt(jnp.mean(g * g, axis=-1, keepdims=True) + RMS_EPS)
        return g.reshape(T, E) * p["norm_w"][None, :]

    def step(params, carry, x):
        dtype = carry.h.dtype
        p = cast(params, dtype)
        z, xi, delta = project(p, x.astype(dtype)[None, :], jnp.matmul)
        window = jnp.concatenate([carry.conv.astype(dtype), xi], axis=0)  # (K, C_in)
        vbc = convolve(p, window)
        v, B, C = vbc[:E], vbc[E : E + GN].reshape(G, N), vbc[E + GN :].reshape(G, N)
        dt = step_size(p, delta)[0]  # (H,)
        decay = transition(dt * decay_rate(p))  # (H,) in (0, 1), or (-1, 1) if signed
        inject = (dt.reshape(G, J)[:, :, None] * v.reshape(G, J, P))[..., None] * B[:, None, None]
        h = decay[:, None, None] * carry.h + inject.reshape(H, P, N)
        y = jnp.einsum("gjpn,gn->gjp", h.reshape(G, J, P, N), C).reshape(1, E)
        return Mamba2State(h, window[1:]), (gated_norm(p, y, v[None, :], z) @ p["W_out"])[0]

    # --- the selective form ---

    def prepare(params, xs, valid, starts, carry0, reset_carry):
        dtype = carry0.h.dtype
        p = cast(params, dtype)
        T = xs.shape[0]
        z, xi, delta = project(p, xs.astype(dtype), dense)
        vbc, window = causal_conv(
            xi,
            p["conv_w"],
            p["conv_b"],
            valid,
            starts,
            carry0.conv.astype(dtype),
            reset_carry.conv.astype(dtype),
        )
        v, B, C = vbc[:, :E], vbc[:, E : E + GN], vbc[:, E + GN :]
        dt = step_size(p, delta)  # (T, H)
        inputs = SelectiveInputs(
            delta=jnp.broadcast_to(dt[:, :, None], (T, H, P)).reshape(T, E),
            A=jnp.broadcast_to(decay_rate(p)[:, None, None], (H, P, N)).reshape(E, N),
            B=B.reshape(T, G, N),
            C=C.reshape(T, G, N),
            u=v,
        )
        return inputs, (window, v, z)

    def finish(params, ys, h, aux):
        conv, v, z = aux
        dtype = v.dtype
        p = cast(params, dtype)
        g = gated_norm(p, ys.astype(dtype), v, z)
        outputs = dense(g, p["W_out"])
        return outputs, Mamba2State(h.astype(dtype).reshape(H, P, N), conv)

    def state(carry):
        return carry.h.reshape(*carry.h.shape[:-3], E, N)

    def param_count(input_size, biases=None):
        # No gate biases: the "one"/"two" conventions do not apply and give the same count.
        del biases
        check_input_size(input_size, Dm, "mamba2")
        return input_size * (2 * E + 2 * GN + H) + (K + 1) * C_in + 3 * H + E + E * input_size

    def recurrent_matrices(params):
        A = -jnp.exp(params["A_log"])
        dt = jax.nn.softplus(params["dt_bias"])
        return {"A_bar": jnp.diag(transition(dt * A))}

    return Cell(
        name="mamba2",
        hidden_size=E * N,
        output_size=Dm,
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_size=lambda params: params["W_in"].shape[0],
        param_count=param_count,
        recurrent_matrices=recurrent_matrices,
        recurrence_params=("A_log", "dt_bias"),
        # Both selective kernels run exp(Δ A) only: a signed decay takes the step path.
        selective=None
        if negative_transitions
        else SelectiveForm(prepare=prepare, finish=finish, state=state, heads=H),
    )
