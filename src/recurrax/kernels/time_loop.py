"""The pieces every loop over time shares: processing order, padding to whole chunks, the
checkpointed chunk loop, and per-step choices between pytrees.

Every path of :func:`recurrax.unroll` (the step loop, the fused gated path, the linear-scan
solvers, the selective scan and the chunked state-space-dual form) is built from these, so that
lengths, masks, resets, reversal and ``remat`` mean exactly the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.validation import check_bool, check_integer, check_range, check_shape


class Timeline(NamedTuple):
    """One example's steps in processing order.

    Attributes:
      order: ``(T,)`` the input position processed at each step (``None`` when running forwards);
        a permutation that is its own inverse, so ``a[order]`` both arranges and restores.
      valid: ``(T,)`` True where the processed step is real (before the length) and not masked.
      starts: ``(T,)`` True where the processed step begins a new segment (the carry is reset
        before it); never True on padding.
    """

    order: Array | None
    valid: Array
    starts: Array


def arrange(length: Array, mask: Array, starts: Array, reverse: bool) -> Timeline:
    """Processing order of one example: ``length`` (), ``mask`` and ``starts`` (T,) booleans.

    In reverse the real steps are visited last to first and the padding keeps its place. A segment
    is then entered at its last step, i.e. where the following input position starts a segment.
    """
    T = mask.shape[0]
    t = jnp.arange(T, dtype=length.dtype)
    real = t < length
    order = None
    if reverse:
        order = jnp.where(real, length - 1 - t, t)
        mask = mask[order]
        # (the last real step ends the sequence, not a segment: a flag on padding doesn't count)
        segment_ends = jnp.concatenate([starts[1:], jnp.zeros((1,), bool)]) & (t + 1 < length)
        starts = segment_ends[order]
    return Timeline(order, mask & real, starts & real)


def in_order(order: Array | None, tree, axis: int = 0):
    """``tree``'s leaves permuted along ``axis`` by ``order`` (arranges, and restores: ``order``
    is its own inverse); unchanged when ``order`` is None (running forwards)."""
    if order is None:
        return tree
    return jax.tree.map(lambda a: jnp.take(a, order, axis=axis), tree)


def check_semantics(lengths, mask, resets, B: int, T: int, time_major: bool = False):
    """Validates ``lengths`` (B,) and ``mask``/``resets`` ((B, T), or (T, B) when ``time_major``).

    Returns them filled in (all steps real, none masked, no resets) as int and bool arrays.
    Lengths can be range-checked only outside ``jit``; inside, they are clipped to ``[0, T]``.
    """
    if lengths is None:
        lengths = jnp.full((B,), T, jnp.int32)
    else:
        check_integer("lengths", lengths)
        check_shape("lengths", lengths, (B,), "(batch,)")
        check_range("lengths", lengths, 0, T)
        lengths = jnp.clip(jnp.asarray(lengths), 0, T)
    shape, layout = ((T, B), "(time, batch)") if time_major else ((B, T), "(batch, time)")
    flags = []
    for name, value, default in (("mask", mask, True), ("resets", resets, False)):
        if value is None:
            flags.append(jnp.full(shape, default, bool))
        else:
            check_bool(name, value)
            check_shape(name, value, shape, layout)
            flags.append(jnp.asarray(value))
    return lengths, *flags


def tree_where(flag: Array | None, on_true, on_false):
    """Leafwise ``where(flag, on_true, on_false)`` with ``flag`` broadcast over the trailing axes.

    ``flag`` has the leading axes of the leaves (``()`` for one step of one example, ``(B,)`` for
    a batch, ``(T, B)`` for a block); None means all False.
    """
    if flag is None:
        return on_false

    def pick(a, b):
        return jnp.where(flag.reshape(flag.shape + (1,) * (a.ndim - flag.ndim)), a, b)

    return jax.tree.map(pick, on_true, on_false)


def is_known(size) -> bool:
    """Whether a dimension is a concrete integer. Under ``jax.export`` with symbolic shapes it is
    a symbolic expression instead, which cannot be compared with a number in Python."""
    return isinstance(size, int)


def at_most(size: int, T) -> int:
    """``min(size, T)``: a chunk or span of ``size`` steps, shortened to a known sequence length.

    For a symbolic ``T`` (``jax.export``) it is ``size``: the padding to whole chunks then covers
    sequences shorter than one chunk, with the same numbers.
    """
    return min(size, T) if is_known(T) else size


UNKNOWN_LENGTH_CHUNK = 64
"""Steps per checkpointed chunk of ``remat=True`` when the length is symbolic (``jax.export``):
the chunk of a 4096-step sequence."""


def checkpoint_chunk(T) -> int:
    """Steps per chunk of ``remat=True``: about ``sqrt(T)``, so that memory grows with
    ``T/chunk + chunk ~ 2 sqrt(T)``; :data:`UNKNOWN_LENGTH_CHUNK` when ``T`` is symbolic."""
    return max(1, round(math.sqrt(T))) if is_known(T) else UNKNOWN_LENGTH_CHUNK


def pad_time(tree, multiple: int, fill=None):
    """Pads every leaf's leading (time) axis to a multiple of ``multiple``.

    The padding is zeros (False for booleans) unless ``fill`` gives a pytree of scalars matching
    ``tree``. Returns ``(padded, pad)``; ``pad`` is the number of steps added. A path pads with
    steps that leave its state alone (invalid steps, unit decays), so trimming the outputs back to
    ``T`` is all it needs afterwards.
    """
    T = jax.tree.leaves(tree)[0].shape[0]
    # (written as whole chunks minus T, so that a symbolic T gives a length that is provably a
    # multiple of ``multiple``)
    pad = -(-T // multiple) * multiple - T
    if is_known(pad) and pad == 0:
        return tree, 0

    def extend(a, value):
        tail = jnp.full((pad, *a.shape[1:]), value, a.dtype)
        return jnp.concatenate([a, tail])

    if fill is None:
        return jax.tree.map(lambda a: None if a is None else extend(a, 0), tree), pad
    return jax.tree.map(extend, tree, fill), pad


def to_chunks(tree, chunk: int):
    """``(n·chunk, ...)`` leaves to ``(n, chunk, ...)`` (the time axis must be a whole number)."""
    return jax.tree.map(lambda a: a.reshape((a.shape[0] // chunk, chunk, *a.shape[1:])), tree)


def from_chunks(tree, T: int | None = None):
    """``(n, chunk, ...)`` leaves back to ``(n·chunk, ...)``, trimmed to ``T`` steps when given."""

    def merge(a):
        a = a.reshape((a.shape[0] * a.shape[1], *a.shape[2:]))
        return a if T is None else a[:T]

    return jax.tree.map(merge, tree)


def chunked_loop(run_chunk: Callable, init, inputs, chunk: int, *, remat: bool = True, fill=None):
    """Runs ``run_chunk(carry, chunk_inputs) -> (carry, chunk_outputs)`` over consecutive chunks
    of ``chunk`` steps of ``inputs`` (leaves ``(T, ...)``), carrying the state between chunks.

    The time axis is padded to whole chunks (see :func:`pad_time`; the padding must leave the
    carry alone) and the outputs are trimmed back to ``T``. With ``remat`` each chunk is
    rematerialised in the backward pass: only the carries at chunk boundaries are stored, so
    memory grows with ``T/chunk + chunk`` instead of ``T``. This is what ``remat=k`` means on every
    path of :func:`recurrax.unroll`.
    """
    T = jax.tree.leaves(inputs)[0].shape[0]
    padded, _ = pad_time(inputs, chunk, fill)
    body = jax.checkpoint(run_chunk) if remat else run_chunk
    final, out = jax.lax.scan(body, init, to_chunks(padded, chunk))
    return final, from_chunks(out, T)
