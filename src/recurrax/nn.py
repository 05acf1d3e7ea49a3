"""Flax adapters: any cell or sequence layer as a Linen or NNX module.

The modules are thin holders: they keep the layer's pure params tree unchanged (the nested dict that
``layer.init`` builds, named after the paper's symbols) and call ``layer.apply`` on it, so the maths
lives in the cells and the driver only. A :class:`recurrax.Cell` is wrapped with
:func:`recurrax.recurrent`; a :class:`recurrax.SequenceLayer` (``recurrent``, ``bidirectional``,
``stacked``) is used as it is.

* :class:`Recurrent` (Linen) stores the params as one entry, ``variables["params"]["layer"]``.
* :class:`NNXRecurrent` (NNX) stores the same tree with every array leaf wrapped in ``nnx.Param``.

The converters move params between the three forms exactly (same tree, same arrays):
:func:`linen_variables` / :func:`params_from_linen` for Linen, :func:`nnx_params` /
:func:`load_nnx_params` / :meth:`NNXRecurrent.from_params` for NNX.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
from flax import nnx

from recurrax.array_types import Array, Carry, Key, Params
from recurrax.cells.base import Cell
from recurrax.layers import SequenceLayer, recurrent
from recurrax.validation import check_floating, check_positive_int, check_rank

__all__ = [
    "NNXRecurrent",
    "Recurrent",
    "as_layer",
    "linen_variables",
    "load_nnx_params",
    "nnx_params",
    "params_from_linen",
]

PARAM_NAME = "layer"
"""Name of the single Linen param entry: ``variables["params"]["layer"]`` holds the pure params."""


def as_layer(layer: Cell | SequenceLayer, name: str = "layer") -> SequenceLayer:
    """``layer`` as a :class:`SequenceLayer`: a cell is wrapped with :func:`recurrax.recurrent`.

    Example:
        >>> recurrax.nn.as_layer(recurrax.lstm(16)).output_size
        16
    """
    if isinstance(layer, Cell):
        return recurrent(layer)
    if isinstance(layer, SequenceLayer):
        return layer
    raise TypeError(
        f"{name} must be a recurrax.Cell or recurrax.SequenceLayer; got {type(layer).__name__}"
    )


def _check_inputs(xs: Array) -> None:
    check_floating("xs", xs)
    check_rank("xs", xs, 3, "(batch, time, features)")


class Recurrent(linen.Module):
    """A Linen module running a recurrax cell or sequence layer over ``(B, T, D)`` inputs.

    Params: one entry ``"layer"`` holding ``layer.init(key, D)`` unchanged, so
    ``variables["params"]["layer"]`` is exactly the pure params of ``layer.apply``.

    Dropout (in :func:`recurrax.stacked`) draws its key from the ``"dropout"`` rng stream, and only
    with ``train=True``; ``train=False`` is deterministic. With ``train=True`` and no ``"dropout"``
    rng the layer gets no key: fine for layers without dropout, an error for those with it.

    Attributes:
      layer: a :class:`recurrax.Cell` (wrapped with :func:`recurrax.recurrent`) or a
        :class:`recurrax.SequenceLayer`.

    Example::

        model = recurrax.nn.Recurrent(recurrax.lstm(32))
        variables = model.init(jax.random.key(0), xs)          # xs: (B, T, D)
        (h, c), ys = model.apply(variables, xs, lengths=lengths)  # ys: (B, T, 32)
    """

    layer: Cell | SequenceLayer

    def __post_init__(self):
        as_layer(self.layer)  # fail at construction, not at the first call
        super().__post_init__()

    @property
    def output_size(self) -> int:
        """Features of ``ys`` per step."""
        return as_layer(self.layer).output_size

    @linen.compact
    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        resets: Array | None = None,
        initial_carry: Carry | None = None,
        train: bool = False,
    ) -> tuple[Carry, Array]:
        """Runs the layer; arguments and returns as in ``SequenceLayer.apply``.

        Args:
          xs: ``(B, T, D)`` floating inputs.
          lengths: ``(B,)`` integers; steps at or after the length are padding.
          mask: ``(B, T)`` booleans; False steps are skipped.
          resets: ``(B, T)`` booleans; True starts a new segment.
          initial_carry: the layer's carry structure; default zeros (or the learned carry).
          train: turn dropout on (keys from the ``"dropout"`` rng).

        Returns:
          ``(final_carry, ys)`` with ``ys`` ``(B, T, output_size)``.
        """
        layer = as_layer(self.layer)
        _check_inputs(xs)
        params = self.param(PARAM_NAME, layer.init, xs.shape[-1])
        key = self.make_rng("dropout") if train and self.has_rng("dropout") else None
        return layer.apply(
            params,
            xs,
            lengths=lengths,
            mask=mask,
            resets=resets,
            initial_carry=initial_carry,
            key=key,
            train=train,
        )


def linen_variables(params: Params) -> dict[str, Any]:
    """The variables of a :class:`Recurrent` module holding the pure ``params``.

    Example:
        >>> layer = recurrax.recurrent(recurrax.gru(16))
        >>> params = layer.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))
        >>> variables = recurrax.nn.linen_variables(params)
        >>> carry, ys = recurrax.nn.Recurrent(layer).apply(variables, xs)
        >>> bool(jnp.array_equal(ys, layer.apply(params, xs)[1]))
        True
    """
    _check_params(params)
    return {"params": {PARAM_NAME: params}}


def params_from_linen(variables: Mapping[str, Any]) -> Params:
    """The pure params held by a :class:`Recurrent` module's variables (inverse of
    :func:`linen_variables`).

    Accepts the module's variables ``{"params": {"layer": ...}}`` or its param collection
    ``{"layer": ...}``; for a module inside a larger model pass its sub-tree, e.g.
    ``variables["params"]["Recurrent_0"]``.

    Example:
        >>> layer = recurrax.recurrent(recurrax.gru(16))
        >>> xs = jnp.ones((2, 5, 8))
        >>> variables = recurrax.nn.Recurrent(layer).init(jax.random.key(0), xs)
        >>> params = recurrax.nn.params_from_linen(variables)
        >>> carry, ys = layer.apply(params, xs)
        >>> params["cell"]["W_h"].shape, ys.shape
        ((16, 48), (2, 5, 16))
    """
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"variables must be a mapping (the variables of a recurrax.nn.Recurrent module); "
            f"got {type(variables).__name__}"
        )
    collection = variables.get("params", variables)
    if not isinstance(collection, Mapping) or PARAM_NAME not in collection:
        found = list(collection) if isinstance(collection, Mapping) else type(collection).__name__
        raise ValueError(
            f"variables must hold {{'params': {{'{PARAM_NAME}': ...}}}} or {{'{PARAM_NAME}': ...}} "
            f"(the variables of a recurrax.nn.Recurrent module); got keys {found}"
        )
    return collection[PARAM_NAME]


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _check_params(params: Any) -> None:
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a nested dict of arrays (from layer.init); got {type(params).__name__}"
        )


class NNXRecurrent(nnx.Module):
    """An NNX module running a recurrax cell or sequence layer over ``(B, T, D)`` inputs.

    ``module.params`` is the pure params tree of ``layer.init(key, input_size)`` with every array
    leaf wrapped in ``nnx.Param`` (so ``nnx.Optimizer(module, tx, wrt=nnx.Param)`` trains it);
    :func:`nnx_params` unwraps it.

    Args:
      layer: a :class:`recurrax.Cell` (wrapped with :func:`recurrax.recurrent`) or a
        :class:`recurrax.SequenceLayer`.
      input_size: D, features of the inputs; needed unless ``params`` is given.
      rngs: ``nnx.Rngs``; the ``params`` stream initialises the params (unless ``params`` is
        given) and the ``dropout`` stream gives dropout keys when ``train=True`` (both fall back
        to ``default``).
      params: pure params to hold instead of initialising new ones (see
        :meth:`from_params`).

    Example::

        module = recurrax.nn.NNXRecurrent(recurrax.gru(32), 8, rngs=nnx.Rngs(0))
        h, ys = module(xs, lengths=lengths)                    # xs: (B, T, 8), ys: (B, T, 32)
    """

    def __init__(
        self,
        layer: Cell | SequenceLayer,
        input_size: int | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        params: Params | None = None,
    ):
        layer = as_layer(layer)
        if rngs is not None and not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be an nnx.Rngs or None; got {type(rngs).__name__}")
        if params is None:
            if input_size is None:
                raise ValueError("input_size must be given when params is not; got None")
            check_positive_int("input_size", input_size)
            if rngs is None:
                raise TypeError("rngs must be an nnx.Rngs when params is not given; got None")
            params = layer.init(rngs.params(), input_size)
        else:
            if input_size is not None:
                raise ValueError(
                    f"input_size must be None when params is given (the params fix it); "
                    f"got {input_size!r}"
                )
            _check_params(params)
        self.layer = nnx.static(layer)
        self.output_size = layer.output_size
        self.params = nnx.data(jax.tree.map(nnx.Param, params))
        self.rngs = nnx.data(_dropout_stream(rngs))

    @classmethod
    def from_params(
        cls, layer: Cell | SequenceLayer, params: Params, *, rngs: nnx.Rngs | None = None
    ) -> NNXRecurrent:
        """A module holding the given pure ``params`` (inverse of :func:`nnx_params`).

        Example::

            params = layer.init(jax.random.key(0), 8)
            module = recurrax.nn.NNXRecurrent.from_params(layer, params)
            carry, ys = module(xs)        # same as layer.apply(params, xs)
        """
        return cls(layer, rngs=rngs, params=params)

    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        resets: Array | None = None,
        initial_carry: Carry | None = None,
        train: bool = False,
        key: Key | None = None,
    ) -> tuple[Carry, Array]:
        """Runs the layer; arguments and returns as in ``SequenceLayer.apply``.

        Args:
          xs: ``(B, T, D)`` floating inputs.
          lengths: ``(B,)`` integers; steps at or after the length are padding.
          mask: ``(B, T)`` booleans; False steps are skipped.
          resets: ``(B, T)`` booleans; True starts a new segment.
          initial_carry: the layer's carry structure; default zeros (or the learned carry).
          train: turn dropout on.
          key: dropout key; default: drawn from the module's ``dropout`` stream when ``train``.

        Returns:
          ``(final_carry, ys)`` with ``ys`` ``(B, T, output_size)``.
        """
        _check_inputs(xs)
        if train and key is None and self.rngs is not None:
            key = self.rngs()
        return self.layer.apply(
            nnx_params(self),
            xs,
            lengths=lengths,
            mask=mask,
            resets=resets,
            initial_carry=initial_carry,
            key=key,
            train=train,
        )


def _dropout_stream(rngs: nnx.Rngs | None) -> nnx.RngStream | None:
    """A fork of the ``dropout`` stream (or ``default``), as ``nnx.Dropout`` keeps; None if none."""
    if rngs is None:
        return None
    try:
        return rngs["dropout"].fork()
    except KeyError:
        return None


def _check_module(module: Any) -> None:
    if not isinstance(module, NNXRecurrent):
        raise TypeError(f"module must be a recurrax.nn.NNXRecurrent; got {type(module).__name__}")


def nnx_params(module: NNXRecurrent) -> Params:
    """The pure params tree held by an :class:`NNXRecurrent` (its ``nnx.Param`` values).

    Example:
        >>> from flax import nnx
        >>> layer = recurrax.recurrent(recurrax.gru(16))
        >>> module = recurrax.nn.NNXRecurrent(layer, 8, rngs=nnx.Rngs(0))
        >>> xs = jnp.ones((2, 5, 8))
        >>> carry, ys = layer.apply(recurrax.nn.nnx_params(module), xs)
        >>> bool(jnp.array_equal(ys, module(xs)[1]))
        True
    """
    _check_module(module)
    return jax.tree.map(lambda v: v.get_value(), module.params, is_leaf=_is_variable)


def load_nnx_params(module: NNXRecurrent, params: Params) -> None:
    """Sets, in place, the params of ``module`` to the pure ``params`` (same tree, shapes, dtypes).

    Example:
        >>> from flax import nnx
        >>> layer = recurrax.recurrent(recurrax.gru(16))
        >>> module = recurrax.nn.NNXRecurrent(layer, 8, rngs=nnx.Rngs(0))
        >>> trained = layer.init(jax.random.key(1), 8)
        >>> recurrax.nn.load_nnx_params(module, trained)
        >>> xs = jnp.ones((2, 5, 8))
        >>> bool(jnp.array_equal(module(xs)[1], layer.apply(trained, xs)[1]))
        True
    """
    _check_module(module)
    _check_params(params)
    expected = jax.tree.structure(module.params, is_leaf=_is_variable)
    given = jax.tree.structure(params)
    if given != expected:
        raise ValueError(f"params must have the module's tree structure {expected}; got {given}")
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    variables = jax.tree.leaves(module.params, is_leaf=_is_variable)
    for (path, value), variable in zip(paths, variables, strict=True):
        current = variable.get_value()
        got = (jnp.shape(value), jnp.result_type(value))
        if got != (current.shape, current.dtype):
            raise ValueError(
                f"params{jax.tree_util.keystr(path)} must have shape {current.shape} and dtype "
                f"{current.dtype}; got shape {got[0]} and dtype {got[1]}"
            )
    for (_, value), variable in zip(paths, variables, strict=True):
        variable.set_value(jnp.asarray(value))


# --- Encoder–decoder adapters ---------------------------------------------------------------

from recurrax.seq2seq import DecoderState, EncoderDecoder  # noqa: E402

__all__ += ["NNXSeq2Seq", "Seq2Seq"]

MODEL_PARAM_NAME = "model"
"""Name of the single Linen param entry of :class:`Seq2Seq`: ``variables["params"]["model"]``."""


def _check_model(model: Any) -> None:
    if not isinstance(model, EncoderDecoder):
        raise TypeError(
            f"model must be a recurrax.seq2seq.EncoderDecoder (from encoder_decoder); got "
            f"{type(model).__name__}"
        )


def _wants_key(teacher_probability: Any) -> bool:
    """Whether ``apply`` may need a key: anything but the Python number 1 (teacher forcing)."""
    exact_one = (
        isinstance(teacher_probability, int | float)
        and not isinstance(teacher_probability, bool)
        and teacher_probability == 1.0
    )
    return not exact_one


class Seq2Seq(linen.Module):
    """A Linen module holding a :class:`recurrax.seq2seq.EncoderDecoder`'s params.

    Params: one entry ``"model"`` holding ``model.init(key)`` unchanged, so
    ``variables["params"]["model"]`` is exactly the pure params of ``model.apply``. Scheduled
    sampling (``teacher_probability`` other than the Python ``1.0``) draws its key from the
    ``"sampling"`` rng stream. ``encode`` and ``decode_step`` are methods too
    (``module.apply(variables, src, src_lengths, method="encode")``), for decoding.

    Attributes:
      model: an :class:`recurrax.seq2seq.EncoderDecoder`.

    Example::

        module = recurrax.nn.Seq2Seq(model)
        variables = module.init(jax.random.key(0), src, src_lengths, tgt_in)
        logits, weights = module.apply(variables, src, src_lengths, tgt_in)
    """

    model: EncoderDecoder

    def __post_init__(self):
        _check_model(self.model)  # fail at construction, not at the first call
        super().__post_init__()

    def setup(self):
        self.model_params = self.param(MODEL_PARAM_NAME, self.model.init)

    def __call__(
        self,
        src: Array,
        src_lengths: Array,
        tgt_in: Array,
        *,
        teacher_probability: Any = 1.0,
        sampling: str = "greedy",
        fast: bool = True,
    ) -> tuple[Array, Array | None]:
        """``model.apply`` on the held params; arguments and returns as there.

        Args:
          src: ``(B, S)`` source tokens.
          src_lengths: ``(B,)`` source lengths.
          tgt_in: ``(B, T)`` decoder inputs (e.g. ``shift_right(targets)``).
          teacher_probability: 1.0 (teacher forcing) or the scheduled-sampling probability.
          sampling: ``"greedy"`` or ``"sample"``, the model's own tokens under scheduled sampling.
          fast: allow the unrolled teacher-forcing path.

        Returns:
          ``(logits (B, T, V), weights (B, T, S) or None)``.
        """
        key = None
        if _wants_key(teacher_probability) and self.has_rng("sampling"):
            key = self.make_rng("sampling")
        return self.model.apply(
            self.model_params,
            src,
            src_lengths,
            tgt_in,
            teacher_probability=teacher_probability,
            key=key,
            sampling=sampling,
            fast=fast,
        )

    def encode(self, src: Array, src_lengths: Array) -> DecoderState:
        """``model.encode`` on the held params: the decoder's initial state."""
        return self.model.encode(self.model_params, src, src_lengths)

    def decode_step(self, state: DecoderState, tokens: Array):
        """``model.decode_step`` on the held params: ``(state, logits, weights)``."""
        return self.model.decode_step(self.model_params, state, tokens)


def _sampling_stream(rngs: nnx.Rngs | None) -> nnx.RngStream | None:
    """A fork of the ``sampling`` stream (or ``default``); None if there is none."""
    if rngs is None:
        return None
    try:
        return rngs["sampling"].fork()
    except KeyError:
        return None


class NNXSeq2Seq(nnx.Module):
    """An NNX module holding a :class:`recurrax.seq2seq.EncoderDecoder`'s params.

    ``module.params`` is the pure params tree of ``model.init(key)`` with every array leaf
    wrapped in ``nnx.Param`` (so ``nnx.Optimizer(module, tx, wrt=nnx.Param)`` trains it);
    :meth:`pure_params` unwraps it. Calls run ``model.apply``; ``encode``, ``decode_step`` and
    ``step_fn`` give the decoder's cache and step function on the held params.

    Args:
      model: an :class:`recurrax.seq2seq.EncoderDecoder`.
      rngs: ``nnx.Rngs``; the ``params`` stream initialises the params (unless ``params`` is
        given) and the ``sampling`` stream gives scheduled sampling its keys.
      params: pure params to hold instead of initialising new ones (see :meth:`from_params`).

    Example::

        module = recurrax.nn.NNXSeq2Seq(model, rngs=nnx.Rngs(0))
        logits, weights = module(src, src_lengths, tgt_in)
    """

    def __init__(
        self,
        model: EncoderDecoder,
        *,
        rngs: nnx.Rngs | None = None,
        params: Params | None = None,
    ):
        _check_model(model)
        if rngs is not None and not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be an nnx.Rngs or None; got {type(rngs).__name__}")
        if params is None:
            if rngs is None:
                raise TypeError("rngs must be an nnx.Rngs when params is not given; got None")
            params = model.init(rngs.params())
        else:
            _check_params(params)
        self.model = nnx.static(model)
        self.params = nnx.data(jax.tree.map(nnx.Param, params))
        self.rngs = nnx.data(_sampling_stream(rngs))

    @classmethod
    def from_params(
        cls, model: EncoderDecoder, params: Params, *, rngs: nnx.Rngs | None = None
    ) -> NNXSeq2Seq:
        """A module holding the given pure ``params`` (inverse of :meth:`pure_params`)."""
        return cls(model, rngs=rngs, params=params)

    def pure_params(self) -> Params:
        """The pure params tree held by the module (its ``nnx.Param`` values)."""
        return jax.tree.map(lambda v: v.get_value(), self.params, is_leaf=_is_variable)

    def __call__(
        self,
        src: Array,
        src_lengths: Array,
        tgt_in: Array,
        *,
        teacher_probability: Any = 1.0,
        key: Key | None = None,
        sampling: str = "greedy",
        fast: bool = True,
    ) -> tuple[Array, Array | None]:
        """``model.apply`` on the held params; ``key`` defaults to the ``sampling`` stream
        whenever ``teacher_probability`` is not the Python ``1.0``.

        Returns:
          ``(logits (B, T, V), weights (B, T, S) or None)``.
        """
        if key is None and _wants_key(teacher_probability) and self.rngs is not None:
            key = self.rngs()
        return self.model.apply(
            self.pure_params(),
            src,
            src_lengths,
            tgt_in,
            teacher_probability=teacher_probability,
            key=key,
            sampling=sampling,
            fast=fast,
        )

    def encode(self, src: Array, src_lengths: Array) -> DecoderState:
        """``model.encode`` on the held params: the decoder's initial state."""
        return self.model.encode(self.pure_params(), src, src_lengths)

    def decode_step(self, state: DecoderState, tokens: Array):
        """``model.decode_step`` on the held params: ``(state, logits, weights)``."""
        return self.model.decode_step(self.pure_params(), state, tokens)

    def step_fn(self):
        """``model.step_fn`` on the held params: ``step(cache, tokens) -> (cache, logits)``."""
        return self.model.step_fn(self.pure_params())
