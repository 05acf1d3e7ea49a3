"""Padding token sequences into arrays, and bucketing them so a jitted step compiles once per bucket.

``jax.jit`` compiles a function once per distinct input shape. Padding every batch to its own
longest sequence gives a new shape, hence a new compilation, for almost every batch. Bucketing pads
each sequence to the smallest of a FIXED set of lengths (the buckets) that holds it and batches
sequences of the same bucket together, so every batch has one of ``len(buckets)`` widths and a
jitted training step compiles at most once per bucket (twice with a partial last batch of a
different height, unless ``drop_remainder`` or ``pad_remainder`` is set). :func:`trace_counter`
counts the compilations.

Layout: arrays are ``(B, L)`` (batch, time), padded after the real tokens ("post" padding) with
``PAD`` (0), next to ``lengths`` ``(B,)`` that count the real tokens. That is what
:func:`recurrax.unroll` and the layers expect: the real tokens of row ``b`` are ``[0,
lengths[b])``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from recurrax.text.special_tokens import PAD
from recurrax.validation import check_choice, check_positive_int

SIDES = ("post", "pre")


def as_token_arrays(name: str, seqs: Any) -> list[np.ndarray]:
    """Each sequence as a 1-D integer array (an empty one is fine), checked."""
    if isinstance(seqs, str | bytes) or not isinstance(seqs, Sequence | np.ndarray):
        raise TypeError(
            f"{name} must be a sequence of integer sequences; got {type(seqs).__name__}"
        )
    arrays = []
    for i, seq in enumerate(seqs):
        if isinstance(seq, str | bytes):
            raise TypeError(
                f"{name}[{i}] must be a sequence of integer ids; got a {type(seq).__name__}"
            )
        array = np.asarray(seq)
        if array.ndim != 1:
            raise ValueError(f"{name}[{i}] must be 1-D; got shape {array.shape}")
        if array.size == 0:
            array = np.zeros((0,), np.int64)
        elif not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name}[{i}] must hold integer ids; got dtype {array.dtype}")
        arrays.append(array)
    return arrays


def check_integer_dtype(dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be an integer dtype; got {dtype!r}") from None
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"dtype must be an integer dtype; got {dtype}")
    return dtype


def check_fits(name: str, arrays: list[np.ndarray], value: int, dtype: np.dtype) -> None:
    info = np.iinfo(dtype)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"value must be an int; got {value!r}")
    if not info.min <= value <= info.max:
        raise ValueError(f"value must fit in {dtype} [{info.min}, {info.max}]; got {value}")
    for i, array in enumerate(arrays):
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(
                f"{name}[{i}] must fit in {dtype} [{info.min}, {info.max}]; "
                f"got values in [{array.min()}, {array.max()}]"
            )


def pad_sequences(
    seqs: Sequence[Sequence[int]],
    *,
    max_length: int | None = None,
    padding: str = "post",
    truncating: str = "post",
    value: int = PAD,
    dtype: Any = np.int32,
) -> tuple[np.ndarray, np.ndarray]:
    """Pads (and truncates) integer sequences into one ``(B, L)`` array.

    ``L`` is ``max_length``, or the longest sequence when it is ``None``. A sequence longer than
    ``L`` loses ``len - L`` tokens: from the end with ``truncating="post"`` (keeps the start), from
    the start with ``truncating="pre"`` (keeps the end). A shorter one is filled with ``value``:
    after its tokens with ``padding="post"``, before them with ``padding="pre"``.

    ``lengths[b]`` is the number of real tokens kept, ``min(len(seqs[b]), L)``, in both layouts.
    With ``"post"`` padding they are ``row[:lengths[b]]``, the layout :func:`recurrax.unroll` and
    the layers assume when given ``lengths``. With ``"pre"`` padding they are
    ``row[L - lengths[b]:]``: do not pass such an array to the driver with ``lengths`` (it would
    treat the leading padding as the sequence); use ``"pre"`` only for models without lengths.

    Args:
      seqs: ``B`` sequences of integer ids (lists or 1-D arrays; empty ones allowed).
      max_length: ``L``, a positive int, or ``None`` for the longest sequence (0 if all are empty).
      padding: ``"post"`` or ``"pre"``.
      truncating: ``"post"`` (drop from the end) or ``"pre"`` (drop from the start).
      value: the fill id, ``PAD`` (0) by default.
      dtype: an integer dtype for the array (``lengths`` are always int32).

    Returns:
      ``(array, lengths)``: ``(B, L)`` of ``dtype`` and ``(B,)`` int32.

    Example:
        >>> array, lengths = pad_sequences([[5, 6, 7], [8]], max_length=2)
        >>> array.tolist(), lengths.tolist()
        ([[5, 6], [8, 0]], [2, 1])
        >>> pad_sequences([[5, 6, 7], [8]], max_length=2, padding="pre", truncating="pre")[0].tolist()
        [[6, 7], [0, 8]]
    """
    arrays = as_token_arrays("seqs", seqs)
    if max_length is not None:
        check_positive_int("max_length", max_length)
    check_choice("padding", padding, SIDES)
    check_choice("truncating", truncating, SIDES)
    dtype = check_integer_dtype(dtype)
    check_fits("seqs", arrays, value, dtype)

    width = max_length if max_length is not None else max((len(a) for a in arrays), default=0)
    out = np.full((len(arrays), width), value, dtype)
    lengths = np.zeros((len(arrays),), np.int32)
    for b, array in enumerate(arrays):
        if len(array) > width:
            array = array[:width] if truncating == "post" else array[len(array) - width :]
        n = len(array)
        if padding == "post":
            out[b, :n] = array
        else:
            out[b, width - n :] = array
        lengths[b] = n
    return out, lengths


def check_buckets(buckets: Any) -> tuple[int, ...]:
    if isinstance(buckets, int) or not isinstance(buckets, Sequence) or not buckets:
        raise ValueError(f"buckets must be a non-empty sequence of lengths; got {buckets!r}")
    if not all(
        isinstance(b, int | np.integer) and not isinstance(b, bool) and b > 0 for b in buckets
    ):
        raise ValueError(f"buckets must hold positive integers; got {tuple(buckets)}")
    if any(a >= b for a, b in itertools.pairwise(buckets)):
        raise ValueError(f"buckets must be strictly increasing; got {tuple(buckets)}")
    return tuple(int(b) for b in buckets)


def bucket_for(length: int, buckets: Sequence[int], *, truncate: bool = False) -> int:
    """The smallest bucket that holds ``length`` tokens.

    Args:
      length: a sequence length, ``>= 0``.
      buckets: the allowed padded lengths, strictly increasing positive ints.
      truncate: what a ``length`` above the largest bucket gets: with ``False`` a ValueError,
        with ``True`` the largest bucket (the sequence will be cut to it).

    Returns:
      The bucket length.

    Example:
        >>> bucket_for(5, (4, 8, 16)), bucket_for(8, (4, 8, 16)), bucket_for(0, (4, 8, 16))
        (8, 8, 4)
        >>> bucket_for(20, (4, 8, 16), truncate=True)
        16
    """
    buckets = check_buckets(buckets)
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
        raise ValueError(f"length must be a non-negative integer; got {length!r}")
    for bucket in buckets:
        if length <= bucket:
            return bucket
    if truncate:
        return buckets[-1]
    raise ValueError(
        f"length must be at most the largest bucket ({buckets[-1]}); got {length} "
        "(add a larger bucket, or pass truncate=True to cut long sequences)"
    )


def check_seed(shuffle_seed: Any) -> None:
    if shuffle_seed is not None and (
        isinstance(shuffle_seed, bool)
        or not isinstance(shuffle_seed, int | np.integer)
        or shuffle_seed < 0
    ):
        raise ValueError(f"shuffle_seed must be None or a non-negative int; got {shuffle_seed!r}")


def bucket_indices(
    lengths: Sequence[int],
    buckets: Sequence[int],
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
    truncate: bool = False,
) -> list[tuple[int, np.ndarray]]:
    """Groups example indices into batches of one bucket each: the plan :func:`bucket_batches`
    follows, usable directly when an example is more than one sequence (a source and a target:
    bucket on ``max(len(source), len(target))`` and pad both to the bucket).

    Order. Without a seed: buckets from shortest to longest, and within a bucket the examples in
    their input order. With ``shuffle_seed``: a ``numpy.random.default_rng(shuffle_seed)``
    permutes the examples of each bucket (shortest bucket first), then the order of all the
    batches; the same seed gives the same batches.

    Args:
      lengths: the length of each example.
      buckets: strictly increasing padded lengths.
      batch_size: examples per batch.
      shuffle_seed: ``None`` (no shuffling) or a non-negative int.
      drop_remainder: drop each bucket's last batch when it has fewer than ``batch_size``
        examples (those examples then appear in no batch).
      truncate: put examples longer than the largest bucket in the largest bucket (to be cut)
        instead of raising.

    Returns:
      A list of ``(bucket, indices)``: the bucket length and a 1-D int array of example indices.

    Example:
        >>> bucket_indices([3, 9, 2, 4, 7], (4, 8, 16), batch_size=2)
        [(4, array([0, 2])), (4, array([3])), (8, array([4])), (16, array([1]))]
    """
    buckets = check_buckets(buckets)
    check_positive_int("batch_size", batch_size)
    check_seed(shuffle_seed)
    members: dict[int, list[int]] = {bucket: [] for bucket in buckets}
    for i, length in enumerate(lengths):
        members[bucket_for(length, buckets, truncate=truncate)].append(i)

    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    batches = []
    for bucket in buckets:
        indices = np.asarray(members[bucket], np.int64)
        if rng is not None:
            indices = rng.permutation(indices)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            if len(chunk) < batch_size and drop_remainder:
                continue
            batches.append((bucket, chunk))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def bucket_batches(
    examples: Sequence[Sequence[int]],
    buckets: Sequence[int],
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
    pad_remainder: bool = False,
    truncate: bool = False,
    value: int = PAD,
    dtype: Any = np.int32,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of examples of similar length, each padded ("post") to its bucket's length.

    Every batch is ``(n, bucket)`` with ``bucket`` in ``buckets``; ``n == batch_size`` except for
    each bucket's last batch, which has the examples left over unless ``drop_remainder`` drops it
    or ``pad_remainder`` fills it with empty rows (all ``value``, length 0) up to ``batch_size``.
    With either, every batch shape is one of ``{(batch_size, b) for b in buckets}``, so a jitted
    step compiles at most ``len(buckets)`` times. Each example appears in exactly one batch (none
    for those a dropped remainder held). The order is :func:`bucket_indices`'s.

    The arguments are checked when this is called, before the first batch is asked for.

    Args:
      examples: integer sequences (lists or 1-D arrays).
      buckets: strictly increasing padded lengths.
      batch_size: rows per batch.
      shuffle_seed: ``None`` or a non-negative int (see :func:`bucket_indices`).
      drop_remainder: drop each bucket's partial last batch.
      pad_remainder: fill each bucket's partial last batch with empty rows.
      truncate: cut examples longer than the largest bucket to it, keeping their start (else a
        ValueError).
      value: the padding id, ``PAD`` (0) by default.
      dtype: the integer dtype of the arrays.

    Returns:
      An iterator of ``(array, lengths)``: ``(n, bucket)`` of ``dtype`` and ``(n,)`` int32.

    Example:
        >>> batches = bucket_batches([[1], [2, 3, 4], [5, 6]], (2, 4), batch_size=2)
        >>> [(array.tolist(), lengths.tolist()) for array, lengths in batches]
        [([[1, 0], [5, 6]], [1, 2]), ([[2, 3, 4, 0]], [3])]
    """
    arrays = as_token_arrays("examples", examples)
    if drop_remainder and pad_remainder:
        raise ValueError("drop_remainder and pad_remainder must not both be True")
    dtype = check_integer_dtype(dtype)
    check_fits("examples", arrays, value, dtype)
    plan = bucket_indices(
        [len(a) for a in arrays],
        buckets,
        batch_size,
        shuffle_seed=shuffle_seed,
        drop_remainder=drop_remainder,
        truncate=truncate,
    )

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for bucket, indices in plan:
            rows = [arrays[i] for i in indices]
            if pad_remainder:
                rows += [np.zeros((0,), np.int64)] * (batch_size - len(rows))
            yield pad_sequences(rows, max_length=bucket, value=value, dtype=dtype)

    return batches()


def trace_counter(fn: Callable) -> Callable:
    """``fn`` wrapped to count its calls in ``.count``; under ``jax.jit`` that is the number of
    traces, i.e. compilations.

    ``jax.jit`` runs the Python function only to trace it, once per new combination of input
    shapes, dtypes and static arguments, and reuses the compiled program afterwards. Wrap the
    function BEFORE jitting it; ``.count`` then reports how many programs were compiled (one per
    bucket with :func:`bucket_batches`, one per distinct batch length when every batch is padded
    to its own longest sequence).

    Args:
      fn: the function to count.

    Returns:
      A function that calls ``fn`` and adds one to its ``count`` attribute (which starts at 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> step = trace_counter(lambda x: jnp.sum(x))
        >>> fast = jax.jit(step)
        >>> for length in (4, 8, 4, 4, 8):
        ...     _ = fast(jnp.ones((2, length)))
        >>> step.count
        2
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")

    @functools.wraps(fn)
    def counted(*args, **kwargs):
        counted.count += 1
        return fn(*args, **kwargs)

    counted.count = 0
    return counted
