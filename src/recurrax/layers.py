"""Sequence layers built on the driver: one direction, bidirectional, and deep stacks with dropout.

A :class:`SequenceLayer` is, like a cell, a value made of pure functions::

    params = layer.init(key, input_size)
    carry, ys = layer.apply(params, xs, lengths=..., mask=..., resets=..., key=..., train=...)

``xs`` is ``(B, T, D)`` and ``ys`` is ``(B, T, layer.output_size)``. Every layer honours the driver's
semantics (lengths, mask, resets), so a padded batch gives exactly what each sequence gives alone.
Dropout draws from the explicit ``key`` and is off unless ``train=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Carry, Key, Params
from recurrax.cells.base import Cell
from recurrax.driver import unroll
from recurrax.validation import check_choice, check_probability


class SequenceLayer(NamedTuple):
    """A layer over whole sequences.

    Attributes:
      init: ``init(key, input_size) -> params``.
      apply: ``apply(params, xs, *, lengths=None, mask=None, resets=None, initial_carry=None,
        reset_carry=None, key=None, train=False) -> (final_carry, ys)``; for :func:`stacked`
        ``initial_carry`` and ``reset_carry`` are lists, one carry per layer.
      output_size: features of ``ys`` per step.
    """

    init: Callable[[Key, int], Params]
    apply: Callable[..., tuple[Carry, Array]]
    output_size: int


class BidirectionalState(NamedTuple):
    """Final carries of the two directions of :func:`bidirectional`."""

    forward: Any
    backward: Any


class DropoutState(NamedTuple):
    """Carry of a cell under recurrent variational dropout: the cell's carry and its fixed mask."""

    state: Any
    h_mask: Array


def recurrent(
    cell: Cell, *, reverse: bool = False, learn_initial_carry: bool = False, **unroll_options
) -> SequenceLayer:
    """Wraps a cell into a :class:`SequenceLayer` running in one direction.

    Params: ``{"cell": cell params}`` plus ``{"initial_carry": carry}`` (zeros at init, trained) when
    ``learn_initial_carry``; a learned carry is also where resets return to.

    Args:
      cell: any :class:`recurrax.Cell`.
      reverse: run each sequence backwards over its real steps.
      learn_initial_carry: keep the initial carry as a trainable parameter.
      **unroll_options: ``unroll``, ``remat`` or ``time_major`` for :func:`recurrax.unroll`.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be a recurrax.Cell; got {type(cell).__name__}")

    def init(key, input_size):
        params = {"cell": cell.init(key, input_size)}
        if learn_initial_carry:
            params["initial_carry"] = cell.initial_carry()
        return params

    def apply(
        params,
        xs,
        *,
        lengths=None,
        mask=None,
        resets=None,
        initial_carry=None,
        reset_carry=None,
        key=None,
        train=False,
    ):
        del key, train  # no randomness in a single recurrent layer
        if initial_carry is None and learn_initial_carry:
            initial_carry = params["initial_carry"]
        return unroll(
            cell,
            params["cell"],
            xs,
            initial_carry=initial_carry,
            reset_carry=reset_carry,
            lengths=lengths,
            mask=mask,
            resets=resets,
            reverse=reverse,
            **unroll_options,
        )

    return SequenceLayer(init, apply, cell.output_size)


MERGES = {
    "concat": lambda f, b: jnp.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
}


def bidirectional(
    forward: Cell | SequenceLayer,
    backward: Cell | None = None,
    *,
    merge: str | Callable[[Array, Array], Array] = "concat",
    merged_size: int | None = None,
) -> SequenceLayer:
    """Runs one layer forwards and one backwards over the real steps and merges their outputs.

    ``y_t = merge(forward_t, backward_t)`` where ``backward_t`` has seen steps ``t .. length-1``.
    Reversal is length-aware (padding stays at the end), so padded and unpadded runs agree.

    Args:
      forward: the forward cell or layer.
      backward: the backward cell; default: ``forward`` again when it is a cell (with its own
        params).
      merge: ``"concat"`` (features ``F_f + F_b``), ``"sum"`` or a function ``(f, b) -> y`` of
        ``(B, T, F)`` arrays (then give ``merged_size``).
      merged_size: output features when ``merge`` is a function.

    Params: ``{"forward": ..., "backward": ...}``. The final carry is
    ``BidirectionalState(forward, backward)``; the backward final carry is the state after the first
    real step. A given ``initial_carry`` must be a ``BidirectionalState`` too.
    """
    if not isinstance(forward, Cell | SequenceLayer):
        raise TypeError(
            f"forward must be a recurrax.Cell or SequenceLayer; got {type(forward).__name__}"
        )
    if backward is None:
        if not isinstance(forward, Cell):
            raise TypeError("backward must be given when forward is a SequenceLayer; got None")
        backward = forward
    forward = _as_layer(forward, reverse=False)
    backward = _as_layer(backward, reverse=True)
    if callable(merge):
        merge_fn = merge
        if merged_size is None:
            raise ValueError("merged_size must be given when merge is a function; got None")
        out_size = merged_size
    else:
        check_choice("merge", merge, MERGES)
        merge_fn = MERGES[merge]
        if merge == "sum" and forward.output_size != backward.output_size:
            raise ValueError(
                "merge='sum' needs equal output sizes; got forward "
                f"{forward.output_size} and backward {backward.output_size}"
            )
        out_size = (
            forward.output_size + backward.output_size
            if merge == "concat"
            else (forward.output_size)
        )

    def init(key, input_size):
        k_f, k_b = jax.random.split(key)
        return {
            "forward": forward.init(k_f, input_size),
            "backward": backward.init(k_b, input_size),
        }

    def apply(
        params,
        xs,
        *,
        lengths=None,
        mask=None,
        resets=None,
        initial_carry=None,
        reset_carry=None,
        key=None,
        train=False,
    ):
        k_f, k_b = jax.random.split(key) if key is not None else (None, None)
        carries = initial_carry if initial_carry is not None else BidirectionalState(None, None)
        kw = dict(lengths=lengths, mask=mask, resets=resets, train=train)
        if reset_carry is not None:
            kw_f, kw_b = (
                dict(reset_carry=reset_carry.forward),
                dict(reset_carry=reset_carry.backward),
            )
        else:
            kw_f = kw_b = {}
        f_carry, f_ys = forward.apply(
            params["forward"], xs, initial_carry=carries.forward, key=k_f, **kw, **kw_f
        )
        b_carry, b_ys = backward.apply(
            params["backward"], xs, initial_carry=carries.backward, key=k_b, **kw, **kw_b
        )
        return BidirectionalState(f_carry, b_carry), merge_fn(f_ys, b_ys)

    return SequenceLayer(init, apply, out_size)


def _as_layer(layer: Cell | SequenceLayer, reverse: bool) -> SequenceLayer:
    if isinstance(layer, Cell):
        return recurrent(layer, reverse=reverse)
    if isinstance(layer, SequenceLayer) and not reverse:
        return layer
    expected = "a recurrax.Cell" if reverse else "a recurrax.Cell or SequenceLayer"
    name = "backward" if reverse else "forward"
    raise TypeError(f"{name} must be {expected}; got {type(layer).__name__}")


class VariationalDropout(NamedTuple):
    """Rates of variational dropout (Gal & Ghahramani 2016): one mask per sequence, reused at every step.

    Attributes:
      inputs: rate on each layer's input features.
      outputs: rate on each layer's output features.
      recurrent: rate on the recurrent ``h`` fed back into the cell (never on an LSTM's ``c``).
    """

    inputs: float = 0.0
    outputs: float = 0.0
    recurrent: float = 0.0


def stacked(
    cells: Sequence[Cell],
    *,
    bidirectional_merge: str | None = None,
    residual: bool = False,
    dropout: float = 0.0,
    variational: VariationalDropout | None = None,
) -> SequenceLayer:
    """A deep RNN: layer ``l`` reads the outputs of layer ``l-1``.

    .. math::

        u^{(0)}_t = x_t, \\quad y^{(l)}_t = \\mathrm{RNN}_l(\\tilde u^{(l-1)})_t, \\quad
        u^{(l)}_t = y^{(l)}_t + [\\text{residual}]\\, u^{(l-1)}_t

    Args:
      cells: one cell per layer (each with its own params).
      bidirectional_merge: ``None`` (forward only) or a merge of :func:`bidirectional` (``"concat"``,
        ``"sum"``) to make every layer bidirectional.
      residual: add each layer's input to its output when their sizes match (layers whose sizes
        differ, usually the first, get no residual).
      dropout: standard dropout rate on the outputs of every layer but the last (a fresh mask per
        step and feature).
      variational: :class:`VariationalDropout` rates: one mask per sequence, shared across time, on
        each layer's inputs, outputs and recurrent ``h`` (default: none).

    Params: ``{"layers": [params of layer 0, ...]}``. The final carry is a list, one per layer, and
    so are ``initial_carry`` and ``reset_carry`` (truncated BPTT: each chunk starts from the carried
    state while a reset inside it returns to ``reset_carry``).
    Dropout is applied only with ``train=True`` and needs ``key``; masks are scaled by ``1/(1-p)``.
    """
    variational = VariationalDropout() if variational is None else variational
    cells = list(cells)
    if not cells:
        raise ValueError("cells must hold at least one cell; got an empty sequence")
    for i, cell in enumerate(cells):
        if not isinstance(cell, Cell):
            raise TypeError(f"cells[{i}] must be a recurrax.Cell; got {type(cell).__name__}")
    check_probability("dropout", dropout)
    for name, rate in variational._asdict().items():
        check_probability(f"variational.{name}", rate)
    if bidirectional_merge is not None:
        check_choice("bidirectional_merge", bidirectional_merge, MERGES)

    def make_layer(cell: Cell, train: bool) -> SequenceLayer:
        if train and variational.recurrent > 0:
            cell = _with_recurrent_dropout(cell)
        if bidirectional_merge is None:
            return recurrent(cell)
        return bidirectional(cell, merge=bidirectional_merge)

    eval_layers = [make_layer(c, train=False) for c in cells]

    def init(key, input_size):
        keys = jax.random.split(key, len(cells))
        params, size = [], input_size
        for k, layer in zip(keys, eval_layers, strict=True):
            params.append(layer.init(k, size))
            size = layer.output_size
        return {"layers": params}

    def apply(
        params,
        xs,
        *,
        lengths=None,
        mask=None,
        resets=None,
        initial_carry=None,
        reset_carry=None,
        key=None,
        train=False,
    ):
        for name, value in (("initial_carry", initial_carry), ("reset_carry", reset_carry)):
            if value is not None and len(value) != len(cells):
                raise ValueError(
                    f"{name} must hold one carry per layer ({len(cells)}); got {len(value)}"
                )
        use_dropout = train and (dropout > 0 or any(variational))
        if use_dropout and key is None:
            raise ValueError("key must be a PRNG key when train=True and dropout is on; got None")
        keys = jax.random.split(key, len(cells)) if use_dropout else [None] * len(cells)
        B = xs.shape[0]
        u, carries = xs, []
        for i, cell in enumerate(cells):
            layer = make_layer(cell, train)
            k_in, k_out, k_h, k_step = jax.random.split(keys[i], 4) if use_dropout else (None,) * 4
            given = None if initial_carry is None else initial_carry[i]
            reset_to = None if reset_carry is None else reset_carry[i]
            layer_in = u
            if use_dropout and variational.inputs > 0:
                layer_in = u * _sequence_mask(
                    k_in, variational.inputs, (B, 1, u.shape[-1]), u.dtype
                )
            if use_dropout and variational.recurrent > 0:
                given = _recurrent_dropout_carry(
                    cell, given, k_h, variational.recurrent, B, bidirectional_merge is not None
                )
                if reset_to is not None:  # resets keep the sequence's dropout masks
                    reset_to = _with_masks_of(given, reset_to, B)
            carry, y = layer.apply(
                params["layers"][i],
                layer_in,
                lengths=lengths,
                mask=mask,
                resets=resets,
                initial_carry=given,
                reset_carry=reset_to,
            )
            carries.append(_strip_dropout(carry))
            if use_dropout and variational.outputs > 0:
                y = y * _sequence_mask(k_out, variational.outputs, (B, 1, y.shape[-1]), y.dtype)
            if use_dropout and dropout > 0 and i < len(cells) - 1:
                y = y * _sequence_mask(k_step, dropout, y.shape, y.dtype)
            u = y + u if residual and y.shape[-1] == u.shape[-1] else y
        return carries, u

    return SequenceLayer(init, apply, eval_layers[-1].output_size)


def _sequence_mask(key: Key, rate: float, shape, dtype) -> Array:
    """Inverted-dropout mask: 0 with probability ``rate``, else ``1/(1-rate)``."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def _with_recurrent_dropout(cell: Cell) -> Cell:
    """The same cell with its carry wrapped in :class:`DropoutState`; ``h`` is masked before each step.

    The mask lives in the carry so that it is per example and survives the driver's freezing and
    resets unchanged (a reset returns to the initial carry, which holds the same mask).
    """

    def step(params, carry, x):
        inner = carry.state._replace(h=carry.state.h * carry.h_mask)
        new, y = cell.step(params, inner, x)
        return DropoutState(new, carry.h_mask), y

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        state = cell.initial_carry(batch_shape, dtype)
        return DropoutState(state, jnp.ones_like(state.h))

    # The masked step is neither the cell's linear nor its projected form: always run it step by step.
    return cell._replace(step=step, initial_carry=initial_carry, linear=None, projected=None)


def _recurrent_dropout_carry(cell, given, key, rate, batch, bidirectional_layer):
    """Initial carries holding fresh per-sequence masks on ``h`` (one per direction)."""

    def one(carry, k):
        state = cell.initial_carry((batch,)) if carry is None else _broadcast(carry, batch)
        mask = _sequence_mask(k, rate, state.h.shape, state.h.dtype)
        return DropoutState(state, mask)

    if not bidirectional_layer:
        return one(given, key)
    k_f, k_b = jax.random.split(key)
    given = given if given is not None else BidirectionalState(None, None)
    return BidirectionalState(one(given.forward, k_f), one(given.backward, k_b))


def _with_masks_of(masked, carry, batch):
    """``carry`` wrapped in the :class:`DropoutState` masks of ``masked`` (per direction)."""
    if isinstance(masked, BidirectionalState):
        return BidirectionalState(
            _with_masks_of(masked.forward, carry.forward, batch),
            _with_masks_of(masked.backward, carry.backward, batch),
        )
    return DropoutState(_broadcast(carry, batch), masked.h_mask)


def _broadcast(carry, batch):
    ref = jax.tree.leaves(carry)[0]
    if ref.ndim == 1:
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape)), carry)
    return carry


def _strip_dropout(carry):
    if isinstance(carry, DropoutState):
        return carry.state
    if isinstance(carry, BidirectionalState):
        return BidirectionalState(_strip_dropout(carry.forward), _strip_dropout(carry.backward))
    return carry
