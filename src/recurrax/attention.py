r"""Attention of a decoder over an encoder's memory: additive (Bahdanau) and multiplicative (Luong).

A query :math:`q \in \mathbb{R}^Q` (the decoder's state) scores every memory vector
:math:`m_s \in \mathbb{R}^M` (the encoder's outputs, ``s = 0 .. S-1``); the weights are the softmax
of the scores over the real (unmasked) positions and the context is the weighted mean of the
memory:

.. math::

    w_s = \frac{\mathbb{1}[\text{mask}_s]\, e^{e_s}}
               {\sum_{s'} \mathbb{1}[\text{mask}_{s'}]\, e^{e_{s'}}}, \qquad
    c = \sum_s w_s\, m_s \in \mathbb{R}^M.

The kinds differ in the score :math:`e_s` (paper symbols; ``A`` = ``attention_size``):

* ``"bahdanau"`` (Bahdanau et al. 2015, additive): :math:`e_s = v_a^\top \tanh(W_a q + U_a m_s)`,
  params ``W_a (Q, A)``, ``U_a (M, A)``, ``v_a (A,)``;
* ``"dot"`` (Luong et al. 2015): :math:`e_s = q^\top m_s` (needs ``Q == M``), no params;
* ``"general"`` (Luong et al. 2015): :math:`e_s = q^\top W_a m_s`, params ``W_a (Q, M)``;
* ``"concat"`` (Luong et al. 2015): :math:`e_s = v_a^\top \tanh(W_a [q; m_s])`, params
  ``W_a (Q + M, A)``, ``v_a (A,)``.

Everything that depends on the memory alone is computed once per source by ``keys`` (the
projections :math:`U_a m_s`, :math:`W_a m_s`, or the memory half of :math:`W_a [q; m_s]`), so
that a decoder stepping ``T`` times projects the memory once, not ``T`` times.

Masked positions get weight exactly ``0.0`` (their scores are replaced by :math:`-\infty` before
the softmax), so padding never leaks into the context as long as the padded memory is finite
(:func:`recurrax.unroll` zeroes the outputs at padding). A row whose positions are all masked (an
empty source) has no distribution to normalise: its weights and its context are defined as zeros,
with finite gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Key, Params
from recurrax.validation import check_bool, check_choice, check_floating, check_positive_int

KINDS = ("bahdanau", "dot", "general", "concat")


class Attention(NamedTuple):
    """Attention of one kind (see :func:`attention`).

    Attributes:
      init: ``init(key) -> params`` (a dict named after the paper's symbols; ``{}`` for ``"dot"``).
      keys: ``keys(params, memory (B, S, M)) -> keys``, the per-source precomputation
        (``(B, S, A)`` or ``(B, S, Q)``; None for ``"dot"``, which scores the memory itself).
      apply: ``apply(params, query (B, Q), keys, memory (B, S, M), mask (B, S) bool) ->
        (context (B, M), weights (B, S))``.
      kind: the score function's name.
      query_size: ``Q``.
      memory_size: ``M``.
      attention_size: ``A`` for the additive kinds, else None.
    """

    init: Callable[[Key], Params]
    keys: Callable[[Params, Array], Any]
    apply: Callable[..., tuple[Array, Array]]
    kind: str
    query_size: int
    memory_size: int
    attention_size: int | None


def attention(
    kind: str, *, query_size: int, memory_size: int, attention_size: int | None = None
) -> Attention:
    r"""Builds attention of the given kind over a memory of ``memory_size`` features.

    See the module docstring for the scores. The softmax runs in float32 (float64 when the
    params or the memory are float64) with :math:`\max_s e_s` subtracted over the real positions.

    Args:
      kind: ``"bahdanau"``, ``"dot"``, ``"general"`` or ``"concat"``.
      query_size: ``Q``, features of the query.
      memory_size: ``M``, features of each memory vector (must equal ``Q`` for ``"dot"``).
      attention_size: ``A``, the hidden size of the additive scores (``"bahdanau"``,
        ``"concat"``); default ``Q``. Must be None for ``"dot"`` and ``"general"``.

    Returns:
      An :class:`Attention`. Its ``apply`` takes ``query (B, Q)``, the ``keys`` of the memory,
      ``memory (B, S, M)`` and ``mask (B, S)`` (True at real positions) and returns
      ``context (B, M)`` and ``weights (B, S)`` (each row sums to 1 over its real positions; 0 at
      masked ones; a row without real positions gives zeros).

    Example:
        >>> att = recurrax.attention.attention("bahdanau", query_size=4, memory_size=6)
        >>> params = att.init(jax.random.key(0))
        >>> memory = jnp.ones((2, 5, 6))
        >>> mask = jnp.array([[True] * 5, [True, True, True, False, False]])
        >>> keys = att.keys(params, memory)                 # once per source
        >>> context, weights = att.apply(params, jnp.ones((2, 4)), keys, memory, mask)
        >>> context.shape, weights.shape, weights[1].tolist()[3:]
        ((2, 6), (2, 5), [0.0, 0.0])
    """
    check_choice("kind", kind, KINDS)
    check_positive_int("query_size", query_size)
    check_positive_int("memory_size", memory_size)
    Q, M = query_size, memory_size
    if kind in ("dot", "general"):
        if attention_size is not None:
            raise ValueError(
                f"attention_size must be None for {kind!r} attention (it has no hidden layer); "
                f"got {attention_size!r}"
            )
        A = None
    else:
        A = Q if attention_size is None else attention_size
        check_positive_int("attention_size", A)
    if kind == "dot" and Q != M:
        raise ValueError(
            f"query_size must equal memory_size for 'dot' attention (e_s = q·m_s); got "
            f"query_size={Q} and memory_size={M} (use 'general' to score different sizes)"
        )
    glorot = jax.nn.initializers.glorot_uniform()

    def init(key: Key) -> Params:
        k1, k2, k3 = jax.random.split(key, 3)
        if kind == "bahdanau":
            return {
                "W_a": glorot(k1, (Q, A), jnp.float32),
                "U_a": glorot(k2, (M, A), jnp.float32),
                "v_a": glorot(k3, (A, 1), jnp.float32)[:, 0],
            }
        if kind == "general":
            return {"W_a": glorot(k1, (Q, M), jnp.float32)}
        if kind == "concat":
            return {
                "W_a": glorot(k1, (Q + M, A), jnp.float32),
                "v_a": glorot(k3, (A, 1), jnp.float32)[:, 0],
            }
        return {}

    def compute_dtype(params, memory):
        wide = any(
            jnp.result_type(leaf) == jnp.float64 for leaf in [memory, *jax.tree.leaves(params)]
        )
        return jnp.float64 if wide else jnp.float32

    def check_memory(memory):
        check_floating("memory", memory)
        if jnp.ndim(memory) != 3 or jnp.shape(memory)[-1] != M:
            raise ValueError(
                f"memory must have shape (batch, source time, {M}); got shape {jnp.shape(memory)}"
            )

    def keys(params: Params, memory: Array):
        check_memory(memory)
        dt = compute_dtype(params, memory)
        m = memory.astype(dt)
        if kind == "bahdanau":  # U_a m_s
            return m @ params["U_a"].astype(dt)
        if kind == "general":  # W_a m_s, so that e_s = q · (W_a m_s)
            return m @ params["W_a"].astype(dt).T
        if kind == "concat":  # the memory half of W_a [q; m_s]
            return m @ params["W_a"][Q:].astype(dt)
        return None

    def scores(params, query, keys, memory, dt):
        q = query.astype(dt)
        if kind == "dot":
            return jnp.einsum("bq,bsq->bs", q, memory.astype(dt))
        if kind == "general":
            return jnp.einsum("bq,bsq->bs", q, keys)
        W_q = params["W_a"] if kind == "bahdanau" else params["W_a"][:Q]
        hidden = jnp.tanh(keys + (q @ W_q.astype(dt))[:, None, :])
        return hidden @ params["v_a"].astype(dt)

    def apply(params: Params, query: Array, keys, memory: Array, mask: Array):
        check_memory(memory)
        B, S, _ = memory.shape
        check_floating("query", query)
        if jnp.shape(query) != (B, Q):
            raise ValueError(f"query must have shape {(B, Q)} (batch, Q); got {jnp.shape(query)}")
        check_bool("mask", mask)
        if jnp.shape(mask) != (B, S):
            raise ValueError(
                f"mask must have shape {(B, S)} (batch, source time); got {jnp.shape(mask)}"
            )
        dt = compute_dtype(params, memory)
        e = scores(params, query, keys, memory, dt)
        e = jnp.where(mask, e, -jnp.inf)
        # The max over real positions only; an all-masked row has max -inf, and any finite shift
        # does (its exponentials are all exp(-inf) = 0). The shift does not change the softmax,
        # so it carries no gradient.
        top = jnp.max(e, axis=-1, keepdims=True)
        top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top)))
        p = jnp.exp(e - top)  # exactly 0 where masked
        total = jnp.sum(p, axis=-1, keepdims=True)
        weights = p / jnp.where(total > 0, total, jnp.ones_like(total))
        context = jnp.einsum("bs,bsm->bm", weights, memory.astype(dt))
        return context, weights

    return Attention(init, keys, apply, kind, Q, M, A)
