"""Sequence layers built on the driver: one direction, bidirectional, deep stacks with dropout, and
the residual block of the linear recurrences.

A :class:`SequenceLayer` is, like a cell, a value made of pure functions::

    params = layer.init(key, input_size)
    carry = layer.initial_carry(batch_shape)
    carry, ys = layer.apply(params, xs, initial_carry=carry, lengths=..., mask=..., resets=...,
                            key=..., train=...)

``xs`` is ``(B, T, D)`` and ``ys`` is ``(B, T, layer.output_size)``. Every layer honours the driver's
semantics (lengths, mask, resets), so a padded batch gives exactly what each sequence gives alone.
Dropout draws from the explicit ``key`` and is off unless ``train=True``.

Layers compose: :func:`bidirectional`, :func:`stacked` and :func:`residual_block` take cells or
layers. A cell is wrapped with :func:`recurrent` and the driver options given to the composite
(``method``, ``chunk_size``, ``remat``, ``unroll``; see :func:`recurrax.unroll`); a layer is used as
it is, with the options it was built with, so that each direction or each layer of a stack can run
its own path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import export

from recurrax import driver
from recurrax.array_types import Array, Carry, Key, Params
from recurrax.cells.base import Cell, check_cell
from recurrax.driver import check_remat
from recurrax.paths import methods
from recurrax.readout import dense
from recurrax.validation import check_choice, check_positive_int, check_probability

LAYER_NORM_EPS = 1e-5


class SequenceLayer(NamedTuple):
    """A layer over whole sequences.

    Attributes:
      init: ``init(key, input_size) -> params``.
      apply: ``apply(params, xs, *, lengths=None, mask=None, resets=None, initial_carry=None,
        reset_carry=None, key=None, train=False) -> (final_carry, ys)``: ``xs (B, T, D)``,
        ``ys (B, T, output_size)``; ``initial_carry`` (None: zeros, or the learned carry) and
        ``reset_carry`` (where resets return to; default ``initial_carry``) have the structure of
        ``initial_carry(...)``, and so has ``final_carry``.
      output_size: features of ``ys`` per step.
      initial_carry: ``initial_carry(batch_shape=(), dtype=float32) -> carry``, the zero carry that
        ``apply`` takes and returns (a cell's carry, a :class:`BidirectionalState`, or a list with
        one carry per layer of a stack), with leaves ``(*batch_shape, ...)``. Threading the
        returned carry into the next call (truncated BPTT, streaming) keeps the same structure,
        shapes and dtypes, so a jitted step compiles once.
      reverse: whether the layer runs each sequence from its last real step to its first.
    """

    init: Callable[[Key, int], Params]
    apply: Callable[..., tuple[Carry, Array]]
    output_size: int
    initial_carry: Callable[..., Carry]
    reverse: bool = False


class BidirectionalState(NamedTuple):
    """Final carries of the two directions of :func:`bidirectional`."""

    forward: Any
    backward: Any


class DropoutState(NamedTuple):
    """Carry of a cell under recurrent variational dropout: the cell's carry and its fixed mask."""

    state: Any
    h_mask: Array


for _state in (BidirectionalState, DropoutState):  # (see recurrax.cells: jax.export names)
    export.register_namedtuple_serialization(_state, serialized_name=f"recurrax.{_state.__name__}")


def recurrent(
    cell: Cell,
    *,
    reverse: bool = False,
    learn_initial_carry: bool = False,
    method: str | None = None,
    chunk_size: int | None = None,
    remat: bool | int | None = None,
    unroll: int = 1,
) -> SequenceLayer:
    """Wraps a cell into a :class:`SequenceLayer` running in one direction.

    Params: ``{"cell": cell params}`` plus ``{"initial_carry": carry}`` (zeros at init, trained) when
    ``learn_initial_carry``; a learned carry is where the layer starts when ``apply`` gets no
    ``initial_carry``, and where resets return to. ``layer.initial_carry(batch_shape)`` is the
    cell's zero carry.

    Args:
      cell: any :class:`recurrax.Cell`.
      reverse: run each sequence backwards over its real steps.
      learn_initial_carry: keep the initial carry as a trainable parameter.
      method, chunk_size, remat, unroll: the path and its options, as in
        :func:`recurrax.unroll` (checked here, when the layer is built).

    Example:
        >>> layer = recurrax.recurrent(recurrax.lstm(16), method="step", remat=4)
        >>> params = layer.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 10, 8))                              # (batch, time, features)
        >>> carry, ys = layer.apply(params, xs, initial_carry=layer.initial_carry((2,)))
        >>> ys.shape, carry.h.shape
        ((2, 10, 16), (2, 16))
    """
    check_cell(cell)
    if method is not None:
        check_choice("method", method, methods(cell))
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    check_remat(remat)
    check_positive_int("unroll", unroll)
    options = dict(method=method, chunk_size=chunk_size, remat=remat, unroll=unroll)

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
        return driver.unroll(
            cell,
            params["cell"],
            xs,
            initial_carry=initial_carry,
            reset_carry=reset_carry,
            lengths=lengths,
            mask=mask,
            resets=resets,
            reverse=reverse,
            **options,
        )

    return SequenceLayer(init, apply, cell.output_size, cell.initial_carry, reverse)


def as_layer(layer: Cell | SequenceLayer, name: str, *, reverse: bool = False, **options):
    """``layer`` itself, or a cell wrapped with :func:`recurrent` (``reverse`` and the driver
    ``options``). A layer must already run in the direction asked for."""
    if isinstance(layer, Cell):
        return recurrent(layer, reverse=reverse, **options)
    if not isinstance(layer, SequenceLayer):
        raise TypeError(
            f"{name} must be a recurrax.Cell or SequenceLayer; got {type(layer).__name__}"
        )
    if layer.reverse != reverse:
        direction = "backwards" if reverse else "forwards"
        raise ValueError(
            f"{name} must run {direction} (reverse={reverse}); got a layer with "
            f"reverse={layer.reverse}"
            + (
                " (build it with recurrax.recurrent(cell, reverse=True) or "
                "recurrax.stacked(cells, reverse=True))"
                if reverse
                else ""
            )
        )
    return layer


MERGES = {
    "concat": lambda f, b: jnp.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
}


def bidirectional(
    forward: Cell | SequenceLayer,
    backward: Cell | SequenceLayer | None = None,
    *,
    merge: str | Callable[[Array, Array], Array] = "concat",
    merged_size: int | None = None,
    **driver_options,
) -> SequenceLayer:
    """Runs one layer forwards and one backwards over the real steps and merges their outputs.

    ``y_t = merge(forward_t, backward_t)`` where ``backward_t`` has seen steps ``t .. length-1``.
    Reversal is length-aware (padding stays at the end), so padded and unpadded runs agree.

    Args:
      forward: the forward cell, or a forward layer (``reverse=False``).
      backward: the backward cell, or a backward layer (``reverse=True``, e.g.
        ``recurrax.recurrent(cell, reverse=True, method="step")``); default: the ``forward`` cell
        again (with its own params). Must be given when ``forward`` is a layer.
      merge: ``"concat"`` (features ``F_f + F_b``), ``"sum"`` or a function ``(f, b) -> y`` of
        ``(B, T, F)`` arrays (then give ``merged_size``).
      merged_size: output features when ``merge`` is a function.
      **driver_options: ``method``, ``chunk_size``, ``remat``, ``unroll`` for the cells given (see
        :func:`recurrent`); layers keep their own.

    Params: ``{"forward": ..., "backward": ...}``. The carry is ``BidirectionalState(forward,
    backward)``; the backward final carry is the state after the first real step.

    Example:
        >>> layer = recurrax.bidirectional(recurrax.lstm(16), method="fused")
        >>> params = layer.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 10, 8))
        >>> carry, ys = layer.apply(params, xs, lengths=jnp.array([10, 7]))
        >>> ys.shape, carry.forward.h.shape, carry.backward.h.shape
        ((2, 10, 32), (2, 16), (2, 16))
    """
    if backward is None:
        if isinstance(forward, SequenceLayer):
            raise TypeError(
                "backward must be given when forward is a SequenceLayer (a layer built to run "
                "backwards, e.g. recurrax.recurrent(cell, reverse=True)); got None"
            )
        backward = forward
    forward = as_layer(forward, "forward", **driver_options)
    backward = as_layer(backward, "backward", reverse=True, **driver_options)
    if callable(merge):
        merge_fn = merge
        if merged_size is None:
            raise ValueError("merged_size must be given when merge is a function; got None")
        check_positive_int("merged_size", merged_size)
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

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return BidirectionalState(
            forward.initial_carry(batch_shape, dtype), backward.initial_carry(batch_shape, dtype)
        )

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
        for name, value in (("initial_carry", initial_carry), ("reset_carry", reset_carry)):
            if value is not None and not isinstance(value, BidirectionalState):
                raise TypeError(
                    f"{name} must be a recurrax.BidirectionalState (see layer.initial_carry); "
                    f"got {type(value).__name__}"
                )
        carries = initial_carry if initial_carry is not None else BidirectionalState(None, None)
        resets_to = reset_carry if reset_carry is not None else BidirectionalState(None, None)
        kw = dict(lengths=lengths, mask=mask, resets=resets, train=train)
        f_carry, f_ys = forward.apply(
            params["forward"],
            xs,
            initial_carry=carries.forward,
            reset_carry=resets_to.forward,
            key=k_f,
            **kw,
        )
        b_carry, b_ys = backward.apply(
            params["backward"],
            xs,
            initial_carry=carries.backward,
            reset_carry=resets_to.backward,
            key=k_b,
            **kw,
        )
        return BidirectionalState(f_carry, b_carry), merge_fn(f_ys, b_ys)

    return SequenceLayer(init, apply, out_size, initial_carry)


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
    layers: Sequence[Cell | SequenceLayer],
    *,
    bidirectional_merge: str | None = None,
    residual: bool = False,
    dropout: float = 0.0,
    variational: VariationalDropout | None = None,
    reverse: bool = False,
    **driver_options,
) -> SequenceLayer:
    """A deep RNN: layer ``l`` reads the outputs of layer ``l-1``.

    .. math::

        u^{(0)}_t = x_t, \\quad y^{(l)}_t = \\mathrm{RNN}_l(\\tilde u^{(l-1)})_t, \\quad
        u^{(l)}_t = y^{(l)}_t + [\\text{residual}]\\, u^{(l-1)}_t

    Args:
      layers: one cell or :class:`SequenceLayer` per layer (each with its own params). Cells are
        wrapped with :func:`recurrent` (or :func:`bidirectional`) and ``driver_options``; layers
        are used as they are, so each can run its own path.
      bidirectional_merge: ``None`` (one direction) or a merge of :func:`bidirectional`
        (``"concat"``, ``"sum"``) to make every cell's layer bidirectional.
      residual: add each layer's input to its output when their sizes match (layers whose sizes
        differ, usually the first, get no residual).
      dropout: standard dropout rate on the outputs of every layer but the last (a fresh mask per
        step and feature).
      variational: :class:`VariationalDropout` rates: one mask per sequence, shared across time, on
        each layer's inputs, outputs and recurrent ``h`` (default: none; the recurrent rate needs
        cells, since it acts inside the step).
      reverse: run every cell's layer backwards (a backward stack, e.g. for :func:`bidirectional`);
        given layers must then run backwards too.
      **driver_options: ``method``, ``chunk_size``, ``remat``, ``unroll`` for the cells given (see
        :func:`recurrent`).

    Params: ``{"layers": [params of layer 0, ...]}``. The carry is a list, one carry per layer
    (``initial_carry(batch_shape)`` builds it); so are ``initial_carry`` and ``reset_carry`` of
    ``apply`` (truncated BPTT: each chunk starts from the carried state while a reset inside it
    returns to ``reset_carry``). Dropout is applied only with ``train=True`` and needs ``key``;
    masks are scaled by ``1/(1-p)``.

    Example:
        >>> layer = recurrax.stacked([recurrax.gru(16), recurrax.gru(16)], bidirectional_merge="sum")
        >>> params = layer.init(jax.random.key(0), 8)
        >>> carry = layer.initial_carry((2,))                     # one carry per layer
        >>> for chunk in jnp.ones((3, 2, 5, 8)):                  # truncated BPTT over 3 chunks
        ...     carry, ys = layer.apply(params, chunk, initial_carry=carry)
        >>> ys.shape, len(carry), carry[1].backward.h.shape
        ((2, 5, 16), 2, (2, 16))
    """
    variational = VariationalDropout() if variational is None else variational
    layers = list(layers)
    if not layers:
        raise ValueError("layers must hold at least one cell or layer; got an empty sequence")
    for i, layer in enumerate(layers):
        if isinstance(layer, Cell):
            check_cell(layer, f"layers[{i}]")
        elif isinstance(layer, SequenceLayer):
            if variational.recurrent > 0:
                raise ValueError(
                    f"layers[{i}] must be a cell when variational.recurrent > 0 (the mask acts "
                    f"inside the cell's step); got a SequenceLayer"
                )
        else:
            raise TypeError(
                f"layers[{i}] must be a recurrax.Cell or SequenceLayer; got {type(layer).__name__}"
            )
    check_probability("dropout", dropout)
    for name, rate in variational._asdict().items():
        check_probability(f"variational.{name}", rate)
    if bidirectional_merge is not None:
        check_choice("bidirectional_merge", bidirectional_merge, MERGES)
        if reverse:
            raise ValueError("reverse must be False when bidirectional_merge is given; got True")

    def make_layer(i: int, train: bool) -> SequenceLayer:
        layer = layers[i]
        if not isinstance(layer, Cell):
            return as_layer(layer, f"layers[{i}]", reverse=reverse)
        if train and variational.recurrent > 0:
            layer = _with_recurrent_dropout(layer)
        if bidirectional_merge is None:
            return recurrent(layer, reverse=reverse, **driver_options)
        return bidirectional(layer, merge=bidirectional_merge, **driver_options)

    eval_layers = [make_layer(i, train=False) for i in range(len(layers))]
    train_layers = [make_layer(i, train=True) for i in range(len(layers))]

    def init(key, input_size):
        keys = jax.random.split(key, len(layers))
        params, size = [], input_size
        for k, layer in zip(keys, eval_layers, strict=True):
            params.append(layer.init(k, size))
            size = layer.output_size
        return {"layers": params}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return [layer.initial_carry(batch_shape, dtype) for layer in eval_layers]

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
            if value is not None and len(value) != len(layers):
                raise ValueError(
                    f"{name} must hold one carry per layer ({len(layers)}); got {len(value)}"
                )
        use_dropout = train and (dropout > 0 or any(variational))
        if use_dropout and key is None:
            raise ValueError("key must be a PRNG key when train=True and dropout is on; got None")
        keys = [None] * len(layers) if key is None else jax.random.split(key, len(layers))
        B = xs.shape[0]
        u, carries = xs, []
        for i, layer in enumerate(train_layers if train else eval_layers):
            k_in, k_out, k_h, k_step = (None,) * 4 if key is None else jax.random.split(keys[i], 4)
            k_layer = None if key is None else jax.random.fold_in(keys[i], 4)  # (its own dropout)
            given = None if initial_carry is None else initial_carry[i]
            reset_to = None if reset_carry is None else reset_carry[i]
            layer_in = u
            if use_dropout and variational.inputs > 0:
                layer_in = u * _sequence_mask(
                    k_in, variational.inputs, (B, 1, u.shape[-1]), u.dtype
                )
            if use_dropout and variational.recurrent > 0:
                given = _recurrent_dropout_carry(
                    layers[i], given, k_h, variational.recurrent, B, bidirectional_merge is not None
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
                key=k_layer,
                train=train,
            )
            carries.append(_strip_dropout(carry))
            if use_dropout and variational.outputs > 0:
                y = y * _sequence_mask(k_out, variational.outputs, (B, 1, y.shape[-1]), y.dtype)
            if use_dropout and dropout > 0 and i < len(layers) - 1:
                y = y * _sequence_mask(k_step, dropout, y.shape, y.dtype)
            u = y + u if residual and y.shape[-1] == u.shape[-1] else y
        return carries, u

    return SequenceLayer(init, apply, eval_layers[-1].output_size, initial_carry, reverse)


def residual_block(
    layer: Cell | SequenceLayer,
    features: int,
    *,
    glu: bool = True,
    dropout: float = 0.0,
    **driver_options,
) -> SequenceLayer:
    r"""The pre-norm residual block of the linear recurrences (LRU, S5, Mamba, RG-LRU papers).

    .. math::

        y_t = x_t + \mathrm{Dropout}\big(\mathrm{GLU}(\mathrm{RNN}(\mathrm{LN}(x))_t)\big),
        \qquad \mathrm{GLU}(z) = (z W_v + b_v) \odot \sigma(z W_g + b_g)

    A stack of linear recurrences alone is a linear map; the GLU after each one is the block's
    nonlinearity. Blocks that already gate and project (Mamba) take ``glu=False``. LayerNorm
    statistics are computed over features in float32.

    Args:
      layer: the recurrence: a cell (wrapped with :func:`recurrent` and ``driver_options``) or a
        forward :class:`SequenceLayer` (e.g. a :func:`bidirectional` one).
      features: ``D``, the width of the residual stream: the block's input and output features.
      glu: put a GLU ``(F, D)`` after the recurrence; without it its output must have ``D``
        features.
      dropout: dropout rate on the block's branch before the residual sum (training only).
      **driver_options: ``method``, ``chunk_size``, ``remat``, ``unroll`` when ``layer`` is a cell.

    Params: ``{"rnn": ..., "norm": {"scale", "bias"} (D,), "glu": {"value", "gate"}}``; the
    carry is the recurrence's.

    Example:
        >>> block = recurrax.residual_block(recurrax.lru(32, 16), 16)
        >>> params = block.init(jax.random.key(0), 16)
        >>> carry, ys = block.apply(params, jnp.ones((2, 10, 16)))
        >>> ys.shape, carry.h.shape
        ((2, 10, 16), (2, 32))
    """
    inner = as_layer(layer, "layer", **driver_options)
    check_positive_int("features", features)
    check_probability("dropout", dropout)
    if not glu and inner.output_size != features:
        raise ValueError(
            f"layer must output features ({features}) per step when glu=False; got "
            f"{inner.output_size}"
        )
    init, branch = _residual_parts(inner.init, inner.output_size, features, glu)

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
        if train and dropout > 0 and key is None:
            raise ValueError("key must be a PRNG key when train=True and dropout > 0; got None")
        carry, y = inner.apply(
            params["rnn"],
            layer_norm(params["norm"], xs),
            lengths=lengths,
            mask=mask,
            resets=resets,
            initial_carry=initial_carry,
            reset_carry=reset_carry,
            key=key,
            train=train,
        )
        y = branch(params, y)
        if train and dropout > 0:
            y = y * _sequence_mask(key, dropout, y.shape, y.dtype)
        return carry, xs + y

    return SequenceLayer(init, apply, features, inner.initial_carry)


def residual_cell(cell: Cell, features: int, *, glu: bool = True) -> Cell:
    r"""The one-step form of :func:`residual_block`: a cell that a decoder can step token by token.

    .. math::

        (c_t, z_t) = \mathrm{cell}(c_{t-1}, \mathrm{LN}(x_t)), \qquad
        y_t = x_t + \mathrm{GLU}(z_t)

    Unrolled over a sequence it computes exactly what ``residual_block(cell, features, glu=glu)``
    computes (without dropout), with the same params except that ``params["rnn"]`` holds the
    cell's params directly (the block's holds ``{"cell": ...}``, the params of
    :func:`recurrent`). It is an ordinary :class:`recurrax.Cell` that runs on the step path, so a
    linear recurrence keeps its block's nonlinearity where it must be stepped (an encoder–decoder's
    decoder, streaming).

    Args:
      cell: the recurrence.
      features: ``D``, the width of the residual stream (the input and output features).
      glu: put a GLU after the recurrence (False for Mamba, whose block gates and projects).

    Example:
        >>> cell = recurrax.layers.residual_cell(recurrax.lru(32, 16), 16)
        >>> params = cell.init(jax.random.key(0), 16)
        >>> carry, y = cell.step(params, cell.initial_carry(), jnp.ones(16))
        >>> y.shape
        (16,)
    """
    check_cell(cell)
    check_positive_int("features", features)
    if not glu and cell.output_size != features:
        raise ValueError(
            f"cell must output features ({features}) per step when glu=False; got "
            f"{cell.output_size}"
        )
    init, branch = _residual_parts(cell.init, cell.output_size, features, glu)

    def step(params, carry, x):
        carry, z = cell.step(params["rnn"], carry, layer_norm(params["norm"], x))
        return carry, x + branch(params, z)

    return Cell(
        name=f"residual_{cell.name}",
        hidden_size=cell.hidden_size,
        output_size=features,
        init=init,
        initial_carry=cell.initial_carry,
        step=step,
        input_size=lambda params: params["norm"]["scale"].shape[-1],
        recurrence_params=cell.recurrence_params,
    )


def _residual_parts(inner_init, inner_output_size: int, features: int, glu: bool):
    """``init(key, input_size)`` and ``branch(params, z) -> GLU(z)`` (or ``z``) of a residual
    block whose recurrence has params ``inner_init(key, features)``."""
    value, gate = dense(features), dense(features)

    def init(key, input_size):
        if input_size != features:
            raise ValueError(
                f"input_size must equal features ({features}) for a residual block; "
                f"got {input_size!r}"
            )
        k_rnn, k_glu = jax.random.split(key)
        params = {
            "rnn": inner_init(k_rnn, features),
            "norm": {
                "scale": jnp.ones((features,), jnp.float32),
                "bias": jnp.zeros((features,), jnp.float32),
            },
        }
        if glu:
            params["glu"] = {
                "value": value.init(k_glu, inner_output_size),
                "gate": gate.init(jax.random.fold_in(k_glu, 1), inner_output_size),
            }
        return params

    def branch(params, z):
        if not glu:
            return z
        p = params["glu"]
        return value.apply(p["value"], z) * jax.nn.sigmoid(gate.apply(p["gate"], z))

    return init, branch


def layer_norm(params: Params, x: Array) -> Array:
    """LayerNorm over the last axis: ``(x - mean) / sqrt(var + eps) * scale + bias``, with the
    statistics in the input's dtype (float32 for the models here); ``scale``, ``bias`` ``(F,)``."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS)
    return y * jnp.broadcast_to(params["scale"], y.shape) + jnp.broadcast_to(
        params["bias"], y.shape
    )


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
