"""Pooling over time: from per-step features ``(B, T, F)`` to one vector per sequence ``(B, F)``.

All poolings look only at real steps: steps at or after ``lengths`` (and, where accepted, masked
steps) never contribute, so a padded batch pools exactly as each sequence alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Key, Params
from recurrax.validation import check_bool, check_positive_int, check_rank, check_shape


def real_steps(ys: Array, lengths: Array | None = None, mask: Array | None = None) -> Array:
    """``(B, T)`` booleans: True where a step of ``ys (B, T, ...)`` is real (before the length
    and not masked)."""
    B, T = ys.shape[:2]
    valid = jnp.ones((B, T), bool)
    if lengths is not None:
        valid = valid & (
            jnp.arange(T, dtype=jnp.asarray(lengths).dtype)[None, :] < lengths[:, None]
        )
    if mask is not None:
        check_bool("mask", mask)
        check_shape("mask", mask, (B, T), "(batch, time)")
        valid = valid & jnp.asarray(mask)
    return valid


def pool_last(ys: Array, lengths: Array | None = None) -> Array:
    """Output at the last real step: ``ys[b, lengths[b] - 1]`` (zeros for an empty sequence).

    For a reversed layer, the output that has seen the whole sequence is at step 0: use ``ys[:, 0]``.

    Args:
      ys: ``(B, T, F)`` per-step features.
      lengths: ``(B,)`` integers; default: every sequence has ``T`` steps.

    Returns:
      ``(B, F)``.

    Example:
        >>> ys = jnp.arange(12.0).reshape(2, 3, 2)                  # (batch, time, features)
        >>> recurrax.pool_last(ys, jnp.array([3, 1])).tolist()      # steps 2 and 0
        [[4.0, 5.0], [6.0, 7.0]]
    """
    check_rank("ys", ys, 3, "(batch, time, features)")
    T = ys.shape[1]
    if lengths is None:
        return ys[:, -1]
    last = jnp.clip(lengths - 1, 0, T - 1)
    picked = jnp.take_along_axis(ys, last[:, None, None], axis=1)[:, 0]
    return jnp.where((lengths > 0)[:, None], picked, jnp.zeros_like(picked))


def pool_mean(ys: Array, lengths: Array | None = None, mask: Array | None = None) -> Array:
    """Mean of ``ys`` over real steps (zeros for a sequence with none).

    Args:
      ys: ``(B, T, F)`` per-step features.
      lengths: ``(B,)`` integers; default: every sequence has ``T`` steps.
      mask: ``(B, T)`` booleans; False steps do not count.

    Returns:
      ``(B, F)``.

    Example:
        >>> ys = jnp.arange(12.0).reshape(2, 3, 2)
        >>> recurrax.pool_mean(ys, jnp.array([3, 2])).tolist()      # steps 0-2 and 0-1
        [[2.0, 3.0], [7.0, 8.0]]
    """
    check_rank("ys", ys, 3, "(batch, time, features)")
    valid = real_steps(ys, lengths, mask)
    weights = valid.astype(ys.dtype)[:, :, None]
    count = jnp.maximum(jnp.sum(weights, axis=1), jnp.asarray(1, ys.dtype))
    return jnp.sum(ys * weights, axis=1) / count


class AttentionPooling(NamedTuple):
    """Additive attention pooling (Bahdanau et al. 2015; Yang et al. 2016).

    .. math::

        s_t = v^\\top \\tanh(y_t W + b), \\quad \\alpha = \\mathrm{softmax}_{t \\in \\text{real}}(s),
        \\quad \\text{pooled} = \\sum_t \\alpha_t y_t

    Params: ``W (F, A)``, ``b (A,)``, ``v (A,)`` with ``A = attention_size``.
    ``init(key, input_size=F) -> params``; ``apply(params, ys, lengths=None, mask=None) -> (B, F)``.
    """

    init: Callable[[Key, int], Params]
    apply: Callable[..., Array]


def attention_pooling(attention_size: int) -> AttentionPooling:
    """Builds :class:`AttentionPooling` with hidden attention size ``A``.

    ``init(key, input_size)`` takes the features ``F`` of the ``ys`` it pools; ``apply(params,
    ys (B, T, F), lengths=None, mask=None)`` returns ``(B, F)``, weighting real steps only.

    Example:
        >>> pool = recurrax.attention_pooling(8)
        >>> params = pool.init(jax.random.key(0), 16)
        >>> ys = jnp.ones((2, 5, 16))
        >>> pool.apply(params, ys, lengths=jnp.array([5, 2])).shape
        (2, 16)
    """
    check_positive_int("attention_size", attention_size)

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k_w, k_v = jax.random.split(key)
        return {
            "W": jax.nn.initializers.glorot_uniform()(
                k_w, (input_size, attention_size), jnp.float32
            ),
            "b": jnp.zeros((attention_size,), jnp.float32),
            "v": jax.nn.initializers.normal(1.0 / attention_size**0.5)(
                k_v, (attention_size,), jnp.float32
            ),
        }

    def apply(params, ys, lengths=None, mask=None):
        check_rank("ys", ys, 3, "(batch, time, features)")
        valid = real_steps(ys, lengths, mask)
        projected = ys @ params["W"]
        scores = jnp.tanh(projected + jnp.broadcast_to(params["b"], projected.shape)) @ params["v"]
        scores = jnp.where(valid, scores, -jnp.inf)
        # A sequence with no real step would give softmax(all -inf) = NaN: give it zero weights.
        alpha = jnp.where(
            valid, jax.nn.softmax(jnp.where(valid.any(1, keepdims=True), scores, 0.0), axis=1), 0.0
        )
        return jnp.einsum("bt,btf->bf", alpha.astype(ys.dtype), ys)

    return AttentionPooling(init, apply)
