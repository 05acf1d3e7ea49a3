"""Autoregressive decoding: greedy, sampling (temperature, top-k, top-p) and beam search.

The decoder is given as a **step function**, so one code path decodes a language model and an
encoder–decoder alike::

    step_fn(cache, tokens) -> (cache, logits)

* ``tokens`` is ``(N,)`` int32: the previous token of each of ``N`` sequences (``sos_id`` at the
  first step).
* ``logits`` is ``(N, V)`` float, unnormalised; decoding takes ``log_softmax`` itself (in float32,
  or float64 when the logits are float64).
* ``cache`` is any pytree whose **every leaf has leading axis N**, and ``step_fn`` must return it
  with the same structure, shapes and dtypes: for an LSTM language model its carry, for an
  encoder–decoder the decoder carry plus the encoder outputs and source mask. Rows are
  independent: row ``i`` of the cache belongs to sequence ``i`` only.
* ``step_fn`` is pure and jit-traceable (closing over parameters is fine); each decoding call
  traces it on shapes (``jax.eval_shape``, to check what it returns) and into the body of a
  ``lax.while_loop``. Shapes are fixed, so a sequence that has ended keeps its row and is fed
  ``PAD`` (greedy, sampling) or a discarded beam's token; whatever those rows compute is ignored.

Greedy decoding and sampling run ``N = B`` rows, ``B`` being the leading axis of the given cache.
Beam search with ``K`` beams runs ``N = B * K``: it repeats each example's cache rows ``K`` times
(rows ``b*K .. b*K + K - 1`` are example ``b``'s beams) and, whenever the beams are reselected,
reorders every leaf by gathering rows along axis 0 (``leaf[parent_rows]``). A cache that keeps
anything not indexed by the row (a shared table, a step counter without a leading axis) cannot
be decoded; put shared arrays in ``step_fn``'s closure instead.

Conventions shared by all strategies:

* a hypothesis is the tokens generated after ``<sos>``; its **length** counts them, the ``<eos>``
  included (a hypothesis cut at ``max_length`` without ``<eos>`` has length ``max_length``);
  outputs are ``(..., max_length)`` int32 arrays padded with ``PAD`` after the end;
* its **log-probability** is ``sum_t log p(y_t | y_<t)`` over its tokens (``<eos>`` included) under
  the model's distribution ``log_softmax(logits)``: temperature, top-k/top-p filtering and the
  ``min_length`` mask change which tokens are chosen, never the reported scores;
* ``min_length``: ``<eos>`` is forbidden (its log-probability set to ``-inf``) at steps
  ``0 .. min_length - 1``, so a hypothesis that ends has at least ``min_length`` tokens before its
  ``<eos>``;
* every loop is a ``lax.while_loop`` with fixed shapes that stops as soon as nothing can change
  any more; the number of steps run is returned as ``steps``.

Everything is jit-compatible: wrap a call in ``jax.jit`` with the options static (they are Python
values that fix shapes and control flow) and the cache (and key) traced.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from recurrax.array_types import Array, Key
from recurrax.text.special_tokens import EOS, PAD, SOS
from recurrax.validation import check_choice, check_positive_int

StepFn = Callable[[Any, Array], tuple[Any, Array]]
"""``step_fn(cache, tokens (N,) int32) -> (cache, logits (N, V))``; see the module docstring."""

LENGTH_PENALTIES = ("none", "average", "gnmt")
DEFAULT_ALPHA = {"none": 0.0, "average": 1.0, "gnmt": 0.6}
"""``alpha`` when none is given: 1.0 makes "average" the mean log-probability per token; 0.6 is
the value Wu et al. (2016) report for "gnmt"."""

STRATEGIES = ("greedy", "sample", "beam")

TOP_P_TOLERANCE_EPS = 16
"""A cumulative probability within this many float epsilons of ``top_p`` counts as reaching it,
so that ``top_p`` equal to a cumulative sum keeps the same set in float32 and float64 despite
rounding in the softmax and the running sum."""


class DecodeOutput(NamedTuple):
    """What :func:`greedy` and :func:`sample` return, for ``B`` sequences.

    Attributes:
      tokens: ``(B, max_length)`` int32, the generated tokens, ``PAD`` after ``<eos>``.
      lengths: ``(B,)`` int32, tokens generated with the ``<eos>`` counted; ``max_length`` for a
        sequence that never emitted ``<eos>``.
      scores: ``(B,)`` float, the sum of the model's log-probabilities of the emitted tokens.
      steps: ``()`` int32, decoding steps run (fewer than ``max_length`` when every sequence had
        ended).
    """

    tokens: Array
    lengths: Array
    scores: Array
    steps: Array


class BeamOutput(NamedTuple):
    """What :func:`beam_search` returns: the ``n`` best hypotheses of each of ``B`` examples.

    Hypotheses are sorted best first by ``scores``. When an example has fewer than ``n`` distinct
    hypotheses of non-zero probability (a tiny vocabulary, a short ``max_length``), the slots left
    over have score ``-inf``, length 0 and ``PAD`` tokens.

    Attributes:
      tokens: ``(B, n, max_length)`` int32, ``PAD`` after ``<eos>``.
      lengths: ``(B, n)`` int32, tokens with the ``<eos>`` counted (``max_length`` for a hypothesis
        cut there).
      scores: ``(B, n)`` float, the length-normalised scores ``log_probs / lp(lengths)``.
      log_probs: ``(B, n)`` float, the raw sums of log-probabilities.
      steps: ``()`` int32, decoding steps run (fewer than ``max_length`` after early stopping).
    """

    tokens: Array
    lengths: Array
    scores: Array
    log_probs: Array
    steps: Array


# ----------------------------------------------------------------------------- validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    is_number = isinstance(value, int | float | np.integer | np.floating)
    return is_number and not isinstance(value, bool) and math.isfinite(value)


def _check_lengths(max_length: Any, min_length: Any) -> None:
    check_positive_int("max_length", max_length)
    if not _is_int(min_length) or not 0 <= min_length <= max_length:
        raise ValueError(
            f"min_length must be an integer in [0, max_length={max_length}]; got {min_length!r}"
        )


def _check_sampling_options(temperature: Any, top_k: Any, top_p: Any) -> None:
    """The checks that do not need the vocabulary size."""
    if not _is_real(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a float >= 0 (0 means argmax); got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer in [1, vocabulary size]; got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a float in (0, 1]; got {top_p!r}")


def _check_top_k_fits(top_k: int | None, vocab_size: int) -> None:
    if top_k is not None and top_k > vocab_size:
        raise ValueError(
            f"top_k must be None or an integer in [1, vocabulary size={vocab_size}]; got {top_k!r}"
        )


def _check_token_ids(sos_id: Any, eos_id: Any) -> None:
    for name, value in (("sos_id", sos_id), ("eos_id", eos_id)):
        if not _is_int(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer token id; got {value!r}")


def _check_token_ids_fit(sos_id: int, eos_id: int, vocab_size: int) -> None:
    for name, value in (("sos_id", sos_id), ("eos_id", eos_id)):
        if value >= vocab_size:
            raise ValueError(
                f"{name} must be a token id in [0, vocabulary size={vocab_size}); got {value!r}"
            )


def _check_beam_options(
    beam_size: Any, num_return: Any, length_penalty: Any, alpha: Any, early_stopping: Any
) -> None:
    check_positive_int("beam_size", beam_size)
    if num_return is not None and (not _is_int(num_return) or not 1 <= num_return <= beam_size):
        raise ValueError(
            f"num_return must be None or an integer in [1, beam_size={beam_size}]; "
            f"got {num_return!r}"
        )
    check_choice("length_penalty", length_penalty, LENGTH_PENALTIES)
    if alpha is not None and (not _is_real(alpha) or alpha < 0):
        raise ValueError(f"alpha must be None or a float >= 0; got {alpha!r}")
    if not isinstance(early_stopping, bool):
        raise ValueError(f"early_stopping must be True or False; got {early_stopping!r}")


def _check_key(key: Any) -> None:
    is_typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    is_raw = (
        isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    )  # a legacy jax.random.PRNGKey
    if not (is_typed and key.shape == ()) and not is_raw:
        raise ValueError(f"key must be one jax.random.key; got {key!r}")


def _as_cache(cache: Any) -> tuple[Any, int]:
    """The cache with array leaves, and its batch size (the leaves' common leading axis)."""
    cache = jax.tree.map(jnp.asarray, cache)
    leaves = jax.tree.leaves(cache)
    if not leaves:
        raise ValueError(
            "cache must have at least one array leaf with a leading batch axis; got a pytree "
            "without leaves"
        )
    shapes = [leaf.shape for leaf in leaves]
    if any(len(shape) == 0 for shape in shapes) or len({shape[0] for shape in shapes}) != 1:
        raise ValueError(
            "cache leaves must all have the same leading (batch) axis; got shapes "
            f"{[tuple(shape) for shape in shapes]}"
        )
    return cache, shapes[0][0]


def _check_step_fn(step_fn: Any, cache: Any, rows: int) -> tuple[int, Any]:
    """Traces ``step_fn`` on shapes only (no computation): returns ``(V, score dtype)``.

    ``cache`` has ``rows`` rows on every leaf (the tiled cache for beam search).
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable as step_fn(cache, tokens); got {step_fn!r}")
    tokens = jax.ShapeDtypeStruct((rows,), jnp.int32)
    out = jax.eval_shape(step_fn, cache, tokens)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ValueError(f"step_fn must return a pair (cache, logits); got {out!r}")
    new_cache, logits = out
    expected = jax.tree.map(lambda x: (x.shape, x.dtype), cache)
    actual = jax.tree.map(lambda x: (x.shape, x.dtype), new_cache)
    if jax.tree.structure(cache) != jax.tree.structure(new_cache) or expected != actual:
        raise ValueError(
            "step_fn must return a cache with the structure, shapes and dtypes of the cache it "
            f"was given; given {expected}, returned {actual}"
        )
    if len(logits.shape) != 2 or logits.shape[0] != rows:
        raise ValueError(
            f"step_fn must return logits of shape (N={rows}, vocabulary size); got shape "
            f"{tuple(logits.shape)}"
        )
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"step_fn must return floating-point logits; got dtype {logits.dtype}")
    # Reductions (log_softmax, the running sums) in at least float32.
    dtype = logits.dtype if jnp.finfo(logits.dtype).bits >= 32 else jnp.dtype(jnp.float32)
    return logits.shape[1], dtype


# ----------------------------------------------------------------------------- shared pieces


def _log_probs(logits: Array, dtype: Any) -> Array:
    return jax.nn.log_softmax(logits.astype(dtype), axis=-1)


def _forbid_eos(log_probs: Array, step: Array, min_length: int, eos_id: int) -> Array:
    """Sets ``<eos>``'s log-probability to ``-inf`` while ``step < min_length``."""
    if min_length == 0:
        return log_probs
    token = lax.broadcasted_iota(jnp.int32, log_probs.shape, log_probs.ndim - 1)
    return jnp.where((token == eos_id) & (step < min_length), -jnp.inf, log_probs)


class _State(NamedTuple):
    step: Array  # () int32, tokens generated so far
    cache: Any
    previous: Array  # (B,) int32, the token fed at this step
    tokens: Array  # (B, max_length) int32
    finished: Array  # (B,) bool, emitted <eos>
    lengths: Array  # (B,) int32
    scores: Array  # (B,) float


def _one_token_at_a_time(
    step_fn: StepFn,
    cache: Any,
    choose: Callable[[Array, Array], Array],
    *,
    max_length: int,
    sos_id: int,
    eos_id: int,
    min_length: int,
) -> DecodeOutput:
    """The loop of greedy decoding and sampling: ``choose(step, log_probs) -> (B,)`` tokens."""
    cache, batch = _as_cache(cache)
    vocab_size, dtype = _check_step_fn(step_fn, cache, batch)
    _check_token_ids_fit(sos_id, eos_id, vocab_size)

    def running(state: _State) -> Array:
        return (state.step < max_length) & ~jnp.all(state.finished)

    def step(state: _State) -> _State:
        cache, logits = step_fn(state.cache, state.previous)
        log_probs = _log_probs(logits, dtype)
        token = choose(state.step, _forbid_eos(log_probs, state.step, min_length, eos_id))
        token = token.astype(jnp.int32)
        token_log_prob = jnp.take_along_axis(log_probs, token[:, None], axis=1)[:, 0]
        live = ~state.finished
        # A finished sequence keeps running in the batch (fixed shapes) but emits PAD and adds
        # nothing to its score or length.
        token = jnp.where(live, token, PAD)
        return _State(
            step=state.step + 1,
            cache=cache,
            previous=token,
            tokens=lax.dynamic_update_index_in_dim(state.tokens, token, state.step, axis=1),
            finished=state.finished | (live & (token == eos_id)),
            lengths=state.lengths + live.astype(jnp.int32),
            scores=state.scores + jnp.where(live, token_log_prob, jnp.zeros((), dtype)),
        )

    initial = _State(
        step=jnp.zeros((), jnp.int32),
        cache=cache,
        previous=jnp.full((batch,), sos_id, jnp.int32),
        tokens=jnp.full((batch, max_length), PAD, jnp.int32),
        finished=jnp.zeros((batch,), bool),
        lengths=jnp.zeros((batch,), jnp.int32),
        scores=jnp.zeros((batch,), dtype),
    )
    final = lax.while_loop(running, step, initial)
    return DecodeOutput(final.tokens, final.lengths, final.scores, final.step)


# ----------------------------------------------------------------------------- greedy


def greedy(
    step_fn: StepFn,
    cache: Any,
    *,
    max_length: int,
    sos_id: int = SOS,
    eos_id: int = EOS,
    min_length: int = 0,
) -> DecodeOutput:
    """Greedy decoding: at each step every sequence emits its most probable token,
    ``y_t = argmax_v log p(v | y_<t)`` (ties go to the lower token id).

    The batch size ``B`` is the leading axis of the cache's leaves. The loop stops when every
    sequence has emitted ``<eos>`` or after ``max_length`` steps.

    Args:
      step_fn: ``step_fn(cache, tokens (B,)) -> (cache, logits (B, V))`` (module docstring).
      cache: a pytree whose every leaf has leading axis ``B``.
      max_length: at most this many tokens are generated (the ``<eos>`` included).
      sos_id: the token fed at the first step.
      eos_id: the token that ends a sequence.
      min_length: ``<eos>`` is forbidden before step ``min_length``.

    Returns:
      A :class:`DecodeOutput`: tokens ``(B, max_length)`` (``PAD`` after ``<eos>``), lengths
      ``(B,)``, scores ``(B,)`` (sums of log-probabilities), steps ``()``.

    Example:
        >>> table = jnp.array([[0., 0., 0., 0., 0.],      # next-token logits after token 0
        ...                    [0., 0., 0., 0., 0.],      # ... after 1
        ...                    [0., 0., 0., 1., 3.],      # ... after <sos>: 4 is likeliest
        ...                    [0., 0., 0., 0., 0.],      # ... after <eos>
        ...                    [0., 0., 0., 3., 1.]])     # ... after 4: <eos> is likeliest
        >>> def step_fn(cache, tokens):                   # a bigram model; the cache is a dummy
        ...     return cache, table[tokens]
        >>> out = recurrax.decoding.greedy(step_fn, jnp.zeros((2, 1)), max_length=4)
        >>> out.tokens
        Array([[4, 3, 0, 0],
               [4, 3, 0, 0]], dtype=int32)
        >>> out.lengths, out.steps
        (Array([2, 2], dtype=int32), Array(2, dtype=int32))
        >>> recurrax.decoding.greedy(step_fn, jnp.zeros((1, 1)), max_length=4,
        ...                          min_length=2).tokens
        Array([[4, 4, 3, 0]], dtype=int32)
    """
    _check_lengths(max_length, min_length)
    _check_token_ids(sos_id, eos_id)

    def choose(step: Array, log_probs: Array) -> Array:
        return jnp.argmax(log_probs, axis=-1)

    return _one_token_at_a_time(
        step_fn,
        cache,
        choose,
        max_length=max_length,
        sos_id=sos_id,
        eos_id=eos_id,
        min_length=min_length,
    )


# ----------------------------------------------------------------------------- sampling


def filter_logits(
    logits: Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Array:
    """The logits sampling draws from: scaled by a temperature, then restricted to the top-k
    tokens, then to the top-p nucleus; tokens outside the kept set get ``-inf``.

    Applied in this order, along the last axis:

    1. **temperature** ``τ``: ``z = logits / τ``, so ``softmax(z) ∝ p^(1/τ)``. ``τ = 0`` is the
       limit ``τ → 0``: only the argmax is kept (ties go to the lower token id, as in
       :func:`greedy`) with its logit unchanged, and top-k/top-p have nothing left to remove.
    2. **top-k**: keep the ``k`` largest of ``z`` (exactly ``k``; among equal logits the lower
       token ids first).
    3. **top-p** (nucleus): with ``q = softmax(z)`` over the tokens top-k kept, sorted by
       decreasing ``q``, keep the smallest prefix whose cumulative probability reaches ``p``:
       token ``i`` is kept when the mass before it, ``sum_{j < i} q_j``, is below ``p`` (so the
       token that crosses ``p`` is kept, and nothing after a prefix that sums to exactly ``p``).
       Sums within ``16 eps`` of ``p`` count as reaching it (float rounding). The most probable
       token is always kept; ``p = 1`` keeps everything.

    Args:
      logits: ``(..., V)`` floats (unnormalised, or log-probabilities: the result is the same
        distribution).
      temperature: ``τ >= 0``; 1 leaves the logits as they are.
      top_k: ``None`` (no limit) or ``k`` in ``[1, V]``.
      top_p: ``None`` (no limit) or ``p`` in ``(0, 1]``.

    Returns:
      ``(..., V)``: ``logits / τ`` (the raw logit for ``τ = 0``) where kept, ``-inf`` elsewhere.

    Example:
        >>> logits = jnp.log(jnp.array([0.1, 0.5, 0.15, 0.25]))
        >>> kept = recurrax.decoding.filter_logits(logits, top_p=0.7)   # 0.5 + 0.25 reaches 0.7
        >>> jnp.isfinite(kept)
        Array([False,  True, False,  True], dtype=bool)
        >>> jnp.isfinite(recurrax.decoding.filter_logits(logits, top_k=3))
        Array([False,  True,  True,  True], dtype=bool)
    """
    _check_sampling_options(temperature, top_k, top_p)
    logits = jnp.asarray(logits)
    if logits.ndim == 0 or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(
            f"logits must be a floating-point array of shape (..., V); got shape {logits.shape} "
            f"and dtype {logits.dtype}"
        )
    vocab_size = logits.shape[-1]
    _check_top_k_fits(top_k, vocab_size)
    last = logits.ndim - 1
    token = lax.broadcasted_iota(jnp.int32, logits.shape, last)
    if temperature == 0:
        best = jnp.argmax(logits, axis=-1, keepdims=True).astype(jnp.int32)
        return jnp.where(token == best, logits, -jnp.inf)
    if temperature != 1:
        logits = logits / jnp.asarray(temperature, logits.dtype)
    wants_top_k = top_k is not None and top_k < vocab_size
    wants_top_p = top_p is not None and top_p < 1
    if not (wants_top_k or wants_top_p):
        return logits
    # order[..., r] is the token of rank r (best first; a stable sort breaks ties by lower id),
    # rank[..., v] the rank of token v.
    order = jnp.argsort(-logits, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True)
    if wants_top_k:
        logits = jnp.where(rank < top_k, logits, -jnp.inf)
    if wants_top_p:
        probs = jax.nn.softmax(logits, axis=-1)
        sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
        cumulative = jnp.cumsum(sorted_probs, axis=-1)
        mass_before = jnp.concatenate(
            [jnp.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], axis=-1
        )
        tolerance = TOP_P_TOLERANCE_EPS * float(jnp.finfo(logits.dtype).eps)
        # In sorted order, position 0 (the most probable token) always stays.
        kept_sorted = (mass_before < top_p - tolerance) | (token == 0)
        logits = jnp.where(jnp.take_along_axis(kept_sorted, rank, axis=-1), logits, -jnp.inf)
    return logits


def sample(
    step_fn: StepFn,
    cache: Any,
    key: Key,
    *,
    max_length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    sos_id: int = SOS,
    eos_id: int = EOS,
    min_length: int = 0,
) -> DecodeOutput:
    """Ancestral sampling: at step ``t`` each sequence draws ``y_t`` from
    ``softmax(filter_logits(log p(· | y_<t)))`` (temperature, then top-k, then top-p; see
    :func:`filter_logits`), with the key ``jax.random.fold_in(key, t)``.

    The same key gives the same tokens. ``temperature=0`` takes the argmax instead of drawing,
    which is :func:`greedy` exactly, as is ``top_k=1``. The scores are the model's
    log-probabilities of the drawn tokens (not those of the filtered distribution), so they
    compare with other strategies'. The batch size ``B`` is the leading axis of the cache.

    Args:
      step_fn: ``step_fn(cache, tokens (B,)) -> (cache, logits (B, V))`` (module docstring).
      cache: a pytree whose every leaf has leading axis ``B``.
      key: one ``jax.random.key``.
      max_length: at most this many tokens are generated (the ``<eos>`` included).
      temperature: ``>= 0``; 0 means argmax.
      top_k: ``None`` or an integer in ``[1, V]``.
      top_p: ``None`` or a float in ``(0, 1]``.
      sos_id: the token fed at the first step.
      eos_id: the token that ends a sequence.
      min_length: ``<eos>`` is forbidden before step ``min_length`` (masked before filtering).

    Returns:
      A :class:`DecodeOutput` (see :func:`greedy`).

    Example:
        >>> table = jnp.zeros((5, 5)).at[:, 3].set(-1.0)  # uniform-ish bigram, <eos> rarer
        >>> def step_fn(cache, tokens):
        ...     return cache, table[tokens]
        >>> cache = jnp.zeros((3, 1))
        >>> a = recurrax.decoding.sample(step_fn, cache, jax.random.key(0), max_length=6)
        >>> b = recurrax.decoding.sample(step_fn, cache, jax.random.key(0), max_length=6)
        >>> bool(jnp.all(a.tokens == b.tokens)), a.tokens.shape
        (True, (3, 6))
        >>> greedy = recurrax.decoding.greedy(step_fn, cache, max_length=6)
        >>> cold = recurrax.decoding.sample(step_fn, cache, jax.random.key(1), max_length=6,
        ...                                 temperature=0.0)
        >>> bool(jnp.all(cold.tokens == greedy.tokens))
        True
    """
    _check_lengths(max_length, min_length)
    _check_sampling_options(temperature, top_k, top_p)
    _check_token_ids(sos_id, eos_id)
    _check_key(key)
    cache, batch = _as_cache(cache)
    vocab_size, _ = _check_step_fn(step_fn, cache, batch)
    _check_top_k_fits(top_k, vocab_size)

    def choose(step: Array, log_probs: Array) -> Array:
        if temperature == 0:
            return jnp.argmax(log_probs, axis=-1)
        filtered = filter_logits(log_probs, temperature=temperature, top_k=top_k, top_p=top_p)
        return jax.random.categorical(jax.random.fold_in(key, step), filtered, axis=-1)

    return _one_token_at_a_time(
        step_fn,
        cache,
        choose,
        max_length=max_length,
        sos_id=sos_id,
        eos_id=eos_id,
        min_length=min_length,
    )


# ----------------------------------------------------------------------------- beam search


def length_penalty_divisor(lengths: Array, length_penalty: str, alpha: float) -> Array:
    """The divisor ``lp(len)`` of a hypothesis' log-probability in beam search.

    * ``"none"``: ``lp = 1`` (raw log-probability sums);
    * ``"average"``: ``lp = len^α`` (``α = 1``: the mean log-probability per token);
    * ``"gnmt"``: ``lp = ((5 + len) / 6)^α`` (Wu et al. 2016, "Google's Neural Machine
      Translation System", eq. 14).

    ``len`` counts the generated tokens with the ``<eos>`` (``max_length`` for a hypothesis cut
    there), never the ``<sos>``. For ``len >= 1`` and ``α >= 0`` both are ``>= 1`` and
    non-decreasing in ``len``.

    Args:
      lengths: an array of positive lengths (any float dtype; cast by the caller).
      length_penalty: ``"none"``, ``"average"`` or ``"gnmt"``.
      alpha: ``α >= 0``.

    Returns:
      ``lp(lengths)``, same shape and dtype.

    Example:
        >>> lengths = jnp.array([1.0, 4.0])
        >>> recurrax.decoding.length_penalty_divisor(lengths, "average", 1.0)
        Array([1., 4.], dtype=float32)
        >>> recurrax.decoding.length_penalty_divisor(lengths, "gnmt", 1.0)
        Array([1. , 1.5], dtype=float32)
    """
    check_choice("length_penalty", length_penalty, LENGTH_PENALTIES)
    if not _is_real(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a float >= 0; got {alpha!r}")
    if length_penalty == "none" or alpha == 0:
        return jnp.ones_like(lengths)
    if length_penalty == "average":
        return lengths**alpha
    return ((5 + lengths) / 6) ** alpha


class _Beams(NamedTuple):
    step: Array  # () int32, tokens generated so far
    cache: Any  # every leaf (B*K, ...)
    previous: Array  # (B*K,) int32, the last token of each live beam
    live_tokens: Array  # (B, K, T)
    live_log_probs: Array  # (B, K); -inf for an empty slot
    finished_tokens: Array  # (B, K, T)
    finished_log_probs: Array  # (B, K)
    finished_scores: Array  # (B, K), normalised, sorted best first; -inf for an empty slot
    finished_lengths: Array  # (B, K)
    done: Array  # (B,) bool, no live beam can enter the finished set any more


def beam_search(
    step_fn: StepFn,
    cache: Any,
    *,
    beam_size: int,
    max_length: int,
    length_penalty: str = "none",
    alpha: float | None = None,
    min_length: int = 0,
    num_return: int | None = None,
    sos_id: int = SOS,
    eos_id: int = EOS,
    early_stopping: bool = True,
) -> BeamOutput:
    """Beam search with ``K = beam_size`` beams for each of ``B`` examples, returning the ``n``
    best hypotheses by length-normalised score ``log_prob / lp(len)``.

    **Cache.** The given cache has leading axis ``B``; it is tiled to ``N = B*K`` rows (each
    example's rows repeated ``K`` times, beam ``k`` of example ``b`` in row ``b*K + k``) and, after
    every step, every leaf is reordered by gathering the surviving beams' parent rows on axis 0.

    **Step.** Each of the ``K`` live beams extends by each of the ``V`` tokens; with ``s`` the
    beam's log-probability the candidate scores ``s + log p(v | beam)``, and the ``2K`` best
    candidates of the example (over ``K × V``) are taken, best first. The beam proper is the best
    ``K`` of them: those ending in ``<eos>`` leave it for the **finished set**, with normalised
    score ``(s + log p(<eos>)) / lp(t + 1)``, and the best candidates not ending in ``<eos>``
    (from all ``2K``; at most ``K`` of them end in ``<eos>``, one per beam) keep ``K`` beams
    live. The finished set holds the ``K`` best normalised scores over the old set and the new
    arrivals. With ``K = 1`` this is :func:`greedy` exactly (``length_penalty="none"``). At the
    last step (``max_length``) the best ``K`` candidates are finished whether or not they end in
    ``<eos>``: a hypothesis cut there counts, with length ``max_length``, so the output always
    holds ``n`` hypotheses (unless fewer than ``n`` exist at all).

    **Length penalties** (:func:`length_penalty_divisor`, ``len`` = generated tokens with the
    ``<eos>``): ``"none"``: ``lp = 1``; ``"average"``: ``len^α``; ``"gnmt"``:
    ``((5 + len) / 6)^α``. ``alpha=None`` takes 1.0 for "average" (the per-token mean) and 0.6
    for "gnmt" (Wu et al. 2016).

    **Early stopping.** Extending a live beam of log-probability ``s <= 0`` can only lower it:
    any hypothesis it leads to has ``s' <= s`` and a length ``len <= max_length``, and since
    ``lp`` is positive and non-decreasing in ``len`` for ``α >= 0``,
    ``s' / lp(len) <= s / lp(len) <= s / lp(max_length)``. So ``s / lp(max_length)`` bounds the
    best score a live beam can still reach (``s`` itself for "none" or ``α = 0``). An example is
    done once it has ``K`` finished hypotheses and no live beam's bound beats the worst of them;
    the loop stops when every example is done (``early_stopping=False`` runs all ``max_length``
    steps and returns the same hypotheses).

    Args:
      step_fn: ``step_fn(cache, tokens (B*K,)) -> (cache, logits (B*K, V))`` (module docstring).
      cache: a pytree whose every leaf has leading axis ``B`` (rows gathered on axis 0).
      beam_size: ``K >= 1``.
      max_length: at most this many tokens per hypothesis (the ``<eos>`` included).
      length_penalty: ``"none"``, ``"average"`` or ``"gnmt"``.
      alpha: ``α >= 0``, or ``None`` for the penalty's default.
      min_length: ``<eos>`` is forbidden before step ``min_length``.
      num_return: ``n`` in ``[1, K]`` hypotheses returned per example (default ``K``).
      sos_id: the token fed at the first step.
      eos_id: the token that ends a hypothesis.
      early_stopping: stop as soon as the result cannot change (default) or run to
        ``max_length``.

    Returns:
      A :class:`BeamOutput`: tokens ``(B, n, max_length)``, lengths, scores (normalised, sorted
      best first) and log_probs ``(B, n)``, steps ``()``.

    Example:
        >>> table = jnp.log(jnp.array([[.05, .05, .05, .05, .80],   # next-token probabilities
        ...                            [.05, .05, .05, .05, .80],
        ...                            [.05, .05, .05, .45, .40],   # after <sos>
        ...                            [.05, .05, .05, .05, .80],
        ...                            [.05, .05, .05, .80, .05]])) # after 4
        >>> def step_fn(cache, tokens):
        ...     return cache, table[tokens]
        >>> out = recurrax.decoding.beam_search(step_fn, jnp.zeros((1, 1)), beam_size=2,
        ...                                     max_length=5, length_penalty="average")
        >>> out.tokens[0]                    # log(.40 * .80) / 2 > log(.45) / 1: (4, <eos>) wins
        Array([[4, 3, 0, 0, 0],
               [3, 0, 0, 0, 0]], dtype=int32)
        >>> out.lengths[0], jnp.exp(out.log_probs[0]).round(2)
        (Array([2, 1], dtype=int32), Array([0.32, 0.45], dtype=float32))
    """
    _check_lengths(max_length, min_length)
    _check_token_ids(sos_id, eos_id)
    _check_beam_options(beam_size, num_return, length_penalty, alpha, early_stopping)
    alpha = DEFAULT_ALPHA[length_penalty] if alpha is None else float(alpha)
    K = beam_size
    n = K if num_return is None else num_return
    cache, B = _as_cache(cache)
    tiled_shapes = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((B * K, *x.shape[1:]), x.dtype), cache
    )
    V, dtype = _check_step_fn(step_fn, tiled_shapes, B * K)
    _check_token_ids_fit(sos_id, eos_id, V)
    cache = jax.tree.map(lambda x: jnp.repeat(x, K, axis=0), cache)
    T = max_length

    def divisor(lengths: Array) -> Array:
        return length_penalty_divisor(lengths.astype(dtype), length_penalty, alpha)

    best_possible_divisor = divisor(jnp.asarray(max_length))
    candidate_rank = lax.broadcasted_iota(jnp.int32, (B, 2 * K), 1)
    first_row = lax.broadcasted_iota(jnp.int32, (B, K), 0) * K

    def running(beams: _Beams) -> Array:
        unfinished = beams.step < max_length
        return unfinished & ~jnp.all(beams.done) if early_stopping else unfinished

    def step(beams: _Beams) -> _Beams:
        cache, logits = step_fn(beams.cache, beams.previous)
        log_probs = _forbid_eos(_log_probs(logits, dtype), beams.step, min_length, eos_id)
        extended = beams.live_log_probs[:, :, None] + log_probs.reshape(B, K, V)
        # 2K candidates: at most K of them (one per beam) end in <eos>, so K remain to go on.
        candidate_log_probs, flat_index = lax.top_k(extended.reshape(B, K * V), 2 * K)
        parent = flat_index // V
        token = (flat_index % V).astype(jnp.int32)
        candidates = jnp.take_along_axis(beams.live_tokens, parent[:, :, None], axis=1)
        candidates = lax.dynamic_update_index_in_dim(candidates, token, beams.step, axis=2)
        length = beams.step + 1
        ends = token == eos_id

        # The finished set: the best K of the old set and the in-beam candidates that end here.
        finishing = (candidate_rank < K) & (ends | (length == max_length))
        new_log_probs = jnp.where(finishing, candidate_log_probs, -jnp.inf)
        new_scores = new_log_probs / divisor(length)
        # The old set comes first, so on equal scores lax.top_k (lower index first) keeps it.
        pooled_scores = jnp.concatenate([beams.finished_scores, new_scores], axis=1)
        finished_scores, keep = lax.top_k(pooled_scores, K)

        def pick(old: Array, new: Array) -> Array:
            pooled = jnp.concatenate([old, new], axis=1)
            index = keep.reshape(keep.shape + (1,) * (pooled.ndim - 2))
            return jnp.take_along_axis(pooled, index, axis=1)

        finished_tokens = pick(beams.finished_tokens, candidates)
        finished_log_probs = pick(beams.finished_log_probs, new_log_probs)
        finished_lengths = pick(
            beams.finished_lengths, jnp.broadcast_to(length, (B, 2 * K)).astype(jnp.int32)
        )

        # The live beams: the best K candidates that do not end in <eos>.
        live_log_probs, survivor = lax.top_k(jnp.where(ends, -jnp.inf, candidate_log_probs), K)
        live_tokens = jnp.take_along_axis(candidates, survivor[:, :, None], axis=1)
        previous = jnp.take_along_axis(token, survivor, axis=1).reshape(B * K)
        parent_rows = (first_row + jnp.take_along_axis(parent, survivor, axis=1)).reshape(B * K)
        cache = jax.tree.map(lambda leaf: jnp.take(leaf, parent_rows, axis=0), cache)

        # Early stopping: a live beam reaches at most s / lp(max_length) (see the docstring).
        best_reachable = jnp.max(live_log_probs, axis=1) / best_possible_divisor
        done = beams.done | (finished_scores[:, K - 1] >= best_reachable)
        return _Beams(
            step=length,
            cache=cache,
            previous=previous,
            live_tokens=live_tokens,
            live_log_probs=live_log_probs,
            finished_tokens=finished_tokens,
            finished_log_probs=finished_log_probs,
            finished_scores=finished_scores,
            finished_lengths=finished_lengths,
            done=done,
        )

    # Only beam 0 starts live: K copies of the empty hypothesis would fill the beam with
    # duplicates.
    first_beam = lax.broadcasted_iota(jnp.int32, (B, K), 1) == 0
    initial = _Beams(
        step=jnp.zeros((), jnp.int32),
        cache=cache,
        previous=jnp.full((B * K,), sos_id, jnp.int32),
        live_tokens=jnp.full((B, K, T), PAD, jnp.int32),
        live_log_probs=jnp.where(first_beam, jnp.zeros((), dtype), -jnp.inf).astype(dtype),
        finished_tokens=jnp.full((B, K, T), PAD, jnp.int32),
        finished_log_probs=jnp.full((B, K), -jnp.inf, dtype),
        finished_scores=jnp.full((B, K), -jnp.inf, dtype),
        finished_lengths=jnp.zeros((B, K), jnp.int32),
        done=jnp.zeros((B,), bool),
    )
    final = lax.while_loop(running, step, initial)
    scores = final.finished_scores[:, :n]
    exists = scores > -jnp.inf
    return BeamOutput(
        tokens=jnp.where(exists[:, :, None], final.finished_tokens[:, :n], PAD),
        lengths=jnp.where(exists, final.finished_lengths[:, :n], 0),
        scores=scores,
        log_probs=final.finished_log_probs[:, :n],
        steps=final.step,
    )


# ----------------------------------------------------------------------------- dispatcher


def _keyword_options(function: Callable[..., Any]) -> tuple[str, ...]:
    parameters = inspect.signature(function).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


DECODERS: dict[str, Callable[..., Any]] = {"greedy": greedy, "sample": sample, "beam": beam_search}


def decode(
    step_fn: StepFn,
    cache: Any,
    *,
    strategy: str = "greedy",
    key: Key | None = None,
    **options: Any,
) -> DecodeOutput | BeamOutput:
    """Decodes with the strategy named by a string: ``"greedy"`` (:func:`greedy`), ``"sample"``
    (:func:`sample`) or ``"beam"`` (:func:`beam_search`), for configs that choose one.

    ``options`` are the chosen function's keyword arguments; any other name is an error that
    lists the valid ones. ``key`` is required by ``"sample"`` and ignored by the deterministic
    strategies, so one call site can pass it whatever the strategy.

    Args:
      step_fn: ``step_fn(cache, tokens) -> (cache, logits)`` (module docstring).
      cache: a pytree whose every leaf has leading axis ``B``.
      strategy: ``"greedy"``, ``"sample"`` or ``"beam"``.
      key: a ``jax.random.key`` for ``"sample"``.
      **options: e.g. ``max_length``, ``top_p``, ``beam_size``.

    Returns:
      A :class:`DecodeOutput` (greedy, sample) or :class:`BeamOutput` (beam).

    Example:
        >>> table = jnp.zeros((5, 5)).at[2, 4].set(2.0).at[4, 3].set(2.0)
        >>> def step_fn(cache, tokens):
        ...     return cache, table[tokens]
        >>> out = recurrax.decoding.decode(step_fn, jnp.zeros((1, 1)), strategy="beam",
        ...                                beam_size=3, num_return=1, max_length=3)
        >>> out.tokens
        Array([[[4, 3, 0]]], dtype=int32)
        >>> recurrax.decoding.decode(step_fn, jnp.zeros((1, 1)), max_length=3, top_q=0.9)
        Traceback (most recent call last):
        ValueError: decode(strategy='greedy') got unknown option top_q; valid: max_length, sos_id, eos_id, min_length
    """
    check_choice("strategy", strategy, STRATEGIES)
    function = DECODERS[strategy]
    valid = _keyword_options(function)
    unknown = [name for name in options if name not in valid]
    if unknown:
        raise ValueError(
            f"decode(strategy={strategy!r}) got unknown option {', '.join(unknown)}; "
            f"valid: {', '.join(valid)}"
        )
    if strategy == "sample":
        if key is None:
            raise ValueError("key must be a jax.random.key for strategy='sample'; got None")
        return sample(step_fn, cache, key, **options)
    return function(step_fn, cache, **options)
