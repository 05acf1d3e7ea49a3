"""Token embedding in front of a recurrent stack and a dense readout behind it.

Both follow the layers' convention: ``init(key, input_size) -> params`` and ``apply(params, x)``,
pure functions over a params dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Key, Params
from recurrax.validation import check_integer, check_positive_int


class Embedding(NamedTuple):
    """A lookup table from tokens to vectors (see :func:`embedding`).

    Attributes:
      init: ``init(key, input_size=vocab_size) -> {"E": (V, F)}``.
      apply: ``apply(params, tokens) -> vectors``: ``(...)`` integers in ``[0, V)`` give
        ``(..., F)`` float32 vectors.
      vocab_size: ``V``.
      features: ``F``.
    """

    init: Callable[..., Params]
    apply: Callable[[Params, Array], Array]
    vocab_size: int
    features: int


def embedding(vocab_size: int, features: int) -> Embedding:
    """A token embedding: ``apply(params, tokens) = E[tokens]``, ``E`` ``(V, F)`` drawn from
    N(0, 1).

    Its input size is the vocabulary size (the width of a one-hot token), so ``init(key,
    input_size)`` takes ``V`` like every layer takes its input width; it may be left out.
    Token values are not range-checked under ``jit`` (JAX clamps out-of-range indices).

    Args:
      vocab_size: ``V``, tokens are integers in ``[0, V)``.
      features: ``F``, the size of each vector.

    Example:
        >>> emb = recurrax.embedding(vocab_size=100, features=16)
        >>> params = emb.init(jax.random.key(0), 100)
        >>> tokens = jnp.array([[3, 1, 4], [1, 5, 9]])              # (batch, time)
        >>> emb.apply(params, tokens).shape                         # (batch, time, features)
        (2, 3, 16)
    """
    check_positive_int("vocab_size", vocab_size)
    check_positive_int("features", features)

    def init(key: Key, input_size: int = vocab_size) -> Params:
        if input_size != vocab_size:
            raise ValueError(
                f"input_size must equal vocab_size ({vocab_size}) for an embedding; "
                f"got {input_size!r}"
            )
        return {"E": jax.random.normal(key, (vocab_size, features), jnp.float32)}

    def apply(params: Params, tokens: Array) -> Array:
        check_integer("tokens", tokens)
        return jnp.take(params["E"], tokens, axis=0)

    return Embedding(init, apply, vocab_size, features)


class Dense(NamedTuple):
    """An affine map of the last axis (see :func:`dense`).

    Attributes:
      init: ``init(key, input_size) -> {"W": (F, K), "b": (K,)}``.
      apply: ``apply(params, x) -> y``: ``x`` ``(..., F)`` gives ``(..., K)``.
      features: ``K``.
    """

    init: Callable[[Key, int], Params]
    apply: Callable[[Params, Array], Array]
    features: int


def dense(features: int, *, use_bias: bool = True) -> Dense:
    """An affine readout: ``apply(params, x) = x W + b``, ``W`` ``(F, K)`` LeCun normal, ``b``
    ``(K,)`` zeros.

    ``x`` is cast to ``W``'s dtype; the output has ``W``'s dtype.

    Args:
      features: ``K``, the output features.
      use_bias: add ``b``.

    Example:
        >>> head = recurrax.dense(10)
        >>> params = head.init(jax.random.key(0), 32)
        >>> head.apply(params, jnp.ones((4, 32))).shape
        (4, 10)
    """
    check_positive_int("features", features)

    def init(key: Key, input_size: int) -> Params:
        check_positive_int("input_size", input_size)
        params = {"W": jax.nn.initializers.lecun_normal()(key, (input_size, features), jnp.float32)}
        if use_bias:
            params["b"] = jnp.zeros((features,), jnp.float32)
        return params

    def apply(params: Params, x: Array) -> Array:
        y = x.astype(params["W"].dtype) @ params["W"]
        return y + jnp.broadcast_to(params["b"], y.shape) if use_bias else y

    return Dense(init, apply, features)
