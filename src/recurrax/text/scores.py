"""Token-level scores of a sequence model: accuracy, exact match, perplexity and bits per token.

Every corpus figure here is a ratio of sums over the corpus, never a mean of per-batch ratios:

    perplexity     = exp(Σ NLL / Σ real tokens)
    bits per token = Σ NLL / Σ real tokens / ln 2        (bits per character for characters)
    token accuracy = Σ correct real tokens / Σ real tokens

Batches hold different numbers of real (unpadded) tokens, so averaging per-batch perplexities
weights a token of a short batch more than a token of a long one and gives a different (wrong)
number; so does averaging per-batch accuracies. Accumulate the sums (:func:`nll_sums`,
:func:`token_accuracy_counts`, :class:`PerplexitySums`) and divide once at the end.

Shapes: ``B`` batch, ``T`` time, ``V`` vocabulary (see :mod:`recurrax.array_types`). Padding is
given by a boolean ``mask`` ``(B, T)``, True at real positions; padded positions never count,
whatever is predicted there. The array functions are jit-compatible; reductions are in float32
(sums of tokens in int32).

Example::

    >>> logits = jnp.zeros((2, 3, 5))                     # a uniform model over 5 classes
    >>> targets = jnp.array([[4, 2, 0], [1, 0, 0]])
    >>> mask = jnp.array([[True, True, False], [True, False, False]])
    >>> total_nll, total_tokens = nll_sums(logits, targets, mask)
    >>> int(total_tokens), round(float(perplexity(total_nll, total_tokens)), 4)
    (3, 5.0)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recurrax.array_types import Array
from recurrax.validation import (
    check_bool,
    check_floating,
    check_integer,
    check_range,
    check_rank,
    check_shape,
    is_traced,
)


def nll_sums(logits: Array, targets: Array, mask: Array) -> tuple[Array, Array]:
    """The summed negative log-likelihood of the real targets and how many there are.

    ``Σ_{b,t: mask[b,t]} -log softmax(logits[b, t])[targets[b, t]]`` in nats, computed in float32
    (``log_softmax`` of the float32 logits), and ``Σ mask``. Sum these over a corpus and pass the
    totals to :func:`perplexity` or :func:`bits_per_token`. Jit-compatible.

    Args:
      logits: ``(B, T, V)`` floating scores.
      targets: ``(B, T)`` integers in ``[0, V)`` (padded positions may hold anything in range).
      mask: ``(B, T)`` boolean, True at real positions.

    Returns:
      ``(total_nll, total_tokens)``: float32 and int32 scalars.

    Example:
        >>> logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))    # (1, 2, 3)
        >>> targets, mask = jnp.array([[0, 2]]), jnp.array([[True, True]])
        >>> total_nll, total_tokens = nll_sums(logits, targets, mask)
        >>> round(float(total_nll), 4), int(total_tokens)                # -log 0.5 - log 0.8
        (0.9163, 2)
    """
    check_floating("logits", logits)
    check_rank("logits", logits, 3, "(batch, time, vocab)")
    batch, time, vocab = jnp.shape(logits)
    check_integer("targets", targets)
    check_shape("targets", targets, (batch, time), "(batch, time) like logits")
    check_bool("mask", mask)
    check_shape("mask", mask, (batch, time), "(batch, time) like logits")
    check_range("targets", targets, 0, vocab - 1)
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    target_log_probs = jnp.take_along_axis(log_probs, jnp.asarray(targets)[..., None], axis=-1)
    nll = jnp.where(mask, -target_log_probs[..., 0], jnp.float32(0))
    return jnp.sum(nll, dtype=jnp.float32), jnp.sum(mask, dtype=jnp.int32)


def perplexity(total_nll: Any, total_tokens: Any) -> Array:
    """``exp(total_nll / total_tokens)``: the corpus perplexity from summed NLL (nats) and tokens.

    Pass corpus sums (of :func:`nll_sums`), not per-batch averages: the mean of per-batch
    perplexities is not the corpus perplexity (see the module docstring). Jit-compatible.

    Args:
      total_nll: summed negative log-likelihood in nats (a scalar).
      total_tokens: the number of real tokens it was summed over (a positive scalar).

    Returns:
      A scalar in the floating dtype of ``total_nll`` (float32 for integers).

    Example:
        >>> round(float(perplexity(6 * np.log(4.0), 6)), 4)              # uniform over 4 classes
        4.0
    """
    return jnp.exp(_nll_per_token(total_nll, total_tokens))


def bits_per_token(total_nll: Any, total_tokens: Any) -> Array:
    """``total_nll / total_tokens / ln 2``: the average code length in bits of a real token.

    Bits per character when the tokens are characters; ``log2`` of :func:`perplexity`.
    Jit-compatible.

    Args:
      total_nll: summed negative log-likelihood in nats (a scalar).
      total_tokens: the number of real tokens it was summed over (a positive scalar).

    Returns:
      A scalar in the floating dtype of ``total_nll`` (float32 for integers).

    Example:
        >>> round(float(bits_per_token(3 * np.log(8.0), 3)), 4)          # uniform over 8 classes
        3.0
    """
    nll = _nll_per_token(total_nll, total_tokens)
    return nll / jnp.asarray(math.log(2.0), nll.dtype)


class PerplexitySums(NamedTuple):
    """A host-side accumulator of ``(Σ NLL, Σ real tokens)`` over an evaluation loop.

    Sums are kept as Python float (float64) and int, so a long corpus loses no precision to
    float32 accumulation; :meth:`add` reads its arguments to the host.

    Example:
        >>> sums = PerplexitySums()
        >>> sums = sums.add(2 * np.log(3.0), 2).add(np.log(3.0), 1)       # two batches
        >>> sums.total_tokens, round(sums.perplexity(), 4)
        (3, 3.0)
    """

    total_nll: float = 0.0
    total_tokens: int = 0

    def add(self, total_nll: Any, total_tokens: Any) -> PerplexitySums:
        """The sums with one batch's ``(total_nll, total_tokens)`` (as :func:`nll_sums` returns)."""
        return PerplexitySums(
            self.total_nll + float(total_nll), self.total_tokens + int(total_tokens)
        )

    def perplexity(self) -> float:
        """``exp(Σ NLL / Σ tokens)``."""
        return math.exp(self._per_token())

    def bits_per_token(self) -> float:
        """``Σ NLL / Σ tokens / ln 2``."""
        return self._per_token() / math.log(2.0)

    def _per_token(self) -> float:
        if self.total_tokens <= 0:
            raise ValueError(
                f"total_tokens must be positive to average over; got {self.total_tokens}"
            )
        return self.total_nll / self.total_tokens


def token_accuracy_counts(predictions: Array, targets: Array, mask: Array) -> tuple[Array, Array]:
    """``(Σ_{mask} [predictions == targets], Σ mask)``: correct and real tokens, int32 scalars.

    Sum these over a corpus and divide once. Jit-compatible.

    Args:
      predictions: ``(B, T)`` integer token ids (e.g. ``argmax`` of the logits).
      targets: ``(B, T)`` integer token ids.
      mask: ``(B, T)`` boolean, True at real positions.

    Returns:
      ``(correct, total)``.

    Example:
        >>> correct, total = token_accuracy_counts(
        ...     jnp.array([[5, 6, 9]]), jnp.array([[5, 7, 0]]), jnp.array([[True, True, False]]))
        >>> int(correct), int(total)
        (1, 2)
    """
    _check_tokens_and_mask(predictions, targets, mask)
    correct = jnp.logical_and(_same_tokens(predictions, targets), mask)
    return jnp.sum(correct, dtype=jnp.int32), jnp.sum(mask, dtype=jnp.int32)


def token_accuracy(predictions: Array, targets: Array, mask: Array) -> Array:
    """The fraction of real positions where the prediction equals the target.

    ``Σ_{mask} [predictions == targets] / Σ mask``, float32; NaN when ``mask`` has no real
    position. Jit-compatible. For a corpus, sum :func:`token_accuracy_counts` instead of
    averaging this over batches.

    Args:
      predictions: ``(B, T)`` integer token ids.
      targets: ``(B, T)`` integer token ids.
      mask: ``(B, T)`` boolean, True at real positions.

    Returns:
      A float32 scalar in ``[0, 1]``.

    Example:
        >>> float(token_accuracy(
        ...     jnp.array([[5, 6, 9]]), jnp.array([[5, 7, 0]]), jnp.array([[True, True, False]])))
        0.5
    """
    correct, total = token_accuracy_counts(predictions, targets, mask)
    return correct.astype(jnp.float32) / total.astype(jnp.float32)


def exact_match_counts(
    predictions: Array, targets: Array, *, mask: Array | None = None, lengths: Array | None = None
) -> tuple[Array, Array]:
    """``(number of sequences right at every real position, number of sequences)``, int32.

    Real positions are given by exactly one of ``mask`` ``(B, T)`` or ``lengths`` ``(B,)``
    (positions ``t < lengths[b]``). A sequence with no real position counts as matched (all of
    its zero positions agree). Jit-compatible.

    Args:
      predictions: ``(B, T)`` integer token ids.
      targets: ``(B, T)`` integer token ids.
      mask: ``(B, T)`` boolean, True at real positions; or
      lengths: ``(B,)`` integers in ``[0, T]``.

    Returns:
      ``(matched, sequences)``.

    Example:
        >>> matched, sequences = exact_match_counts(
        ...     jnp.array([[4, 5, 9], [4, 6, 9]]), jnp.array([[4, 5, 0], [4, 5, 0]]),
        ...     lengths=jnp.array([2, 2]))
        >>> int(matched), int(sequences)
        (1, 2)
    """
    mask = _mask_from(predictions, mask, lengths)
    _check_tokens_and_mask(predictions, targets, mask)
    wrong = jnp.logical_and(jnp.logical_not(_same_tokens(predictions, targets)), mask)
    matched = jnp.logical_not(jnp.any(wrong, axis=1))
    return jnp.sum(matched, dtype=jnp.int32), jnp.asarray(matched.shape[0], jnp.int32)


def exact_match(
    predictions: Array, targets: Array, *, mask: Array | None = None, lengths: Array | None = None
) -> Array:
    """The fraction of sequences whose prediction equals the target at every real position.

    Padded positions are ignored, so what a decoder emits after its end token does not matter.
    Give exactly one of ``mask`` or ``lengths``. Jit-compatible; for a corpus, sum
    :func:`exact_match_counts`.

    Args:
      predictions: ``(B, T)`` integer token ids.
      targets: ``(B, T)`` integer token ids.
      mask: ``(B, T)`` boolean, True at real positions; or
      lengths: ``(B,)`` integers in ``[0, T]``.

    Returns:
      A float32 scalar in ``[0, 1]``.

    Example:
        >>> float(exact_match(jnp.array([[4, 5, 9], [4, 6, 9]]), jnp.array([[4, 5, 0], [4, 5, 0]]),
        ...                   mask=jnp.array([[True, True, False], [True, True, False]])))
        0.5
    """
    matched, sequences = exact_match_counts(predictions, targets, mask=mask, lengths=lengths)
    return matched.astype(jnp.float32) / sequences.astype(jnp.float32)


def _nll_per_token(total_nll: Any, total_tokens: Any) -> Array:
    nll = jnp.asarray(total_nll)
    tokens = jnp.asarray(total_tokens)
    for name, value in (("total_nll", nll), ("total_tokens", tokens)):
        if value.ndim != 0:
            raise ValueError(f"{name} must be a scalar; got shape {value.shape}")
    if not jnp.issubdtype(nll.dtype, jnp.floating):
        nll = nll.astype(jnp.float32)
    if not is_traced(tokens) and not float(tokens) > 0:
        raise ValueError(f"total_tokens must be positive; got {np.asarray(tokens)}")
    # Divide in the dtype of the NLL sum (strict dtype promotion would refuse float / int).
    return nll / tokens.astype(nll.dtype)


def _same_tokens(predictions: Array, targets: Array) -> Array:
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    # Compare in a common integer type (ids may come as int32 from one side, int64 from the other).
    # (NumPy's promotion: JAX's own refuses int32 with int64 under strict dtype promotion.)
    common = jax.dtypes.canonicalize_dtype(np.promote_types(predictions.dtype, targets.dtype))
    return predictions.astype(common) == targets.astype(common)


def _check_tokens_and_mask(predictions: Array, targets: Array, mask: Array) -> None:
    check_integer("predictions", predictions)
    check_rank("predictions", predictions, 2, "(batch, time)")
    shape = tuple(jnp.shape(predictions))
    check_integer("targets", targets)
    check_shape("targets", targets, shape, "(batch, time) like predictions")
    check_bool("mask", mask)
    check_shape("mask", mask, shape, "(batch, time) like predictions")


def _mask_from(predictions: Array, mask: Array | None, lengths: Array | None) -> Array:
    if (mask is None) == (lengths is None):
        raise ValueError(
            "exactly one of mask or lengths must be given; got "
            + ("neither" if mask is None else "both")
        )
    if mask is not None:
        return mask
    check_rank("predictions", predictions, 2, "(batch, time)")
    batch, time = jnp.shape(predictions)
    check_integer("lengths", lengths)
    check_shape("lengths", lengths, (batch,), "(batch,) like predictions")
    check_range("lengths", lengths, 0, time)
    lengths = jnp.asarray(lengths)
    return jnp.arange(time, dtype=lengths.dtype)[None, :] < lengths[:, None]
