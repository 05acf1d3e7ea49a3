"""The causal depthwise convolution of the Mamba blocks over a whole sequence, under the driver's
semantics (a masked or padding step leaves the window alone; a reset restarts it)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array


def causal_conv(
    u: Array, w: Array, b: Array, valid: Array, starts: Array, conv0: Array, conv_reset: Array
) -> tuple[Array, Array]:
    r"""The causal depthwise convolution and silu of every processed step, in parallel over time,
    under the driver's semantics.

    ``u (T, C)`` are the convolution's inputs, ``w (K, C)`` its taps (``w[K-1]`` multiplies the
    current input), ``b (C,)`` its bias, ``valid``/``starts`` ``(T,)`` the driver's flags and
    ``conv0``/``conv_reset`` ``(K-1, C)`` the initial window and the window resets return to.

    The window of a valid step ``t`` holds the ``u`` of the last ``K`` valid steps of ``t``'s
    segment up to and including ``t``, preceded by the segment's starting window where the segment
    has fewer (``conv0`` for the first segment unless step 0 is a reset, ``conv_reset`` after a
    reset). The valid steps are therefore moved to the front (in order), convolved there with
    shifted copies (the rows a shift brings in from before a segment's start come from its starting
    window, one small matrix product), and moved back. Moving rows is a gather whose transpose is
    the inverse gather (:func:`_move_rows`), so neither pass scatters.

    Returns ``(v (T, C), window (K-1, C))``: ``silu(conv + b)`` at every valid step (zeros at
    invalid ones, where the driver ignores it), and the window after the last step, i.e. the carry.
    """
    T, C = u.shape
    K = w.shape[0]
    valid, starts = jnp.asarray(valid), jnp.asarray(starts)
    t = jnp.arange(T, dtype=jnp.int32)
    valid_i = valid.astype(jnp.int32)
    seen, before, initial, position = segments(valid, starts)
    packed = t < seen[-1]  # the k-th valid step exists
    back = jnp.maximum(seen - 1, 0)  # where step t's row is among the packed ones

    # Packed rows: k-th valid step; its offset in its segment, and its segment's starting window.
    kept = valid_i > 0  # (computed, not the caller's array: custom_vjp residuals must be traced)
    up = _move_rows(u, position, packed, back, kept)
    off = t - before[position]
    from_initial = initial[position]
    acc = jnp.broadcast_to(b[None, :], (T, C))
    shifted = jnp.concatenate([jnp.zeros((K - 1, C), u.dtype), up], axis=0)
    for j in range(K):  # lag j (w[K-1-j]): the packed row k-j, when still in k's segment
        row = shifted[K - 1 - j : K - 1 - j + T]
        acc = acc + w[K - 1 - j][None, :] * jnp.where((off >= j)[:, None], row, jnp.zeros_like(row))
    if K > 1:
        # Lag j reaching i = j - off rows before the segment reads its starting window's row
        # K-1-i of [conv_reset; conv0]: one-hot (T, (K-1)·2(K-1)) times the weighted rows.
        lags = jnp.arange(1, K, dtype=jnp.int32)
        row = K - 1 - lags[None, :] + off[:, None] + jnp.where(from_initial, K - 1, 0)[:, None]
        row = jnp.where(off[:, None] < lags[None, :], row, -1)  # (T, K-1); -1: inside the segment
        onehot = row[:, :, None] == jnp.arange(2 * (K - 1), dtype=jnp.int32)[None, None, :]
        table = jnp.concatenate([conv_reset, conv0], axis=0)  # (2(K-1), C)
        weighted = w[K - 1 - lags][:, None, :] * table[None, :, :]  # (K-1, 2(K-1), C)
        acc = acc + onehot.reshape(T, -1).astype(u.dtype) @ weighted.reshape(-1, C)
    v = _move_rows(jax.nn.silu(acc), back, kept, position, packed)

    # The window after the last step: the last K-1 valid steps of the last segment, preceded by
    # its starting window.
    if K == 1:
        return v, conv0
    count = seen[-1] - before[-1]  # valid steps in the last segment
    m = count - (K - 1) + jnp.arange(K - 1, dtype=jnp.int32)  # < 0: the starting window
    rows = jnp.take(u, position[jnp.clip(before[-1] + m, 0, T - 1)], axis=0)
    start = jnp.where(initial[-1], conv0, conv_reset)
    window = jnp.where(
        (m >= 0)[:, None], rows, jnp.take(start, jnp.clip(K - 1 + m, 0, K - 2), axis=0)
    )
    return v, window


class Segments(NamedTuple):
    """Where each processed step stands among the valid steps and its segment, ``(T,)`` each.

    Attributes:
      seen: valid steps in ``[0, t]``.
      before: valid steps before ``t``'s segment (step 0 starts the first segment: the initial
        carry enters like a reset there).
      initial: True where ``t``'s segment began with the initial carry (not with a reset).
      position: the step index of the ``k``-th valid step (``k`` counted from 0 over the
        sequence); beyond the last valid step, 0.
    """

    seen: Array
    before: Array
    initial: Array
    position: Array


def segments(valid: Array, starts: Array) -> Segments:
    """The :class:`Segments` of one example's ``valid`` and ``starts`` ``(T,)`` flags."""
    T = valid.shape[0]
    t = jnp.arange(T, dtype=jnp.int32)
    valid_i = valid.astype(jnp.int32)
    seen = jnp.cumsum(valid_i)
    first = starts.at[0].set(True)
    seg_start = jax.lax.cummax(jnp.where(first, t, jnp.zeros_like(t)), axis=0)
    before = seen[seg_start] - valid_i[seg_start]
    initial = (seg_start == 0) & ~starts[0]
    slot = jnp.where(valid, seen - 1, jnp.full_like(seen, T))
    position = jnp.zeros((T,), jnp.int32).at[slot].set(t, mode="drop")
    return Segments(seen, before, initial, position)


@jax.custom_vjp
def _move_rows(x: Array, index: Array, keep: Array, inverse: Array, inverse_keep: Array) -> Array:
    """``y[i] = x[index[i]] if keep[i] else 0`` for a one-to-one ``index`` between the kept rows
    of ``y`` and the rows ``inverse_keep`` of ``x`` (``inverse`` its inverse). The transpose is the
    inverse move, a gather as well (autodiff of a gather would scatter-add)."""
    rows = jnp.take(x, index, axis=0, mode="clip")
    return jnp.where(keep[:, None], rows, jnp.zeros_like(rows))


def _move_rows_fwd(x, index, keep, inverse, inverse_keep):
    return _move_rows(x, index, keep, inverse, inverse_keep), (index, keep, inverse, inverse_keep)


def _move_rows_bwd(residuals, g):
    index, keep, inverse, inverse_keep = residuals
    return _move_rows(g, inverse, inverse_keep, index, keep), None, None, None, None


_move_rows.defvjp(_move_rows_fwd, _move_rows_bwd)
