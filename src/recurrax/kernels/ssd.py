r"""The chunked state-space-dual (SSD) algorithm for selective state spaces with a scalar decay per
head (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
Structured State Space Duality", Section 6).

With ``H`` heads of ``P`` channels, the state of head ``h`` is :math:`h_t \in \mathbb{R}^{P \times
N}` and its decay :math:`\exp(\Delta_t A_h)` is one scalar per step, so

.. math::

    h_t = e^{l_t} h_{t-1} + \bar x_t \otimes B_t, \qquad y_t = h_t C_t, \qquad
    l_t = \Delta_t A_h \le 0, \quad \bar x_t = \Delta_t u_t \in \mathbb{R}^P.

Unrolled, :math:`y_t = \sum_{s \le t} e^{c_t - c_s} (C_t \cdot B_s)\, \bar x_s` with the
cumulative sums :math:`c_t = \sum_{k \le t} l_k`: a masked, decay-weighted attention-like matrix
product. The algorithm splits time into chunks of ``Q`` steps and computes, for all chunks at once,

1. the outputs from inside the chunk, :math:`Y = (L \circ C B^\top) \bar X` with the ``(Q, Q)``
   decay mask :math:`L_{ts} = e^{c_t - c_s}` for :math:`s \le t` (zero above the diagonal),
   as matrix products;
2. the state each chunk leaves behind when it starts from zero,
   :math:`\sum_s e^{c_{Q-1} - c_s} \bar x_s \otimes B_s`;
3. the states entering the chunks, by a short scan over the ``T/Q`` chunks with the decay
   :math:`e^{c_{Q-1}}` of a whole chunk;
4. the outputs from the state entering the chunk, :math:`e^{c_t} h_{enter} C_t`.

The work is :math:`O(T Q (N + P))` per head in matrix products and the stored intermediates are
:math:`O(T Q)` per head plus :math:`O(T/Q \cdot P N)` chunk states; no ``(T, E, N)`` array is
formed. Gradients come from ordinary automatic differentiation of these steps. The steps run over
checkpointed spans of ``span`` steps (whole chunks, the state passed on between spans, each span
recomputed in the backward pass), so that the intermediates of one span only are held at a time:
on a CPU every fresh page of the temporary buffer costs a page fault, and the recomputation costs
less than the memory it saves.

The driver's semantics are folded in exactly:

* an invalid step (padding or masked) has :math:`\Delta_t := 0`: decay 1 and no input, so the
  state passes through it unchanged; its output is zeroed;
* a reset at step ``t`` (``starts[t]``) replaces the incoming state by ``h_reset``. Inside a chunk
  it cuts the decay mask, :math:`L_{t's} = 0` for :math:`s < t \le t'` (the chunk is split into
  segments, and only pairs within one segment interact), and ``h_reset`` enters at ``t`` like a
  chunk's entering state, with the decay :math:`e^{c_{t'} - c_{t-1}}` to a later step ``t'`` of the
  segment; the chunk's entering state reaches only the steps before the chunk's first reset.
  A chunk that contains a reset ends in a state that does not depend on the state entering it
  (decay 0 in the scan over chunks), plus ``h_reset`` decayed to the chunk's end.

Exponentials are only taken of :math:`c_t - c_s` where :math:`s \le t` within a segment (masked
to :math:`-\infty` before the exponential, so neither the values nor the gradients of the
discarded entries can overflow into ``inf * 0 = NaN``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.cells.base import SelectiveInputs, real_dtype
from recurrax.kernels.selective_scan import check_selective_inputs
from recurrax.kernels.time_loop import (
    at_most,
    chunked_loop,
    from_chunks,
    is_known,
    pad_time,
    to_chunks,
)
from recurrax.validation import check_positive_int

DEFAULT_CHUNK = 32
"""Steps per chunk. Measured on a 2-core CPU (AMD EPYC, shared, 2026-12-03) for the training step
of a Mamba-2 block through ``recurrax.unroll(method="chunked")`` (batch 8, T = 4096, D = 64,
E = 128, N = 16, headdim 64), median of 7 interleaved calls: chunks of 16 / 32 / 64 / 128 / 256
took 283 / 282 / 295 / 336 / 449 ms (minimum 164 / 159 / 168 / 190 / 256 ms); with headdim 32
(4 heads) 299 / 309 / 330 / 414 / 610 ms. The work of the ``(Q, Q)`` blocks grows with ``Q`` and
small chunks lengthen the scan over chunks; 32 is the best of both head counts."""

DEFAULT_SPAN = 512
"""Steps per checkpointed span (rounded up to whole chunks). On the block above, spans of 256,
512 and 1024 steps cut the training step's temporary buffer from 447 to about 345 MiB and its
time by 5-20%; 512 was the best (differences between the three within the machine's noise)."""


def ssd_scan(
    inputs: SelectiveInputs,
    valid: Array | None,
    starts: Array | None,
    h_init: Array,
    h_reset: Array,
    *,
    heads: int,
    chunk: int = DEFAULT_CHUNK,
    span: int | None = DEFAULT_SPAN,
) -> tuple[Array, Array]:
    r"""Runs a batch of selective state spaces with a scalar decay per head, chunk by chunk.

    Per example and step ``t`` (in processing order) the result equals the step loop

    .. code-block:: text

        h_in  = h_reset if starts[t] else h_{t-1}                  (h_{-1} = h_init)
        h_new = exp(delta_t A) * h_in + (delta_t u_t) ⊗ B_t         (row e uses its group's B)
        h_t   = h_new if valid[t] else h_in
        y_t   = h_t C_t if valid[t] else 0

    Args:
      inputs: :class:`recurrax.cells.base.SelectiveInputs` with a leading batch axis: ``delta``
        ``(B, T, E)``, ``A`` ``(E, N)`` shared by the batch (or ``(B, E, N)``, one per example, as
        a vmapped ``prepare`` returns it), ``B`` and ``C`` ``(B, T, G, N)``,
        ``u`` ``(B, T, E)``. Head ``h`` is the channels ``h*P .. h*P+P-1`` (``P = E/heads``);
        ``delta`` must be constant within a head and ``A`` constant within a head (the kernel
        reads the head's first channel), and the ``heads/G`` heads of a group share ``B``, ``C``.
      valid: ``(B, T)`` booleans, or None (every step valid).
      starts: ``(B, T)`` booleans, or None (no resets).
      h_init: ``(B, E, N)`` the state before the first step; its dtype (at least float32) is the
        dtype of all arithmetic and of the results (bfloat16 inputs run in float32).
      h_reset: ``(B, E, N)`` the state a reset returns to.
      heads: ``H``, the number of heads (must divide ``E``, and be a multiple of ``G``).
      chunk: ``Q``, steps per chunk; ``T`` need not be a multiple (the last chunk is padded with
        steps that leave the state alone). Chunks longer than ``T`` are shortened to ``T``.
      span: steps per checkpointed span (rounded up to whole chunks), or None for one span: the
        memory held at a time against the forward pass recomputed once in the backward pass.
        The results are the same.

    Returns:
      ``(ys (B, T, E), h_final (B, E, N))``: the outputs of every step and the state after the
      last one.
    """
    delta, A, Bm, Cm, u = inputs
    Bsz, T, E, N, G = check_selective_inputs(inputs, valid, starts, h_init, h_reset)
    check_positive_int("heads", heads)
    check_positive_int("chunk", chunk)
    if span is not None:
        check_positive_int("span", span)
    if E % heads:
        raise ValueError(f"heads must divide the number of channels E ({E}); got {heads}")
    if heads % G:
        raise ValueError(f"heads must be a multiple of the number of groups G ({G}); got {heads}")

    dtype = real_dtype(h_init.dtype)  # float64 stays, anything else runs in float32
    H, P = heads, E // heads
    if is_known(T) and T == 0:
        return jnp.zeros((Bsz, 0, E), dtype), h_init.astype(dtype)
    # The head's scalars: its first channel's step size and decay rate.
    dt = delta.reshape(Bsz, T, H, P)[..., 0].astype(dtype)  # (B, T, H)
    a = A.reshape(*A.shape[:-2], H, P, N)[..., 0, 0].astype(dtype)  # (H,) or (B, H)
    x = u.reshape(Bsz, T, H, P).astype(dtype)
    one = jax.vmap(
        _ssd_one, in_axes=(0, 0 if a.ndim == 2 else None, 0, 0, 0, 0, 0, 0, 0, None, None)
    )
    ys, h = one(
        dt,
        a,
        x,
        Bm.astype(dtype),
        Cm.astype(dtype),
        valid,
        starts,
        h_init.astype(dtype).reshape(Bsz, H, P, N),
        h_reset.astype(dtype).reshape(Bsz, H, P, N),
        at_most(chunk, T),
        span,
    )
    return ys, h.reshape(Bsz, E, N)


def _ssd_one(dt, a, x, Bm, Cm, valid, starts, h_init, h_reset, Q, span):
    """One example: ``dt (T, H)``, ``a (H,)``, ``x (T, H, P)``, ``Bm``/``Cm`` ``(T, G, N)``,
    ``valid``/``starts`` ``(T,)`` or None, ``h_init``/``h_reset`` ``(H, P, N)``, chunk ``Q``,
    checkpointed spans of ``span`` steps (None: one span). Returns ``ys (T, H*P)`` and the final
    state ``(H, P, N)``."""
    if valid is not None:
        # An invalid step is an identity: decay exp(0) = 1 and no input.
        dt = jnp.where(valid[:, None], dt, jnp.zeros_like(dt))
    xbar = dt[:, :, None] * x  # (T, H, P): Δ_t u_t
    run = partial(_chunks, a=a, h_reset=h_reset, Q=Q)
    if span is not None:
        span = -(-span // Q) * Q  # whole chunks
    if span is None or (is_known(dt.shape[0]) and span >= dt.shape[0]):
        h, ys = run(h_init, (dt, xbar, Bm, Cm, starts))
    else:
        # Spans padded with steps that leave the state alone; each recomputed in the backward
        # pass, so that only one span's intermediates are ever held.
        h, ys = chunked_loop(run, h_init, (dt, xbar, Bm, Cm, starts), span)
    if valid is not None:
        ys = jnp.where(valid[:, None], ys, jnp.zeros_like(ys))
    return ys, h


def _chunks(h_init, inputs, *, a, h_reset, Q):
    """The chunked algorithm over ``T`` steps of one example, from the state ``h_init``:
    ``inputs = (dt (T, H), xbar (T, H, P), Bm (T, G, N), Cm (T, G, N), starts (T,) or None)``
    with ``dt`` zero at invalid steps. Returns ``(h_final, ys (T, H*P))``.

    Inside, the layout is head-major, ``(chunks, H, Q, ...)``, so that every product is a batched
    matrix product over ``(chunk, head)``.
    """
    dt, xbar, Bm, Cm, starts = inputs
    T, H, P = xbar.shape
    G, N = Bm.shape[1:]
    J = H // G  # heads per group

    # Whole chunks; the padding (Δ = 0, x = 0, no start) leaves the state alone.
    (dt, xbar, Bm, Cm, starts), _ = pad_time((dt, xbar, Bm, Cm, starts), Q)
    dt, xbar, Bm, Cm, starts = to_chunks((dt, xbar, Bm, Cm, starts), Q)
    n = dt.shape[0]  # chunks
    xbar = jnp.swapaxes(xbar, 1, 2)  # (n, H, Q, P)
    Bm, Cm = jnp.swapaxes(Bm, 1, 2), jnp.swapaxes(Cm, 1, 2)  # (n, G, Q, N)

    l = jnp.swapaxes(dt, 1, 2) * a[None, :, None]  # (n, H, Q) log decays
    cum = jnp.cumsum(l, axis=2)  # c_t, inclusive
    t = jnp.arange(Q)
    causal = t[:, None] >= t[None, :]  # (Q, Q): s <= t
    if starts is None:
        mask = causal[None, None]  # (1, 1, Q, Q)
        entry = cum  # log decay from the chunk's entry to t
    else:
        seg = jnp.cumsum(starts.astype(jnp.int32), axis=1)  # (n, Q) resets in [0, t]
        mask = (causal[None] & (seg[:, :, None] == seg[:, None, :]))[:, None]  # (n, 1, Q, Q)
        # The segment of t began at its last reset r <= t (or at the chunk's start, r = 0) with
        # the state h_in entering r: the decay from there is c_t - c_{r-1} = c_t - (c_r - l_r).
        r = jax.lax.cummax(jnp.where(starts, t[None, :], 0), axis=1)  # (n, Q)
        r = jnp.broadcast_to(r[:, None, :], cum.shape)
        entry = cum - jnp.take_along_axis(cum - l, r, axis=2)  # c_t - c_{r-1}; c_{-1} = 0

    # 1. Outputs from inside the chunk: Y = (L ∘ C Bᵀ) X̄, per head.
    diff = cum[:, :, :, None] - cum[:, :, None, :]  # (n, H, Q_t, Q_s): c_t - c_s
    # Mask before the exponential: above the diagonal c_t - c_s > 0 can overflow, and exp of it
    # (or its gradient) times a zero mask would be NaN.
    L = jnp.exp(jnp.where(mask, diff, -jnp.inf))
    CB = jnp.einsum("cgqn,cgsn->cgqs", Cm, Bm)  # (n, G, Q, Q)
    # Each head's mask times its group's C Bᵀ. One product per head (rather than broadcasting
    # C Bᵀ over the heads of a group) makes the gradient of C Bᵀ a sum of H arrays, not a
    # reduction over a middle axis, which XLA:CPU runs far slower.
    M = jnp.stack([L[:, h] * CB[:, h // J] for h in range(H)], axis=1)  # (n, H, Q, Q)
    y = jnp.einsum("chqs,chsp->chqp", M, xbar)  # (n, H, Q, P)

    # 2. The state each chunk leaves from a zero entering state (only its last segment counts).
    last = cum[:, :, -1]  # (n, H) the chunk's total log decay
    w = jnp.exp(last[:, :, None] - cum)  # (n, H, Q): decay from s to the chunk's end, <= 1
    if starts is not None:
        w = jnp.where((seg == seg[:, -1:])[:, None, :], w, jnp.zeros_like(w))
    xw = (w[..., None] * xbar).reshape(n, G, J, Q, P)
    local = jnp.einsum("cgjqp,cgqn->cgjpn", xw, Bm).reshape(n, H, P, N)
    decay = jnp.exp(last)  # (n, H): the whole chunk's decay of its entering state
    if starts is not None:
        # A chunk with a reset forgets its entering state and ends in h_reset decayed from the
        # last reset to the end, plus its local state.
        reset = seg[:, -1] > 0  # (n,)
        decay = jnp.where(reset[:, None], jnp.zeros_like(decay), decay)
        from_reset = jnp.exp(entry[:, :, -1])[:, :, None, None] * h_reset[None]
        local = local + jnp.where(reset[:, None, None, None], from_reset, jnp.zeros_like(local))

    # 3. The states entering the chunks: a short scan over the chunks.
    def across(h, chunk_in):
        d, s = chunk_in
        return d[:, None, None] * h + s, h

    h_final, h_enter = jax.lax.scan(across, h_init, (decay, local))  # h_enter (n, H, P, N)

    # 4. Outputs from the state entering the chunk (or h_reset, after a reset in the chunk).
    y_in = jnp.einsum("cgqn,cgjpn->cgjqp", Cm, h_enter.reshape(n, G, J, P, N))
    if starts is not None:
        y_reset = jnp.einsum("cgqn,gjpn->cgjqp", Cm, h_reset.reshape(G, J, P, N))
        y_in = jnp.where((seg == 0)[:, None, None, :, None], y_in, y_reset)
    y = y + jnp.exp(entry)[..., None] * y_in.reshape(n, H, Q, P)

    return h_final, from_chunks(jnp.swapaxes(y, 1, 2).reshape(n, Q, H * P), T)
