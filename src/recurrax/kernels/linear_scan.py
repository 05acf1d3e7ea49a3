r"""The engine for diagonal linear recurrences :math:`h_t = a_t \odot h_{t-1} + b_t`.

Every semantic rule of the driver (lengths, mask, resets, reverse, initial state) is folded into
the coefficients before any scan runs, so the sequential, associative and chunked methods solve
the same plain recurrence from :math:`h_{-1} = 0` and agree to rounding:

* a step that is padding or masked keeps the state: :math:`(a_t, b_t) \to (1, 0)`;
* a step that starts a segment (and step 0, where the initial state enters) restarts from
  :math:`h_0`: :math:`(a_t, b_t) \to (0,\ a_t \odot h_0 + b_t)`;
* reversal permutes the real steps (see :mod:`recurrax.kernels.time_loop`) and permutes the states back.

Methods, for ``T`` steps:

* ``"sequential"`` — ``lax.scan``, ``T`` dependent steps, O(T) work.
* ``"associative"`` — ``lax.associative_scan`` with the operator
  :math:`(a_1, b_1) \bullet (a_2, b_2) = (a_1 a_2,\ a_2 b_1 + b_2)`: O(log T) depth, about twice
  the work.
* ``"chunked"`` — associative inside chunks of ``chunk_size`` steps, sequential across chunks:
  the state entering a chunk is :math:`h_{\text{in}}`, and inside it
  :math:`h_t = A_t \odot h_{\text{in}} + B_t` with :math:`(A_t, B_t)` the chunk's prefix.
* ``"auto"`` — picks one of the above from the shape and the device
  (:func:`recurrax.paths.choose_linear_method`).

Gradient checkpointing means the same for every method (and every path of
:func:`recurrax.unroll`): with a remat chunk of ``k`` steps, the scan runs over chunks of ``k``
steps, each solved by the method from the state entering it and recomputed in the backward pass,
so only one state per chunk and one chunk's intermediates are kept. Chunked with ``remat=True``
uses its own chunks; training memory is then about that of the inputs and outputs themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.kernels.time_loop import (
    arrange,
    check_semantics,
    checkpoint_chunk,
    chunked_loop,
    in_order,
)
from recurrax.paths import LINEAR_METHODS as METHODS
from recurrax.paths import linear_method
from recurrax.validation import (
    check_choice,
    check_positive_int,
    check_rank,
    check_shape,
    forward_mode_hint,
)


def state_dtype(a_dtype, b_dtype):
    """At least float32 (complex64 when either is complex); float64 / complex128 stay wide."""
    wide = jnp.float64 in (a_dtype, b_dtype) or jnp.complex128 in (a_dtype, b_dtype)
    complex_ = jnp.issubdtype(a_dtype, jnp.complexfloating) or jnp.issubdtype(
        b_dtype, jnp.complexfloating
    )
    if complex_:
        return jnp.complex128 if wide else jnp.complex64
    return jnp.float64 if wide else jnp.float32


def linear_scan(
    a: Array,
    b: Array,
    *,
    h0: Array | None = None,
    lengths: Array | None = None,
    mask: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    method: str = "auto",
    chunk_size: int | None = None,
    unroll: int = 1,
    remat: bool = False,
    log_space: bool = False,
) -> tuple[Array, Array]:
    r"""Solves :math:`h_t = a_t \odot h_{t-1} + b_t` for a batch of sequences.

    Args:
      a: ``(B, T, N)`` real or complex decay coefficients.
      b: ``(B, T, N)`` real or complex inputs.
      h0: the state before step 0 and after every reset: ``(B, N)`` or ``(N,)``; default zeros.
      lengths: ``(B,)`` integers in ``[0, T]``; steps at or after the length are padding (state
        frozen).
      mask: ``(B, T)`` booleans; a False step keeps the state.
      resets: ``(B, T)`` booleans; True restarts from ``h0`` before the step.
      reverse: run each sequence from its last real step to its first; states in input order.
      method: ``"sequential"``, ``"associative"``, ``"chunked"`` or ``"auto"``.
      chunk_size: steps per chunk for ``"chunked"`` (default: from
        :func:`recurrax.paths.choose_linear_method`, or 64).
      unroll: ``lax.scan`` unroll factor of the sequential method.
      remat: recompute the scan in the backward pass instead of storing its intermediates, over
        chunks of ``chunk_size`` steps for the chunked method and of about ``sqrt(T)`` steps for
        the others.
      log_space: ``a``, ``b``, ``h0`` and the returned states are logarithms of positive
        quantities: solves :math:`\eta_t = \alpha_t \eta_{t-1} + \beta_t` with
        :math:`a = \log\alpha`, :math:`b = \log\beta`, returning :math:`\log\eta` (real only;
        ``-inf`` stands for zero). The default initial state is then ``-inf`` (η = 0).

    Returns:
      ``(h_final, hs)``: ``(B, N)`` the state after the last real step and ``(B, T, N)`` the state
      after every step (frozen on padding and masked steps), in float32 / complex64 at least.

    Example:
        >>> lam = jnp.exp(-0.1 + 0.5j) * jnp.ones((2, 5, 3))   # (B, T, N), |λ| < 1: a stable decay
        >>> bx, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 3])
        >>> h_last, hs = recurrax.linear_scan(lam, bx, lengths=lengths, method="associative")
        >>> h_last.shape, hs.shape, hs.dtype
        ((2, 3), (2, 5, 3), dtype('complex64'))
        >>> _, hs_seq = recurrax.linear_scan(lam, bx, lengths=lengths, method="sequential")
        >>> bool(jnp.allclose(hs, hs_seq, atol=1e-5))           # every method, the same states
        True
    """
    check_rank("a", a, 3, "(batch, time, state)")
    check_shape("b", b, jnp.shape(a), "(batch, time, state) like a")
    for name, value in (("a", a), ("b", b)):
        if not jnp.issubdtype(jnp.result_type(value), jnp.inexact):
            raise TypeError(f"{name} must be a floating or complex array; got dtype {value.dtype}")
    B, T, N = jnp.shape(a)
    check_choice("method", method, (*METHODS, "auto"))
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    check_positive_int("unroll", unroll)
    method, chunk_size = linear_method(method, chunk_size, B, T, N)
    dtype = state_dtype(jnp.result_type(a), jnp.result_type(b))
    if log_space and jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"a and b must be real with log_space=True; got dtypes {a.dtype}, {b.dtype}"
        )
    a, b = jnp.asarray(a).astype(dtype), jnp.asarray(b).astype(dtype)
    ring = LOG if log_space else ORDINARY

    if h0 is None:
        h0, h0_axis = jnp.full((N,), ring.zero, dtype), None
    else:
        if jnp.shape(h0) not in ((N,), (B, N)):
            raise ValueError(f"h0 must have shape {(N,)} or {(B, N)}; got shape {jnp.shape(h0)}")
        h0_axis = 0 if jnp.ndim(h0) == 2 else None
        h0 = jnp.asarray(h0).astype(dtype)
    lengths, mask, resets = check_semantics(lengths, mask, resets, B, T)

    remat_chunk = None
    if remat:
        remat_chunk = chunk_size if method == "chunked" else checkpoint_chunk(T)

    def one(a, b, length, mask, starts, h0):
        order, valid, starts = arrange(length, mask, starts, reverse)
        a, b = in_order(order, (a, b))
        hs = solve(a, b, valid, starts, h0, method, chunk_size, unroll, remat_chunk, ring)
        final = hs[-1]  # padding is processed last and keeps the state
        return final, in_order(order, hs)

    with forward_mode_hint(f"linear_scan's method={method!r}"):
        return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, h0_axis))(a, b, lengths, mask, resets, h0)


class Semiring(NamedTuple):
    """The arithmetic a recurrence ``h = plus(times(a, h), b)`` is solved in."""

    times: Callable[[Array, Array], Array]
    plus: Callable[[Array, Array], Array]
    one: float
    zero: float


@jax.custom_jvp
def log_add_exp(x: Array, y: Array) -> Array:
    """``log(exp(x) + exp(y))`` whose derivative is 0, not NaN, where both are ``-inf`` (η = 0)."""
    return jnp.logaddexp(x, y)


@log_add_exp.defjvp
def _log_add_exp_jvp(primals, tangents):
    x, y = primals
    dx, dy = tangents
    out = jnp.logaddexp(x, y)
    finite = jnp.isfinite(out)
    safe = jnp.where(finite, out, jnp.zeros_like(out))
    wx = jnp.where(finite, jnp.exp(x - safe), jnp.zeros_like(out))
    wy = jnp.where(finite, jnp.exp(y - safe), jnp.zeros_like(out))
    return out, wx * dx + wy * dy


ORDINARY = Semiring(jnp.multiply, jnp.add, 1.0, 0.0)
# Log space: with a = log α, b = log β and h = log η, plus = logaddexp and times = + solve
# η_t = α_t η_{t-1} + β_t for positive α, β without ever forming the (possibly tiny) products.
LOG = Semiring(jnp.add, log_add_exp, 0.0, -jnp.inf)


def fold(a, b, valid, starts, h0, ring=ORDINARY, h_init=None):
    """Coefficients whose plain recurrence from ``ring.zero`` has the semantics built in.

    Resets restart from ``h0``; step 0 starts from ``h_init`` (default ``h0``) unless it is itself
    a reset. The initial state enters exactly like a reset at step 0.
    """
    h_init = h0 if h_init is None else h_init
    keep = ~valid[:, None]
    a = jnp.where(keep, jnp.full_like(a, ring.one), a)
    b = jnp.where(keep, jnp.full_like(b, ring.zero), b)
    first = (jnp.arange(a.shape[0]) == 0)[:, None]
    restart_to = jnp.where(first & ~starts[:, None], h_init[None, :], h0[None, :])
    restart = starts[:, None] | first
    b = jnp.where(restart, ring.plus(ring.times(a, restart_to), b), b)
    a = jnp.where(restart, jnp.full_like(a, ring.zero), a)
    return a, b


def solve(
    a,
    b,
    valid,
    starts,
    h0,
    method,
    chunk_size,
    unroll=1,
    remat_chunk=None,
    ring=ORDINARY,
    h_init=None,
):
    """States ``(T, N)`` of one example whose coefficients are in processing order.

    Resets restart from ``h0``; the sequence starts from ``h_init`` (default ``h0``). With
    ``remat_chunk`` the method runs over checkpointed chunks of that many steps.
    """
    a, b = fold(a, b, valid, starts, h0, ring, h_init)
    solve_from = partial(_solve_from, ring, method, chunk_size, unroll)
    if remat_chunk is None:
        return solve_from(jnp.full_like(b[0], ring.zero), a, b)

    def run_chunk(h_in, ab):
        hs = solve_from(h_in, *ab)
        return hs[-1], hs

    fill = (ring.one, ring.zero)  # identity steps leave the state alone
    _, hs = chunked_loop(run_chunk, jnp.full_like(b[0], ring.zero), (a, b), remat_chunk, fill=fill)
    return hs


def _solve_from(ring, method, chunk_size, unroll, h_in, a, b):
    """The method's states for steps ``a, b`` ``(T, N)`` entered with state ``h_in``."""
    # Entering with h_in is a first step whose input absorbs it: (a_0, b_0) -> (0, a_0 h_in + b_0).
    b = b.at[0].set(ring.plus(ring.times(a[0], h_in), b[0]))
    a = a.at[0].set(ring.zero)
    if method == "sequential":
        if ring is ORDINARY:
            return _sequential_with_reverse_vjp(a, b, unroll)
        return _sequential(ring, unroll, a, b)
    if method == "associative":
        return _associative(ring, a, b)

    def run_chunk(h, ab):
        hs = _associative_chunk(ring, h, *ab)
        return hs[-1], hs

    fill = (ring.one, ring.zero)
    init = jnp.full_like(h_in, ring.zero)
    return chunked_loop(run_chunk, init, (a, b), chunk_size, remat=False, fill=fill)[1]


def _combine(ring, first, second):
    """``(a1, b1) • (a2, b2) = (a1 a2, a2 b1 + b2)``: apply step 1, then step 2."""
    a1, b1 = first
    a2, b2 = second
    return ring.times(a1, a2), ring.plus(ring.times(a2, b1), b2)


def _associative(ring, a, b):
    return jax.lax.associative_scan(partial(_combine, ring), (a, b), axis=0)[1]


def _sequential(ring, unroll, a, b, reverse=False):
    def step(h, ab):
        h = ring.plus(ring.times(ab[0], h), ab[1])
        return h, h

    init = jnp.full_like(b[0], ring.zero)
    return jax.lax.scan(step, init, (a, b), unroll=unroll, reverse=reverse)[1]


def _sequential_in_place(a, b, unroll, reverse=False):
    """The ordinary sequential scan, solved in place in the buffer of ``b``.

    Same numbers as :func:`_sequential`. Since :math:`h_{-1} = 0`, the first state is
    :math:`b_0`; each later step overwrites :math:`b_t` with :math:`a_t h_{t-1} + b_t`. Under
    ``vmap`` the loop reads and writes the batched arrays along their time axis, where ``lax.scan``
    would first move time to the front of every input and move it back in the output: two full
    transposes that cost XLA:CPU three times the recurrence itself. Not for autodiff (the carried
    buffer would be saved every step); :func:`_sequential_with_reverse_vjp` differentiates it.
    """
    T = a.shape[0]

    def step(i, hs):
        t, prev = (T - 1 - i, T - i) if reverse else (i, i - 1)
        h = a[t] * hs[prev] + hs[t]
        return jax.lax.dynamic_update_index_in_dim(hs, h, t, axis=0)

    return jax.lax.fori_loop(1, T, step, b, unroll=unroll)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sequential_with_reverse_vjp(a, b, unroll):
    r"""The sequential scan, differentiated by a second linear scan run backwards in time.

    The transpose of :math:`h_t = a_t h_{t-1} + b_t` (from :math:`h_{-1} = 0`) with output
    cotangents :math:`g_t` is again a linear recurrence, in reverse:
    :math:`\delta_t = g_t + a_{t+1} \delta_{t+1}`, and then :math:`\bar b_t = \delta_t`,
    :math:`\bar a_t = \delta_t h_{t-1}` (JAX's complex convention: transposes, no conjugates).
    Autodiff of ``lax.scan`` would instead save and replay every step's residuals; this keeps
    only ``a`` and the states and does the backward pass as one more scan plus elementwise work.
    """
    return _sequential_in_place(a, b, unroll)


def _sequential_forward(a, b, unroll):
    hs = _sequential_in_place(a, b, unroll)
    return hs, (a, hs)


def _sequential_backward(unroll, residuals, g):
    a, hs = residuals
    a_next = jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
    delta = _sequential_in_place(a_next, g, unroll, reverse=True)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
    return delta * h_prev, delta


_sequential_with_reverse_vjp.defvjp(_sequential_forward, _sequential_backward)


def _associative_chunk(ring, h_in, a, b):
    prefix_a, prefix_b = jax.lax.associative_scan(partial(_combine, ring), (a, b), axis=0)
    return ring.plus(ring.times(prefix_a, h_in[None, :]), prefix_b)
