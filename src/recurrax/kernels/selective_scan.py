r"""The fused selective scan: a Mamba-style selective state space whose ``(E, N)`` state lives only
inside the loop, forwards and backwards.

Per example and step ``t`` (in processing order), with ``G`` groups of ``E/G`` channels sharing
``B`` and ``C`` (channel ``e`` reads row ``g(e) = e // (E/G)``):

.. math::

    \tilde h_t = s_t \,?\, h^{\mathrm{reset}} : h_{t-1}, \qquad
    a_t = \exp(\Delta_t \otimes A), \qquad
    h_t = a_t \odot \tilde h_t + (\Delta_t \odot u_t) \otimes B_t, \qquad
    y_t = h_t\, C_t

(``h_{-1} = h_init``). An invalid step (padding or masked) has :math:`\Delta_t := 0`: its decay
is :math:`e^0 = 1` and its input 0, so :math:`h_t = \tilde h_t`, and its output is zeroed. The
reference CUDA kernel of Mamba (Gu & Dao 2023, Section 3.3.2) keeps the state in fast memory and
recomputes it in the backward pass; this module re-derives that scheme for XLA:CPU.

**Forward.** Time is cut into blocks of ``k`` steps (``checkpoint``). Per block, the decays
:math:`a` of all ``k`` steps are one vectorised ``(B, k, N, E)`` exponential; the loop over the
block's steps then does only the fused multiply-add, forms :math:`y_t` from the state while it is
in cache and keeps nothing else. Training keeps the state entering each block (``T/k`` states of
``(B, E, N)``); inference keeps nothing.

**Backward** (a custom VJP), over the blocks in reverse. With :math:`\bar h_t` the cotangent of
:math:`h_t` (the final state's cotangent for the last step), the transpose of the recurrence is

.. math::

    \bar h_t = \bar y_t \otimes C_t + c_t, \qquad
    c_{t-1} = s_t \,?\, 0 : a_t \odot \bar h_t, \qquad
    \bar h^{\mathrm{reset}} \mathrel{{+}{=}} s_t \,?\, a_t \odot \bar h_t : 0,

with :math:`c_{T-1} = \bar h_{\mathrm{final}}` and :math:`\bar h_{\mathrm{init}} = c_{-1}`: at a
reset the cotangent of :math:`\tilde h_t` flows into :math:`h^{\mathrm{reset}}`, not into
:math:`h_{t-1}`. With :math:`\ell_t = \bar h_t \odot \tilde h_t \odot a_t` (the cotangent of
:math:`\Delta_t \otimes A`) and :math:`P_t = \sum_n \bar h_t \odot B_t` ``(E,)``:

.. math::

    \bar\Delta_t = \textstyle\sum_n \ell_t \odot A + u_t \odot P_t, \quad
    \bar u_t = \Delta_t \odot P_t, \quad
    \bar A = \textstyle\sum_t \ell_t \odot \Delta_t, \quad
    \bar B_{t,g} = \textstyle\sum_{e \in g} \bar h_{t,e} (\Delta u)_{t,e}, \quad
    \bar C_{t,g} = \textstyle\sum_{e \in g} \bar y_{t,e}\, h_{t,e}.

Per block: the decays again (one vectorised exponential), the block's states from its
checkpoint (a forward loop that stores the ``k`` states of this block only), then a reverse loop
that carries :math:`c`, forms :math:`\bar h_t`, accumulates :math:`\bar A` and
:math:`\bar h^{\mathrm{reset}}` and reduces :math:`\bar h_t` to :math:`\bar\Delta_t, \bar u_t,
\bar B_t` while it is in cache, so :math:`\bar h` is never stored. :math:`\bar C` of the whole
block is one batched product of the stored states. Invalid steps need nothing more: the
``where`` that zeroes their :math:`\Delta` outside the kernel zeroes their gradients.

**Layout.** The state is held as ``(B, N, E)``: the channels lie along the vector lanes, and the
sums over ``N`` (of :math:`y_t`, :math:`P_t`, :math:`\bar\Delta_t`) are sums of ``N``
contiguous rows, written as explicit additions so that XLA fuses them with their products (its
reduce over a major axis ran several times slower on a CPU). Inputs stay batch-major: a block
is a slice of the time axis, so nothing of size ``(B, T, E)`` is transposed.

**Measured** on a 2-core AMD EPYC CPU (XLA:CPU, jax 0.10.2) at ``B=8, T=4096, E=128, N=16``,
float32, median of several runs of the jitted function: see :data:`DEFAULT_CHECKPOINT`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import SelectiveInputs, real_dtype
from recurrax.kernels.time_loop import at_most, is_known
from recurrax.validation import check_positive_int, check_rank, check_shape

DEFAULT_CHECKPOINT = 32
"""Steps per checkpoint block. At ``B=8, T=4096, E=128, N=16`` (float32; 2-core AMD EPYC, medians
of 9 interleaved runs) the training step (value and gradient of ``sum(ys²)`` w.r.t. every input)
took 114, 105, 106 and 116 ms for blocks of 16, 32, 64 and 128 steps, with 52, 44, 40 and 42 MiB
of temporaries; the forward pass 30, 29, 28 and 26 ms (25 ms in a quieter run at 32). Autodiff of a
plain ``lax.scan`` that keeps the state in the loop took 499 ms and 884 MiB for training, and its
forward pass 72 ms. 32 and 64 tie; 32 keeps the blocks of the backward pass (``(B, k, N, E)``
decays and states, 2 MiB each here) nearer the cache."""


def selective_scan(
    inputs: SelectiveInputs,
    valid: Array | None,
    starts: Array | None,
    h_init: Array,
    h_reset: Array,
    *,
    checkpoint: int = DEFAULT_CHECKPOINT,
    unroll: int = 1,
) -> tuple[Array, Array]:
    r"""Runs a batch of selective state spaces with the state kept only inside the loop.

    Per example and step ``t`` (in processing order) the result equals the step loop

    .. code-block:: text

        h_in  = h_reset if starts[t] else h_{t-1}                  (h_{-1} = h_init)
        h_new = exp(delta_t ⊗ A) * h_in + (delta_t u_t) ⊗ B_t       (row e uses its group's B)
        h_t   = h_new if valid[t] else h_in
        y_t   = h_t C_t if valid[t] else 0

    and neither the forward nor the backward pass stores a ``(T, E, N)`` array (see the module
    docstring). Differentiable w.r.t. ``inputs``, ``h_init`` and ``h_reset``.

    Args:
      inputs: :class:`recurrax.cells.base.SelectiveInputs` with a leading batch axis: ``delta``
        ``(B, T, E)``, ``A`` ``(E, N)`` shared by the batch (or ``(B, E, N)``, one per example),
        ``B`` and ``C`` ``(B, T, G, N)`` (channel ``e`` reads group ``e // (E/G)``), ``u``
        ``(B, T, E)``.
      valid: ``(B, T)`` booleans, or None (every step valid).
      starts: ``(B, T)`` booleans, or None (no resets).
      h_init: ``(B, E, N)`` the state before the first step; its dtype (at least float32) is the
        dtype of all arithmetic and of the results (bfloat16 inputs run in float32).
      h_reset: ``(B, E, N)`` the state a reset returns to.
      checkpoint: ``k``, steps per block: the backward pass keeps the state every ``k`` steps
        (``T/k`` states) and recomputes a block's states from it. ``T`` need not be a multiple.
      unroll: the unroll factor of the loops over a block's steps (1 was fastest on a CPU).

    Returns:
      ``(ys (B, T, E), h_final (B, E, N))``: the outputs of every step and the state after the
      last one.
    """
    delta, A, Bm, Cm, u = inputs
    Bsz, T, E, _, _ = check_selective_inputs(inputs, valid, starts, h_init, h_reset)
    check_positive_int("checkpoint", checkpoint)
    check_positive_int("unroll", unroll)

    dtype = real_dtype(h_init.dtype)  # float64 stays, anything else runs in float32
    if is_known(T) and T == 0:
        return jnp.zeros((Bsz, 0, E), dtype), h_init.astype(dtype)
    delta = delta.astype(dtype)
    if valid is not None:
        # An invalid step is an identity (decay exp(0) = 1, no input); this also zeroes the
        # gradients of its Δ, u, B and C.
        valid = jnp.asarray(valid, bool)
        delta = jnp.where(valid[..., None], delta, jnp.zeros_like(delta))
    if starts is not None:
        starts = jnp.asarray(starts, bool)
    # The state and its coefficients as (..., N, E): channels along the vector lanes.
    channels_last = partial(jnp.swapaxes, axis1=-1, axis2=-2)
    ys, h = _scan(
        at_most(checkpoint, T),
        unroll,
        delta,
        channels_last(A.astype(dtype)),
        channels_last(Bm.astype(dtype)),
        channels_last(Cm.astype(dtype)),
        u.astype(dtype),
        starts,
        channels_last(h_init.astype(dtype)),
        channels_last(h_reset.astype(dtype)),
    )
    if valid is not None:
        ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return ys, channels_last(h)


# --- pieces of a block: time is axis 1 of (B, k, ...) -------------------------------------------


def _at(a: Array, t) -> Array:
    """Step ``t`` of a block ``(B, k, ...)`` -> ``(B, ...)``."""
    return jax.lax.dynamic_index_in_dim(a, t, 1, keepdims=False)


def _put(a: Array, value: Array, t) -> Array:
    """``a`` with step ``t`` replaced by ``value`` (in place inside a loop)."""
    return jax.lax.dynamic_update_index_in_dim(a, value, t, 1)


def _span(tree, start, size: int):
    """Steps ``[start, start + size)`` of ``(B, T, ...)`` leaves (None stays None)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, 1), tree)


def _place(tree, values, start):
    """``tree``'s ``(B, T, ...)`` leaves with the steps from ``start`` on replaced by ``values``."""
    return jax.tree.map(
        lambda a, v: jax.lax.dynamic_update_slice_in_dim(a, v, start, 1), tree, values
    )


def check_selective_inputs(inputs: SelectiveInputs, valid, starts, h_init, h_reset):
    """Checks the shapes of a selective scan's arguments (see :func:`selective_scan`); returns
    ``(B, T, E, N, G)``."""
    delta, A, Bm, Cm, u = inputs
    check_rank("u", u, 3, "(batch, time, E)")
    Bsz, T, E = u.shape
    if jnp.ndim(A) == 3:
        N = A.shape[2]
        check_shape("A", A, (Bsz, E, N), "(batch, E, N)")
    else:
        check_rank("A", A, 2, "(E, N) or (batch, E, N)")
        N = A.shape[1]
    check_shape("delta", delta, (Bsz, T, E), "(batch, time, E)")
    check_rank("B", Bm, 4, "(batch, time, G, N)")
    G = Bm.shape[2]
    check_shape("B", Bm, (Bsz, T, G, N), "(batch, time, G, N)")
    check_shape("C", Cm, (Bsz, T, G, N), "(batch, time, G, N)")
    for name, flags in (("valid", valid), ("starts", starts)):
        if flags is not None:
            check_shape(name, flags, (Bsz, T), "(batch, time)")
    check_shape("h_init", h_init, (Bsz, E, N), "(batch, E, N)")
    check_shape("h_reset", h_reset, (Bsz, E, N), "(batch, E, N)")
    if G < 1 or E % G:
        raise ValueError(f"the number of groups G ({G}) must divide the number of channels E ({E})")
    return Bsz, T, E, N, G


def _expand(m: Array, E: int) -> Array:
    """``(..., N, G)`` -> ``(..., N, E)``: each group's value for its ``E/G`` channels."""
    G = m.shape[-1]
    return jnp.broadcast_to(m[..., None], (*m.shape, E // G)).reshape(*m.shape[:-1], E)


def _sum_states(m: Array) -> Array:
    """``(..., N, E)`` summed over ``N`` as ``N`` rows added one by one (fused with the product
    that feeds it; XLA:CPU's reduce over a major axis materialises its input and was several
    times slower)."""
    out = m[..., 0, :]
    for n in range(1, m.shape[-2]):
        out = out + m[..., n, :]
    return out


def _group_products(m: Array, v: Array, G: int) -> Array:
    """``sum_{e in g} m[..., n, e] v[..., e]`` for ``m (B, [k,] N, E)`` and ``v (B, [k,] E)`` ->
    ``(B, [k,] N, G)``, as batched matrix-vector products."""
    if G == 1:
        return jnp.einsum("...ne,...e->...n", m, v)[..., None]
    E = m.shape[-1]
    m = m.reshape(*m.shape[:-1], G, E // G)
    v = v.reshape(*v.shape[:-1], G, E // G)
    return jnp.einsum("...ngj,...gj->...ng", m, v)


def _decays(d: Array, A: Array) -> Array:
    """``exp(Δ ⊗ A)`` ``(B, k, N, E)`` for a block's ``d (B, k, E)`` and ``A`` ``(N, E)`` or
    ``(B, N, E)``: one vectorised exponential for the whole block."""
    A = A[None, None] if A.ndim == 2 else A[:, None]
    return jnp.exp(d[:, :, None, :] * A)


def _inject(dx_t: Array, B_t: Array) -> Array:
    """``(Δ_t u_t) ⊗ B_t`` ``(B, N, E)`` from ``dx_t (B, E)`` and ``B_t (B, N, G)``."""
    return dx_t[:, None, :] * _expand(B_t, dx_t.shape[-1])


def _enter(h: Array, s_t: Array | None, h_reset: Array) -> Array:
    """The state entering a step: ``h_reset`` where the step starts a segment."""
    return h if s_t is None else jnp.where(s_t[:, None, None], h_reset, h)


def _states(a, dx, Bb, sb, h, h_reset, unroll):
    """The states ``(B, k, N, E)`` of a block (the forward loop of the backward pass)."""

    def step(t, carry):
        h, hs = carry
        h = _at(a, t) * _enter(h, None if sb is None else _at(sb, t), h_reset) + _inject(
            _at(dx, t), _at(Bb, t)
        )
        return h, _put(hs, h, t)

    return jax.lax.fori_loop(0, a.shape[1], step, (h, jnp.zeros_like(a)), unroll=unroll)[1]


# --- forward ----------------------------------------------------------------------------------


def _forward_block(unroll, A, h_reset, block, h):
    """One block from the state ``h`` entering it: ``(state after it, outputs (B, k, E))``."""
    d, Bb, Cb, x, sb = block
    E = d.shape[-1]
    a = _decays(d, A)
    dx = d * x

    def step(t, carry):
        h, ys = carry
        h_in = _enter(h, None if sb is None else _at(sb, t), h_reset)
        h = _at(a, t) * h_in + _inject(_at(dx, t), _at(Bb, t))
        y = _sum_states(h * _expand(_at(Cb, t), E))  # formed while h is in cache
        return h, _put(ys, y, t)

    return jax.lax.fori_loop(0, d.shape[1], step, (h, jnp.zeros_like(d)), unroll=unroll)


def _forward(k, unroll, d, A, Bt, Ct, x, s, h0, h_reset, keep):
    """``(ys, h_final, checkpoints)``: the checkpoints are the states entering the blocks
    ``(blocks, B, N, E)`` when ``keep``, else None."""
    Bsz, T, E = d.shape
    whole, rest = divmod(T, k)
    inputs = (d, Bt, Ct, x, s)
    run = partial(_forward_block, unroll, A, h_reset)

    def block(i, carry):
        h, ys, checkpoints = carry
        if keep:
            checkpoints = jax.lax.dynamic_update_index_in_dim(checkpoints, h, i, 0)
        h, y = run(_span(inputs, i * k, k), h)
        return h, _place(ys, y, i * k), checkpoints

    checkpoints = jnp.zeros((whole + (rest > 0), *h0.shape), h0.dtype) if keep else None
    ys = jnp.zeros((Bsz, T, E), d.dtype)
    h, ys, checkpoints = jax.lax.fori_loop(0, whole, block, (h0, ys, checkpoints))
    if rest:  # the last, shorter block
        if keep:
            checkpoints = checkpoints.at[whole].set(h)
        h, y = run(_span(inputs, whole * k, rest), h)
        ys = _place(ys, y, whole * k)
    return ys, h, checkpoints


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _scan(k, unroll, d, A, Bt, Ct, x, s, h0, h_reset):
    """``(ys (B, T, E), h_final (B, N, E))`` from channels-last ``A``, ``Bt``/``Ct``
    ``(B, T, N, G)`` and states; ``d`` is already zero at invalid steps."""
    ys, h, _ = _forward(k, unroll, d, A, Bt, Ct, x, s, h0, h_reset, keep=False)
    return ys, h


def _scan_fwd(k, unroll, d, A, Bt, Ct, x, s, h0, h_reset):
    ys, h, checkpoints = _forward(k, unroll, d, A, Bt, Ct, x, s, h0, h_reset, keep=True)
    return (ys, h), (d, A, Bt, Ct, x, s, h_reset, checkpoints)


# --- backward ---------------------------------------------------------------------------------


def _backward_block(unroll, A, h_reset, block, h_prev, gy, carry):
    """One block in reverse: ``carry = (c, Ā, h̄_reset)`` in and out, and the block's
    ``(Δ̄, B̄, C̄, ū)``. ``h_prev`` is the state entering the block, ``gy`` the outputs'
    cotangent ``(B, k, E)``."""
    d, Bb, Cb, x, sb = block
    k, E = d.shape[1], d.shape[2]
    G = Bb.shape[-1]
    a = _decays(d, A)
    dx = d * x
    hs = _states(a, dx, Bb, sb, h_prev, h_reset, unroll)
    A_b = A[None] if A.ndim == 2 else A  # (1 or B, N, E)

    def step(i, carry):
        t = k - 1 - i
        c, gA, g_reset, gd, gx, gB = carry
        s_t = None if sb is None else _at(sb, t)
        h_in = _enter(jnp.where(t > 0, _at(hs, jnp.maximum(t - 1, 0)), h_prev), s_t, h_reset)
        a_t = _at(a, t)
        gh = _at(gy, t)[:, None, :] * _expand(_at(Cb, t), E) + c  # h̄_t
        c = a_t * gh  # the cotangent of the state entering step t
        if s_t is not None:
            reset = s_t[:, None, None]
            g_reset = g_reset + jnp.where(reset, c, jnp.zeros_like(c))
            c = jnp.where(reset, jnp.zeros_like(c), c)
        gl = gh * h_in * a_t  # the cotangent of Δ_t ⊗ A
        d_t = _at(d, t)
        gA = gA + gl * d_t[:, None, :]
        P = _sum_states(gh * _expand(_at(Bb, t), E))
        gd = _put(gd, _sum_states(gl * A_b) + _at(x, t) * P, t)
        gx = _put(gx, d_t * P, t)
        gB = _put(gB, _group_products(gh, _at(dx, t), G), t)
        return c, gA, g_reset, gd, gx, gB

    zeros = jnp.zeros_like
    c, gA, g_reset, gd, gx, gB = jax.lax.fori_loop(
        0, k, step, (*carry, zeros(d), zeros(x), zeros(Bb)), unroll=unroll
    )
    gC = _group_products(hs, gy, G)  # C̄ of the whole block at once
    return (c, gA, g_reset), (gd, gB, gC, gx)


def _scan_bwd(k, unroll, residuals, cotangents):
    d, A, Bt, Ct, x, s, h_reset, checkpoints = residuals
    g_ys, g_h = cotangents
    T = d.shape[1]
    whole, rest = divmod(T, k)
    inputs = (d, Bt, Ct, x, s)
    run = partial(_backward_block, unroll, A, h_reset)
    grads = (jnp.zeros_like(d), jnp.zeros_like(Bt), jnp.zeros_like(Ct), jnp.zeros_like(x))
    # (c, Ā per example, h̄_reset): c starts as the final state's cotangent
    carry = (g_h, jnp.zeros_like(h_reset), jnp.zeros_like(h_reset))
    if rest:  # the last, shorter block first
        start = whole * k
        carry, block_grads = run(
            _span(inputs, start, rest), checkpoints[whole], _span(g_ys, start, rest), carry
        )
        grads = _place(grads, block_grads, start)

    def block(i, state):
        carry, grads = state
        j = whole - 1 - i
        h_prev = jax.lax.dynamic_index_in_dim(checkpoints, j, 0, keepdims=False)
        carry, block_grads = run(_span(inputs, j * k, k), h_prev, _span(g_ys, j * k, k), carry)
        return carry, _place(grads, block_grads, j * k)

    (g_h0, gA, g_reset), (gd, gB, gC, gx) = jax.lax.fori_loop(0, whole, block, (carry, grads))
    if A.ndim == 2:  # shared by the batch
        gA = jnp.sum(gA, axis=0)
    return gd, gA, gB, gC, gx, None, g_h0, g_reset


_scan.defvjp(_scan_fwd, _scan_bwd)
